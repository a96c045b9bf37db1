package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/palisade-im/palisade/modules/archive"
	"github.com/palisade-im/palisade/modules/archive/cosignature"
	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/storage"
	"github.com/palisade-im/palisade/storage/sqlite"
	"go.uber.org/zap"
	"golang.org/x/mod/sumdb/note"
	"mellium.im/xmpp/jid"
)

func (e *env) archive(args []string) error {
	if len(args) == 0 {
		return usageErr("usage: palisade archive verify|pubkey|export|verify-export|hold|purge|search|review")
	}
	sub, args := args[0], args[1:]
	if sub == "verify-export" {
		return e.archiveVerifyExport(args)
	}
	cfg, err := e.loadConfig()
	if err != nil {
		return err
	}
	files := archive.Paths(cfg)
	jpath, kpath, cdir := files.Journal, files.SigningKey, files.CheckpointDir
	switch sub {
	case "export":
		return e.archiveExport(cfg, files, args)
	case "hold":
		return e.archiveHold(cfg, files, args)
	case "purge":
		return e.archivePurge(cfg, files, args)
	case "search":
		return e.archiveSearch(cfg, files, args)
	case "review":
		return e.archiveReview(cfg, files, args)
	case "pubkey":
		if len(args) == 1 && args[0] == "--openpgp" {
			if _, err := os.Stat(files.OpenPGPKey); err != nil {
				return fmt.Errorf("no OpenPGP key at %s (the server creates it when it first starts with the archive on)", files.OpenPGPKey)
			}
			ent, err := archive.LoadOrCreateOpenPGP(files.OpenPGPKey, "")
			if err != nil {
				return err
			}
			pub, err := archive.ArmoredPublicKey(ent)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "%s\n", pub)
			return nil
		}
		if len(args) != 0 {
			return usageErr("usage: palisade archive pubkey [--openpgp]")
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
		witnesses, err := archive.WitnessVerifiers(cfg)
		if err != nil {
			return err
		}
		if err := e.archiveVerify(jpath, kpath, cdir, vkeyArg, witnesses); err != nil {
			return err
		}
		return e.verifyOfficerActs(cfg, jpath)
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

func (e *env) archiveVerify(jpath, kpath, cdir, vkeyArg string, witnesses []*cosignature.Verifier) error {
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
	rep, err := archive.VerifyWith(ctx, j, v, witnesses, ext...)
	if err != nil {
		return fmt.Errorf("verify %s: %w", jpath, err)
	}
	fmt.Fprintf(e.stdout, "journal %s: %d records, %d checkpoints (+%d files in %s), tree %s\n",
		jpath, rep.Records, rep.Checkpoints, len(ext), cdir, rep.Head.Hash)
	if rep.Purged > 0 {
		fmt.Fprintf(e.stdout, "%d records purged by retention: verified through their stored leaf hashes and their disposition records\n", rep.Purged)
	}
	if len(witnesses) > 0 || rep.Unchecked > 0 {
		fmt.Fprintf(e.stdout, "%d witness cosignatures checked with the keys of [[archive.witness]]", rep.Cosignatures)
		if rep.Unchecked > 0 {
			fmt.Fprintf(e.stdout, ", %d of witnesses not configured left unchecked", rep.Unchecked)
		}
		fmt.Fprintln(e.stdout)
	}
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

// verifyOfficerActs checks the officer signatures of the journal's export
// and search acts against archive.officer_keys; a bad signature or an
// unknown signer fails (exit 1) naming the record.
func (e *env) verifyOfficerActs(cfg *config.Config, jpath string) error {
	var officers openpgp.EntityList
	if len(cfg.Archive.OfficerKeys) > 0 {
		var err error
		if officers, err = archive.ReadOfficerKeys(cfg.Archive.OfficerKeys); err != nil {
			return &exitError{code: 2, err: fmt.Errorf("archive.officer_keys: %w", err)}
		}
	}
	ctx := context.Background()
	j, err := sqlite.OpenJournalReadOnly(ctx, jpath)
	if err != nil {
		return err
	}
	defer j.Close()
	rep, err := archive.VerifyOfficerActs(ctx, j, officers)
	if err != nil {
		return fmt.Errorf("verify officer acts in %s: %w", jpath, err)
	}
	fmt.Fprintf(e.stdout, "officer acts: %d signed by an officer key of archive.officer_keys, %d recorded under --by (no decryption)\n", rep.Signed, rep.Unsigned)
	if n := len(rep.UnsignedDecrypting); n > 0 {
		fmt.Fprintf(e.stdout, "%d decrypting acts carry no officer signature (journaled before acts were signed): records %v\n", n, rep.UnsignedDecrypting)
	}
	if len(rep.Problems) == 0 {
		return nil
	}
	for _, p := range rep.Problems {
		fmt.Fprintln(e.stdout, p)
	}
	return fmt.Errorf("officer act verification failed: %d bad or unknown signatures, first in record %d", len(rep.Problems), rep.Problems[0].Index)
}

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// parseDay reads a UTC day (2006-01-02) or an RFC 3339 time; end moves a
// day to the start of the next, so that --to includes the day named.
// recordFilter is the selection of records that export and search share.
type recordFilter struct {
	from, to           time.Time
	users, with, kinds []string
}

// parseRecordFilter checks the --from, --to, --user, --with and --kind
// values; its errors are usage errors naming the flag.
func parseRecordFilter(from, to string, users, with, kinds []string) (recordFilter, error) {
	var f recordFilter
	var err error
	if from != "" {
		if f.from, err = parseDay(from, false); err != nil {
			return f, usageErr("--from: %v", err)
		}
	}
	if to != "" {
		if f.to, err = parseDay(to, true); err != nil {
			return f, usageErr("--to: %v", err)
		}
	}
	for _, list := range []struct {
		name string
		in   []string
		out  *[]string
	}{{"--user", users, &f.users}, {"--with", with, &f.with}} {
		for _, v := range list.in {
			j, err := jid.Parse(v)
			if err != nil || j.Resourcepart() != "" {
				return f, usageErr("%s: %q is not a bare JID", list.name, v)
			}
			*list.out = append(*list.out, j.String())
		}
	}
	for _, k := range kinds {
		if !slices.Contains(recordKinds, k) {
			return f, usageErr("--kind: unknown kind %q (%s)", k, strings.Join(recordKinds, ", "))
		}
	}
	f.kinds = kinds
	return f, nil
}

func parseDay(v string, end bool) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	t, err := time.Parse("2006-01-02", v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not a date (2006-01-02) or an RFC 3339 time", v)
	}
	if end {
		t = t.Add(24 * time.Hour)
	}
	return t, nil
}

func (e *env) archiveExport(cfg *config.Config, files archive.Files, args []string) error {
	fs := flag.NewFlagSet("archive export", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	out := fs.String("out", "", "bundle directory to create")
	from := fs.String("from", "", "first day (UTC, 2006-01-02) or time (RFC 3339)")
	to := fs.String("to", "", "last day (included) or end time (excluded)")
	var users, with, kinds listFlag
	fs.Var(&users, "user", "bare JID whose records to export (repeatable)")
	fs.Var(&with, "with", "conversation partner (repeatable)")
	fs.Var(&kinds, "kind", "record kind (repeatable)")
	decryptKey := fs.String("decrypt-key", "", "officer's OpenPGP private key file: decrypt encrypted records")
	recipient := fs.String("recipient", "", "OpenPGP public key file: encrypt the bundle (--out NAME.tar.gpg) to it")
	const use = "usage: palisade archive export --out DIR|NAME.tar|NAME.tar.gpg [--from DAY] [--to DAY] [--user JID]... [--with JID]... [--kind KIND]... [--decrypt-key FILE] [--recipient KEYFILE]"
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 || *out == "" {
		if err != nil {
			return usageErr("%v\n%s", err, use)
		}
		return usageErr("%s", use)
	}
	var opt archive.ExportOptions
	f, err := parseRecordFilter(*from, *to, users, with, kinds)
	if err != nil {
		return err
	}
	opt.From, opt.To, opt.Users, opt.With, opt.Kinds = f.from, f.to, f.users, f.with, f.kinds
	if (*recipient != "") != strings.HasSuffix(*out, ".tar.gpg") {
		return usageErr("--recipient and --out NAME.tar.gpg go together")
	}
	var recipients openpgp.EntityList
	if *recipient != "" {
		if recipients, err = archive.ReadOfficerKeys([]string{*recipient}); err != nil {
			return usageErr("--recipient: %v", err)
		}
		for _, r := range recipients {
			opt.EncryptedTo = append(opt.EncryptedTo, fmt.Sprintf("%X", r.PrimaryKey.Fingerprint))
		}
	}
	var officer openpgp.EntityList
	if *decryptKey != "" {
		if officer, opt.Officer, err = e.decryptingOfficer(cfg, *decryptKey); err != nil {
			return err
		}
	}

	ctx := context.Background()
	// Everything journaled until now is in the export, proven: a fresh
	// checkpoint first.
	if _, _, err := e.freshCheckpoint(ctx, cfg, files); err != nil {
		return fmt.Errorf("a fresh checkpoint for the export: %w", err)
	}
	vkey, err := archive.ReadVerifierKey(files.SigningKey)
	if err != nil {
		return err
	}
	if _, err := os.Stat(files.OpenPGPKey); err != nil {
		return fmt.Errorf("no OpenPGP key at %s (the server creates it when it first starts with the archive on)", files.OpenPGPKey)
	}
	pgp, err := archive.LoadOrCreateOpenPGP(files.OpenPGPKey, "")
	if err != nil {
		return err
	}
	j, err := sqlite.OpenJournalReadOnly(ctx, files.Journal)
	if err != nil {
		return err
	}
	defer j.Close()
	if opt.Open, err = opener(ctx, j, officer); err != nil {
		return err
	}
	bundle := *out
	if recipients != nil {
		if _, err := os.Lstat(*out); err == nil {
			return fmt.Errorf("%s already exists", *out)
		}
		tmp, err := os.MkdirTemp(filepath.Dir(filepath.Clean(*out)), ".export-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		bundle = filepath.Join(tmp, strings.TrimSuffix(filepath.Base(*out), ".gpg"))
	}
	sum, err := archive.Export(ctx, j, bundle, opt, vkey, pgp)
	if err != nil {
		return err
	}
	// Chain of custody: the export is itself a journal record. Without
	// it, there is no export.
	actor := "cli"
	if u, err := user.Current(); err == nil {
		actor = "cli:" + u.Username
	}
	digest, err := archive.ManifestDigest(bundle)
	if err == nil && recipients != nil {
		err = archive.EncryptFile(bundle, *out, recipients)
	}
	if err == nil {
		err = recordExport(ctx, files.Journal, actor, opt, *out, sum, digest)
	}
	if err != nil {
		os.RemoveAll(*out)
		return fmt.Errorf("the export could not be recorded in the journal, bundle removed: %w", err)
	}
	audit, err := e.auditLogger(cfg)
	if err != nil {
		return err
	}
	audit.Info("archive_export", zap.String("actor", "cli"),
		zap.String("actor_user", actor), zap.String("manifest_sha256", digest),
		zap.String("out", *out), zap.Int("records", sum.Records), zap.Int64("checkpoint_size", sum.Checkpoint.Size),
		zap.String("from", *from), zap.String("to", *to), zap.Strings("users", opt.Users), zap.Strings("with", opt.With),
		zap.Strings("kinds", opt.Kinds), zap.Int("decrypted", sum.Decrypted), zap.Strings("encrypted_to", opt.EncryptedTo))
	fmt.Fprintf(e.stdout, "%s: %d records in %d conversation files, proven against the checkpoint of size %d\n",
		*out, sum.Records, sum.Conversations, sum.Checkpoint.Size)
	if sum.Decrypted > 0 {
		fmt.Fprintf(e.stdout, "%d records decrypted with the officer key\n", sum.Decrypted)
	}
	if sum.Purged > 0 {
		fmt.Fprintf(e.stdout, "%d records purged by retention (marked purged)\n", sum.Purged)
	}
	if recipients != nil {
		fmt.Fprintf(e.stdout, "bundle encrypted to %s\n", strings.Join(opt.EncryptedTo, ", "))
	}
	if sum.Unsigned > 0 {
		fmt.Fprintf(e.stdout, "%d newer records are not covered by a checkpoint yet and were left out\n", sum.Unsigned)
	}
	return nil
}

func recordExport(ctx context.Context, path, actor string, opt archive.ExportOptions, out string, sum archive.ExportSummary, digest string) error {
	j, err := sqlite.OpenJournal(ctx, path)
	if err != nil {
		return err
	}
	err = archive.RecordExport(ctx, j, actor, opt, out, sum, digest)
	if cerr := j.Close(); err == nil {
		err = cerr
	}
	return err
}

func (e *env) archiveVerifyExport(args []string) error {
	fs := flag.NewFlagSet("archive verify-export", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	vkey := fs.String("verifier-key", "", "checkpoint note verifier key, or a file holding it")
	pgpKey := fs.String("openpgp-key", "", "armored OpenPGP public key file")
	trusted := fs.String("trusted-checkpoint", "", "a checkpoint obtained out of band")
	var witnessKeys, officerKeyFiles listFlag
	fs.Var(&witnessKeys, "witness-key", "cosignature verifier key of a witness that must have cosigned the checkpoint, or a file holding it (repeatable)")
	fs.Var(&officerKeyFiles, "officer-key", "officer OpenPGP public key file: officer-signed acts in the bundle must verify with one (repeatable; default archive.officer_keys with --config)")
	const use = "usage: palisade archive verify-export [--verifier-key KEY|FILE] [--openpgp-key FILE] [--trusted-checkpoint FILE] [--witness-key VKEY|FILE]... [--officer-key FILE]... BUNDLE"
	// The bundle may come before or after the flags.
	var bundle string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		bundle, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return usageErr("%v\n%s", err, use)
	}
	if bundle == "" && fs.NArg() == 1 {
		bundle = fs.Arg(0)
	} else if fs.NArg() != 0 || bundle == "" {
		return usageErr("%s", use)
	}
	var opt archive.VerifyExportOptions
	if *vkey != "" {
		k := *vkey
		if b, err := os.ReadFile(k); err == nil {
			k = strings.TrimSpace(string(b))
		}
		opt.VerifierKey = k
	}
	if *pgpKey != "" {
		b, err := os.ReadFile(*pgpKey)
		if err != nil {
			return usageErr("--openpgp-key: %v", err)
		}
		opt.OpenPGPKey = b
	}
	if *trusted != "" {
		b, err := os.ReadFile(*trusted)
		if err != nil {
			return usageErr("--trusted-checkpoint: %v", err)
		}
		opt.Trusted = b
	}
	for _, k := range witnessKeys {
		if b, err := os.ReadFile(k); err == nil {
			k = strings.TrimSpace(string(b))
		}
		if _, err := cosignature.NewVerifier(k); err != nil {
			return usageErr("--witness-key %q: %v", k, err)
		}
		opt.WitnessKeys = append(opt.WitnessKeys, k)
	}
	if len(officerKeyFiles) == 0 && e.configPath != "" {
		cfg, err := e.loadConfig()
		if err != nil {
			return err
		}
		officerKeyFiles = cfg.Archive.OfficerKeys
	}
	if len(officerKeyFiles) > 0 {
		keys, err := archive.ReadOpenPGPKeys(officerKeyFiles)
		if err != nil {
			return usageErr("--officer-key: %v", err)
		}
		opt.OfficerKeys = keys
	}
	report, err := archive.VerifyExport(bundle, opt)
	if err != nil {
		return fmt.Errorf("bundle %s does not verify: %w", bundle, err)
	}
	fmt.Fprintf(e.stdout, "%s\nOK\n", report)
	return nil
}

// checkLocks compares cfg's retention policies with the locked policies
// recorded in its journal, when the journal can be read; the note says
// what was checked.
func checkLocks(cfg *config.Config) (string, error) {
	if !cfg.Archive.Enabled {
		return "", nil
	}
	if err := checkOfficerKeys(cfg); err != nil {
		return "", err
	}
	path := archive.Paths(cfg).Journal
	if _, err := os.Stat(path); err != nil {
		return fmt.Sprintf("%-17s %s\n", "locked policies:", "no journal at "+path+" yet, nothing to compare"), nil
	}
	ctx := context.Background()
	j, err := sqlite.OpenJournalReadOnly(ctx, path)
	if err != nil {
		return fmt.Sprintf("%-17s could not read %s (%v): start-up will check\n", "locked policies:", path, err), nil
	}
	defer j.Close()
	recorded, err := j.LockedPolicies(ctx)
	if err != nil {
		return "", err
	}
	if err := archive.CheckLocks(recorded, cfg.Archive.Retention); err != nil {
		return "", err
	}
	return fmt.Sprintf("%-17s %d recorded in %s, none weakened\n", "locked policies:", len(recorded), path), nil
}

// actorFrom is who runs an administrative command: --by, else $USER, else
// the process's user.
func actorFrom(by string) string {
	if by != "" {
		return by
	}
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "unknown"
}

// auditLogger is the CLI's audit logger on stderr, and on the [log]
// audit sinks (the file is not rotated here: the server rotates it; the
// sinks close when the process exits).
func (e *env) auditLogger(cfg *config.Config) (*zap.Logger, error) {
	c := cfg.Log
	c.Level = "info"
	l, _, err := newAuditedLogger(c, e.stderr, false)
	if err != nil {
		return nil, err
	}
	return l.Named("audit").With(zap.Bool("audit", true)), nil
}

const holdUsage = `usage: palisade archive hold add --custodian JID... --reason TEXT [--name NAME] [--from DAY] [--to DAY] [--by WHO]
       palisade archive hold list [--all]
       palisade archive hold release NAME --reason TEXT [--by WHO]`

func (e *env) archiveHold(cfg *config.Config, files archive.Files, args []string) error {
	if len(args) == 0 {
		return usageErr("%s", holdUsage)
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("archive hold "+sub, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	ctx := context.Background()
	switch sub {
	case "list":
		all := fs.Bool("all", false, "also released holds")
		if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
			return usageErr("%s", holdUsage)
		}
		j, err := sqlite.OpenJournalReadOnly(ctx, files.Journal)
		if err != nil {
			return err
		}
		defer j.Close()
		hs, err := j.Holds(ctx)
		if err != nil {
			return err
		}
		day := func(t time.Time, end bool) string {
			if t.IsZero() {
				return "-"
			}
			if end {
				t = t.Add(-24 * time.Hour)
			}
			return t.UTC().Format(time.DateOnly)
		}
		n := 0
		for _, h := range hs {
			if !h.Active() && !*all {
				continue
			}
			n++
			state := "active"
			if !h.Active() {
				state = fmt.Sprintf("released %s by %s: %s", h.Released.Format(time.RFC3339), h.ReleasedBy, h.ReleaseReason)
			}
			fmt.Fprintf(e.stdout, "%s\t%s\tfrom %s to %s\tplaced %s by %s\treason: %s\t%s\n", h.Name, strings.Join(h.Custodians, ","),
				day(h.From, false), day(h.To, true), h.PlacedAt.Format(time.RFC3339), h.PlacedBy, h.Reason, state)
		}
		if n == 0 {
			fmt.Fprintln(e.stdout, "no legal holds")
		}
		return nil
	case "add":
		var custodians listFlag
		fs.Var(&custodians, "custodian", "bare JID whose records to hold (repeatable)")
		name := fs.String("name", "", "hold name (default: generated)")
		from := fs.String("from", "", "first day held (UTC)")
		to := fs.String("to", "", "last day held (included)")
		reason := fs.String("reason", "", "why (matter, case number)")
		by := fs.String("by", "", "who places the hold (default $USER)")
		if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
			return usageErr("%s", holdUsage)
		}
		if len(custodians) == 0 || strings.TrimSpace(*reason) == "" {
			return usageErr("hold add needs --custodian and --reason\n%s", holdUsage)
		}
		h := storage.Hold{Name: *name, Reason: *reason, PlacedBy: actorFrom(*by), PlacedAt: time.Now()}
		if h.Name == "" {
			h.Name = "hold-" + h.PlacedAt.UTC().Format("20060102-150405")
		}
		for _, c := range custodians {
			j, err := jid.Parse(c)
			if err != nil || j.Resourcepart() != "" || j.Localpart() == "" {
				return usageErr("--custodian: %q is not a bare JID", c)
			}
			h.Custodians = append(h.Custodians, j.String())
		}
		var err error
		if *from != "" {
			if h.From, err = parseDay(*from, false); err != nil {
				return usageErr("--from: %v", err)
			}
		}
		if *to != "" {
			if h.To, err = parseDay(*to, true); err != nil {
				return usageErr("--to: %v", err)
			}
		}
		if !h.From.IsZero() && !h.To.IsZero() && !h.From.Before(h.To) {
			return usageErr("--to is before --from")
		}
		audit, err := e.auditLogger(cfg)
		if err != nil {
			return err
		}
		j, err := sqlite.OpenJournal(ctx, files.Journal)
		if err != nil {
			return err
		}
		err = archive.PlaceHold(ctx, j, j, h, audit)
		if err == nil {
			err = archive.RefreshLockMarker(ctx, cfg, files.Journal, j, j)
		}
		if cerr := j.Close(); err == nil {
			err = cerr
		}
		if errors.Is(err, storage.ErrHoldExists) {
			return usageErr("a legal hold named %q exists already", h.Name)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "legal hold %s placed on %s by %s\n", h.Name, strings.Join(h.Custodians, ", "), h.PlacedBy)
		return nil
	case "release":
		var name string
		if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
			name, args = args[0], args[1:]
		}
		reason := fs.String("reason", "", "why the hold ends")
		by := fs.String("by", "", "who releases it (default $USER)")
		if err := fs.Parse(args); err != nil || fs.NArg() > 1 {
			return usageErr("%s", holdUsage)
		}
		if name == "" && fs.NArg() == 1 {
			name = fs.Arg(0)
		}
		if name == "" || strings.TrimSpace(*reason) == "" {
			return usageErr("hold release needs the hold's name and --reason\n%s", holdUsage)
		}
		audit, err := e.auditLogger(cfg)
		if err != nil {
			return err
		}
		j, err := sqlite.OpenJournal(ctx, files.Journal)
		if err != nil {
			return err
		}
		actor := actorFrom(*by)
		err = archive.ReleaseHold(ctx, j, j, name, actor, *reason, audit)
		if err == nil {
			err = archive.RefreshLockMarker(ctx, cfg, files.Journal, j, j)
		}
		if cerr := j.Close(); err == nil {
			err = cerr
		}
		if errors.Is(err, storage.ErrNoHold) {
			return usageErr("no active legal hold named %q", name)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "legal hold %s released by %s\n", name, actor)
		return nil
	}
	return usageErr("%s", holdUsage)
}

func (e *env) archivePurge(cfg *config.Config, files archive.Files, args []string) error {
	fs := flag.NewFlagSet("archive purge", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dry := fs.Bool("dry-run", false, "report what would be purged, change nothing")
	by := fs.String("by", "", "who runs the purge (default $USER)")
	asOf := fs.String("as-of", "", "with --dry-run: what a purge on that day would remove")
	const use = "usage: palisade archive purge [--dry-run [--as-of DAY]] [--by WHO]"
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		return usageErr("%s", use)
	}
	now := time.Now()
	if *asOf != "" {
		// A real purge always runs on today's date: no flag purges early.
		if !*dry {
			return usageErr("--as-of only goes with --dry-run\n%s", use)
		}
		t, err := parseDay(*asOf, false)
		if err != nil {
			return usageErr("--as-of: %v", err)
		}
		now = t
	}
	ctx := context.Background()
	if len(cfg.Archive.Retention) == 0 {
		fmt.Fprintln(e.stdout, "no [[archive.retention]] policy: nothing is ever purged")
		return nil
	}
	audit, err := e.auditLogger(cfg)
	if err != nil {
		return err
	}
	var j *sqlite.Journal
	if *dry {
		j, err = sqlite.OpenJournalReadOnly(ctx, files.Journal)
	} else {
		j, err = sqlite.OpenJournal(ctx, files.Journal)
	}
	if err != nil {
		return err
	}
	defer j.Close()
	// The file must not weaken what the journal locked, for a purge least
	// of all.
	recorded, err := j.LockedPolicies(ctx)
	if err != nil {
		return err
	}
	if err := archive.CheckLocks(recorded, cfg.Archive.Retention); err != nil {
		return &exitError{code: 2, err: err}
	}
	if !*dry {
		// Holds of the file count even before the server restarts.
		if err := archive.SyncConfigHolds(ctx, j, j, cfg.Archive.Holds, audit, zap.NewNop()); err != nil {
			return err
		}
	}
	res, err := archive.Purge(ctx, j, j, cfg.Archive.Retention, cfg.Archive.Holds, now, *dry, "cli:"+actorFrom(*by), audit)
	if err != nil {
		return err
	}
	verb := "purged"
	if *dry {
		verb = "would purge"
	}
	fmt.Fprintf(e.stdout, "%s %d records (%d under retention, %d past it kept by a legal hold, %d purged earlier)\n",
		verb, len(res.Purged), res.Examined, res.Held, res.AlreadyPurged)
	names := make([]string, 0, len(res.ByPolicy))
	for n := range res.ByPolicy {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(e.stdout, "  policy %s: %d\n", n, res.ByPolicy[n])
	}
	for _, r := range res.Ranges() {
		fmt.Fprintf(e.stdout, "  records %d-%d\n", r[0], r[1])
	}
	if res.Disposition >= 0 {
		fmt.Fprintf(e.stdout, "disposition record %d\n", res.Disposition)
	}
	return nil
}

// recordKinds are the journal's record kinds, for --kind.
var recordKinds = archive.RecordKinds()

func (e *env) archiveSearch(cfg *config.Config, files archive.Files, args []string) error {
	fs := flag.NewFlagSet("archive search", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	from := fs.String("from", "", "first day (UTC, 2006-01-02) or time (RFC 3339)")
	to := fs.String("to", "", "last day (included) or end time (excluded)")
	var users, with, kinds listFlag
	fs.Var(&users, "user", "bare JID (repeatable)")
	fs.Var(&with, "with", "conversation partner (repeatable)")
	fs.Var(&kinds, "kind", "record kind (repeatable)")
	text := fs.String("text", "", "text the message body contains (case-insensitive)")
	flagged := fs.String("flag", "", "content rule whose flagged records to find")
	decryptKey := fs.String("decrypt-key", "", "officer's OpenPGP private key file: decrypt encrypted records")
	limit := fs.Int("limit", 1000, "most records printed")
	by := fs.String("by", "", "who searches (default $USER)")
	const use = "usage: palisade archive search [--user JID]... [--with JID]... [--from DAY] [--to DAY] [--kind KIND]... [--text TEXT] [--flag RULE] [--decrypt-key FILE] [--limit N] [--by WHO]"
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 || *limit < 1 {
		return usageErr("%s", use)
	}
	var opt archive.SearchOptions
	opt.Text, opt.Flag, opt.Limit = *text, *flagged, *limit
	f, err := parseRecordFilter(*from, *to, users, with, kinds)
	if err != nil {
		return err
	}
	opt.From, opt.To, opt.Users, opt.With, opt.Kinds = f.from, f.to, f.users, f.with, f.kinds
	var officer openpgp.EntityList
	if *decryptKey != "" {
		if officer, opt.Officer, err = e.decryptingOfficer(cfg, *decryptKey); err != nil {
			return err
		}
	}
	audit, err := e.auditLogger(cfg)
	if err != nil {
		return err
	}
	ctx := context.Background()
	// A second writer: the search is itself a journal record.
	j, err := sqlite.OpenJournal(ctx, files.Journal)
	if err != nil {
		return err
	}
	defer j.Close()
	if opt.Open, err = opener(ctx, j, officer); err != nil {
		return err
	}
	hits, err := archive.Search(ctx, j, opt, "cli:"+actorFrom(*by), audit)
	if errors.Is(err, archive.ErrSearchNeedsKey) {
		return usageErr("%v", err)
	}
	if err != nil {
		return err
	}
	for _, h := range hits {
		body := h.Body
		switch {
		case h.Purged:
			body = "[content purged by retention]"
		case h.Encrypted && opt.Open == nil:
			body = "[encrypted: --decrypt-key]"
		}
		if len(h.Flags) > 0 {
			body = "[flagged: " + strings.Join(h.Flags, ", ") + "] " + body
		}
		fmt.Fprintf(e.stdout, "%d\t%s\t%s\t%s\t%s -> %s\t%s\t%s\n", h.Seq, h.Time.UTC().Format(time.RFC3339Nano), h.Kind, h.Direction,
			h.From, h.To, h.Type, strings.ReplaceAll(body, "\n", " "))
	}
	fmt.Fprintf(e.stdout, "%d records found\n", len(hits))
	return nil
}

// decryptingOfficer reads an officer's private key (--decrypt-key) and
// finds the officer it belongs to among archive.officer_keys: the act is
// signed with it. A key that is none of them is refused before anything
// is decrypted (exit 2), with one audit event, archive_decrypt_refused.
func (e *env) decryptingOfficer(cfg *config.Config, file string) (openpgp.EntityList, *openpgp.Entity, error) {
	keys, err := archive.ReadDecryptKey(file)
	if err != nil {
		return nil, nil, usageErr("--decrypt-key: %v", err)
	}
	var officers openpgp.EntityList
	if len(cfg.Archive.OfficerKeys) > 0 {
		if officers, err = archive.ReadOfficerKeys(cfg.Archive.OfficerKeys); err != nil {
			return nil, nil, &exitError{code: 2, err: fmt.Errorf("archive.officer_keys: %w", err)}
		}
	}
	who, err := archive.OfficerFor(keys, officers)
	if err != nil {
		var fprs []string
		for _, k := range keys {
			fprs = append(fprs, archive.Fingerprint(k))
		}
		if audit, aerr := e.auditLogger(cfg); aerr == nil {
			audit.Warn("archive_decrypt_refused", zap.String("actor", cliActor()), zap.Strings("keys", fprs), zap.String("reason", err.Error()))
		}
		return nil, nil, usageErr("--decrypt-key: %v", err)
	}
	return keys, who, nil
}

// checkOfficerKeys reads archive.officer_keys: a file that is missing or
// holds no usable encryption key is a configuration error.
func checkOfficerKeys(cfg *config.Config) error {
	if !cfg.Archive.Enabled || len(cfg.Archive.OfficerKeys) == 0 {
		return nil
	}
	if _, err := archive.ReadOfficerKeys(cfg.Archive.OfficerKeys); err != nil {
		return fmt.Errorf("archive.officer_keys: %w", err)
	}
	return nil
}

// opener returns what decrypts sealed records with the officer's key, or
// nil without one.
func opener(ctx context.Context, j storage.EpochKeys, officer openpgp.EntityList) (*archive.Opener, error) {
	if officer == nil {
		return nil, nil
	}
	epochs, err := j.EpochKeys(ctx)
	if err != nil {
		return nil, err
	}
	return archive.NewOpener(officer, epochs), nil
}

const reviewUsage = "usage: palisade archive review list [--all] | close SEQ --reason TEXT [--by WHO]"

// archiveReview lists the records content rules flagged for review, and
// closes one (a review record in the journal). The list holds no content:
// archive search --flag RULE reads the messages, and is journaled.
func (e *env) archiveReview(cfg *config.Config, files archive.Files, args []string) error {
	if len(args) == 0 {
		return usageErr("%s", reviewUsage)
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("archive review "+sub, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	ctx := context.Background()
	switch sub {
	case "list":
		all := fs.Bool("all", false, "also closed reviews")
		if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
			return usageErr("%s", reviewUsage)
		}
		j, err := sqlite.OpenJournalReadOnly(ctx, files.Journal)
		if err != nil {
			return err
		}
		defer j.Close()
		items, err := archive.ReviewQueue(ctx, j)
		if err != nil {
			return err
		}
		open := 0
		for _, it := range items {
			if it.Closed == 0 {
				open++
			} else if !*all {
				continue
			}
			state := "open"
			if it.Closed != 0 {
				state = fmt.Sprintf("closed by %s (record %d): %s", it.By, it.Closed, it.Reason)
			}
			fmt.Fprintf(e.stdout, "%d\t%s\t%s -> %s\t%s\t%s\n", it.Seq, it.Time.UTC().Format(time.RFC3339), it.From, it.To,
				strings.Join(it.Flags, ","), state)
		}
		fmt.Fprintf(e.stdout, "%d open, %d flagged in all\n", open, len(items))
		return nil
	case "close":
		if len(args) == 0 {
			return usageErr("%s", reviewUsage)
		}
		seq, err := strconv.ParseInt(args[0], 10, 64)
		if err != nil || seq < 0 {
			return usageErr("archive review close: %q is not a record number\n%s", args[0], reviewUsage)
		}
		reason := fs.String("reason", "", "the finding")
		by := fs.String("by", "", "who closes it (default $USER)")
		if err := fs.Parse(args[1:]); err != nil || fs.NArg() != 0 || strings.TrimSpace(*reason) == "" {
			return usageErr("%s", reviewUsage)
		}
		audit, err := e.auditLogger(cfg)
		if err != nil {
			return err
		}
		j, err := sqlite.OpenJournal(ctx, files.Journal)
		if err != nil {
			return err
		}
		defer j.Close()
		rec, err := archive.CloseReview(ctx, j, seq, "cli:"+actorFrom(*by), *reason, audit)
		if errors.Is(err, archive.ErrNotFlagged) || errors.Is(err, archive.ErrReviewClosed) {
			return usageErr("archive review close %d: %v", seq, err)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "review of record %d closed (review record %d)\n", seq, rec)
		return nil
	}
	return usageErr("%s", reviewUsage)
}
