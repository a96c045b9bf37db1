package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/palisade-im/palisade/modules/archive"
	"github.com/palisade-im/palisade/storage/sqlite"
	"golang.org/x/mod/sumdb/note"
)

func (e *env) archive(args []string) error {
	if len(args) == 0 {
		return usageErr("usage: palisade archive verify|pubkey")
	}
	sub, args := args[0], args[1:]
	cfg, err := e.loadConfig()
	if err != nil {
		return err
	}
	jpath, kpath, cdir := archive.Paths(cfg)
	switch sub {
	case "pubkey":
		if len(args) != 0 {
			return usageErr("usage: palisade archive pubkey")
		}
		vkey, err := archive.ReadVerifierKey(kpath)
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("no signing key at %s (the server creates it when it first starts with the archive on)", kpath)
		}
		if err != nil {
			return err
		}
		fmt.Fprintln(e.stdout, vkey)
		return nil
	case "verify":
		vkeyArg := ""
		for i := 0; i < len(args); i++ {
			switch a := args[i]; {
			case a == "--verifier-key" && i+1 < len(args):
				vkeyArg = args[i+1]
				i++
			case strings.HasPrefix(a, "--verifier-key="):
				vkeyArg = strings.TrimPrefix(a, "--verifier-key=")
			default:
				return usageErr("usage: palisade archive verify [--verifier-key KEY|FILE]")
			}
		}
		return e.archiveVerify(jpath, kpath, cdir, vkeyArg)
	}
	return usageErr("unknown archive command %q", sub)
}

// verifierFrom reads a verifier key given as the key itself or as a file
// holding it; "" derives it from the signing key file.
func verifierFrom(arg, keyFile string) (note.Verifier, error) {
	var vkey string
	switch {
	case arg == "":
		k, err := archive.ReadVerifierKey(keyFile)
		if err != nil {
			return nil, err
		}
		vkey = k
	default:
		// A file holding the key, or the key itself.
		if b, err := os.ReadFile(arg); err == nil {
			vkey = strings.TrimSpace(string(b))
		} else if strings.Count(arg, "+") >= 2 {
			vkey = arg
		} else {
			return nil, &exitError{code: 2, err: fmt.Errorf("verifier key: %w", err)}
		}
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, &exitError{code: 2, err: fmt.Errorf("verifier key %q: %w", vkey, err)}
	}
	return v, nil
}

func (e *env) archiveVerify(jpath, kpath, cdir, vkeyArg string) error {
	v, err := verifierFrom(vkeyArg, kpath)
	if err != nil {
		return err
	}
	ctx := context.Background()
	j, err := sqlite.OpenJournalReadOnly(ctx, jpath)
	if err != nil {
		return err
	}
	defer j.Close()
	// The directory sink's files are checked too: they are the copies that
	// left the database.
	var ext []archive.External
	files, _ := filepath.Glob(filepath.Join(cdir, "checkpoint-*.txt"))
	sort.Strings(files)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("read checkpoint: %w", err)
		}
		ext = append(ext, archive.External{Name: f, Note: b})
	}
	rep, err := archive.Verify(ctx, j, v, ext...)
	if err != nil {
		return fmt.Errorf("verify %s: %w", jpath, err)
	}
	fmt.Fprintf(e.stdout, "journal %s: %d records, %d checkpoints (+%d files in %s), tree %s\n",
		jpath, rep.Records, rep.Checkpoints, len(ext), cdir, rep.Head.Hash)
	if len(rep.Problems) == 0 {
		fmt.Fprintln(e.stdout, "OK")
		return nil
	}
	for _, p := range rep.Problems {
		fmt.Fprintln(e.stdout, p)
	}
	if bad, ok := rep.FirstBad(); ok {
		return fmt.Errorf("journal verification failed: first bad record index %d (%d problems)", bad, len(rep.Problems))
	}
	return fmt.Errorf("journal verification failed (%d problems)", len(rep.Problems))
}
