package archive

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/syslog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/palisade-im/palisade/storage"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// LoadOrCreateKey returns the checkpoint signer kept in path, creating a new
// Ed25519 note key named name there (mode 0600) when the file is missing.
// A key file readable by other users is refused.
func LoadOrCreateKey(path, name string) (note.Signer, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		skey, _, err := note.GenerateKey(rand.Reader, name)
		if err != nil {
			return nil, fmt.Errorf("archive: generate signing key: %w", err)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("archive: signing key: %w", err)
		}
		if err := writeFileSync(path, []byte(skey+"\n"), 0o600, true); err != nil {
			return nil, fmt.Errorf("archive: write signing key: %w", err)
		}
		data = []byte(skey)
	} else if err != nil {
		return nil, fmt.Errorf("archive: read signing key: %w", err)
	} else if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o007 != 0 {
		return nil, fmt.Errorf("archive: signing key %s is readable by other users (mode %v): chmod 600 it", path, fi.Mode().Perm())
	}
	s, err := note.NewSigner(strings.TrimSpace(string(data)))
	if err != nil {
		return nil, fmt.Errorf("archive: signing key %s: %w", path, err)
	}
	return s, nil
}

// ReadVerifierKey derives the note verifier key ("name+hash+key") from the
// signer key stored in path.
func ReadVerifierKey(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("archive: read signing key: %w", err)
	}
	skey := strings.TrimSpace(string(data))
	// PRIVATE+KEY+<name>+<hash>+<base64(alg || seed)>
	parts := strings.SplitN(skey, "+", 5)
	if len(parts) != 5 || parts[0] != "PRIVATE" || parts[1] != "KEY" {
		return "", fmt.Errorf("archive: %s is not a note signer key", path)
	}
	raw, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		return "", fmt.Errorf("archive: %s is not an Ed25519 note signer key", path)
	}
	pub := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	vkey, err := note.NewEd25519VerifierKey(parts[2], pub)
	if err != nil {
		return "", fmt.Errorf("archive: %s: %w", path, err)
	}
	if _, err := note.NewSigner(skey); err != nil {
		return "", fmt.Errorf("archive: %s: %w", path, err)
	}
	return vkey, nil
}

// CheckpointText formats a C2SP tlog-checkpoint body: origin, tree size,
// base64 root hash, each on its own line.
func CheckpointText(origin string, head storage.TreeHead) string {
	return origin + "\n" + strconv.FormatInt(head.Size, 10) + "\n" + base64.StdEncoding.EncodeToString(head.Hash[:]) + "\n"
}

// ParseCheckpoint opens a signed checkpoint note with v and returns the
// tree it commits to. The origin must be the verifier's name.
func ParseCheckpoint(msg []byte, v note.Verifier) (storage.TreeHead, error) {
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		return storage.TreeHead{}, fmt.Errorf("signature: %w", err)
	}
	lines := strings.SplitN(n.Text, "\n", 4)
	if len(lines) < 4 {
		return storage.TreeHead{}, errors.New("not a checkpoint: fewer than three lines")
	}
	if lines[0] != v.Name() {
		return storage.TreeHead{}, fmt.Errorf("origin %q is not the key's name %q", lines[0], v.Name())
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 || strconv.FormatInt(size, 10) != lines[1] {
		return storage.TreeHead{}, fmt.Errorf("bad tree size %q", lines[1])
	}
	raw, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(raw) != tlog.HashSize {
		return storage.TreeHead{}, fmt.Errorf("bad root hash %q", lines[2])
	}
	head := storage.TreeHead{Size: size}
	copy(head.Hash[:], raw)
	return head, nil
}

// Sink publishes a checkpoint outside the journal database.
type Sink interface {
	Publish(size int64, signed []byte) error
}

// DirSink writes each checkpoint to its own file in a directory (normally
// on another mount): checkpoint-<size, 20 digits>.txt, fsynced.
type DirSink struct{ Dir string }

// Publish implements Sink.
func (d DirSink) Publish(size int64, signed []byte) error {
	if err := os.MkdirAll(d.Dir, 0o750); err != nil {
		return fmt.Errorf("archive: checkpoint directory: %w", err)
	}
	name := filepath.Join(d.Dir, fmt.Sprintf("checkpoint-%020d.txt", size))
	tmp := name + ".tmp"
	if err := writeFileSync(tmp, signed, 0o640, false); err != nil {
		return fmt.Errorf("archive: write checkpoint: %w", err)
	}
	if err := os.Rename(tmp, name); err != nil {
		return fmt.Errorf("archive: write checkpoint: %w", err)
	}
	return syncDir(d.Dir)
}

// writeFileSync writes data to path and fsyncs it; excl refuses an
// existing file.
func writeFileSync(path string, data []byte, mode os.FileMode, excl bool) error {
	flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	if excl {
		flags = os.O_WRONLY | os.O_CREATE | os.O_EXCL
	}
	f, err := os.OpenFile(path, flags, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// SyslogSink sends each checkpoint to a syslog daemon as one line,
// "palisade-checkpoint size=N note=BASE64" (the note has newlines), with
// facility AUTHPRIV and severity NOTICE.
type SyslogSink struct {
	// Network and Addr as for syslog.Dial ("udp", "127.0.0.1:514"; "unix",
	// "/dev/log"; "" and "" for the local daemon).
	Network, Addr string
}

// Publish implements Sink.
func (s SyslogSink) Publish(size int64, signed []byte) error {
	w, err := syslog.Dial(s.Network, s.Addr, syslog.LOG_AUTHPRIV|syslog.LOG_NOTICE, "palisade")
	if err != nil {
		return fmt.Errorf("archive: syslog sink: %w", err)
	}
	defer w.Close()
	if err := w.Notice(SyslogLine(size, signed)); err != nil {
		return fmt.Errorf("archive: syslog sink: %w", err)
	}
	return nil
}

// SyslogLine is the message SyslogSink sends.
func SyslogLine(size int64, signed []byte) string {
	return "palisade-checkpoint size=" + strconv.FormatInt(size, 10) + " note=" + base64.StdEncoding.EncodeToString(signed)
}

// HTTPSink POSTs each checkpoint (the signed note, text/plain) to a URL,
// for a witness or a log collector on another host; any 2xx answer is
// success. This is a plain POST, not the C2SP tlog-witness protocol.
type HTTPSink struct {
	URL    string
	Client *http.Client
}

// Publish implements Sink.
func (s HTTPSink) Publish(size int64, signed []byte) error {
	c := s.Client
	if c == nil {
		c = &http.Client{Timeout: 10 * time.Second}
	}
	req, err := http.NewRequest(http.MethodPost, s.URL, bytes.NewReader(signed))
	if err != nil {
		return fmt.Errorf("archive: HTTP sink: %w", err)
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	req.Header.Set("X-Palisade-Tree-Size", strconv.FormatInt(size, 10))
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("archive: HTTP sink: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("archive: HTTP sink %s: %s", s.URL, resp.Status)
	}
	return nil
}
