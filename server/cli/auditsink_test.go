package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/palisade-im/palisade/server/config"
	"go.uber.org/zap"
)

// readAuditFiles returns the lines of path.keep ... path.1, path, oldest
// first, and the size of each file.
func readAuditFiles(t *testing.T, path string, keep int) (lines []string, sizes map[string]int64) {
	t.Helper()
	sizes = map[string]int64{}
	names := []string{}
	for i := keep + 5; i >= 1; i-- {
		names = append(names, path+"."+strconv.Itoa(i))
	}
	names = append(names, path)
	for _, n := range names {
		b, err := os.ReadFile(n)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(n)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", n, fi.Mode().Perm())
		}
		sizes[n] = int64(len(b))
		if len(b) > 0 && b[len(b)-1] != '\n' {
			t.Errorf("%s ends inside a line: %q", n, b[max(0, len(b)-40):])
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
	}
	return lines, sizes
}

// TestAuditFileRotation: many writers append audit lines to a file
// rotated at a small size; every line is in exactly one file, whole, no
// file is past the size, and keep bounds the rotated files (the newest
// lines stay, in order).
func TestAuditFileRotation(t *testing.T) {
	const maxBytes = 1000
	t.Run("no line lost or split", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "logs", "audit.log")
		const keep, writers, each = 500, 8, 200
		r, err := openRotatingFile(path, maxBytes, keep)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := 0; i < each; i++ {
					line := fmt.Sprintf(`{"event":"e","w":%d,"i":%d,"pad":%q}`+"\n", w, i, strings.Repeat("x", (w*i)%60))
					if _, err := r.Write([]byte(line)); err != nil {
						t.Error(err)
						return
					}
				}
			}(w)
		}
		wg.Wait()
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		lines, sizes := readAuditFiles(t, path, keep)
		if len(sizes) < 50 {
			t.Fatalf("only %d files: rotation did not happen (%v)", len(sizes), sizes)
		}
		for n, sz := range sizes {
			if sz > maxBytes {
				t.Errorf("%s has %d bytes, past %d", n, sz, maxBytes)
			}
		}
		seen := map[[2]int]int{}
		last := make([]int, writers)
		for i := range last {
			last[i] = -1
		}
		for _, l := range lines {
			var v struct{ W, I int }
			if err := json.Unmarshal([]byte(l), &v); err != nil {
				t.Fatalf("split or broken line %q: %v", l, err)
			}
			seen[[2]int{v.W, v.I}]++
			if v.I <= last[v.W] {
				t.Errorf("writer %d: line %d after %d (files out of order)", v.W, v.I, last[v.W])
			}
			last[v.W] = v.I
		}
		if len(lines) != writers*each || len(seen) != writers*each {
			t.Fatalf("%d lines, %d distinct, want %d", len(lines), len(seen), writers*each)
		}
	})
	t.Run("keep", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "audit.log")
		const keep, n = 3, 400
		r, err := openRotatingFile(path, maxBytes, keep)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			if _, err := fmt.Fprintf(r, `{"i":%d}`+"\n", i); err != nil {
				t.Fatal(err)
			}
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		lines, sizes := readAuditFiles(t, path, keep)
		var names []string
		for n := range sizes {
			names = append(names, filepath.Base(n))
		}
		sort.Strings(names)
		if want := []string{"audit.log", "audit.log.1", "audit.log.2", "audit.log.3"}; strings.Join(names, " ") != strings.Join(want, " ") {
			t.Fatalf("files %v, want %v", names, want)
		}
		// What is kept is the newest lines, contiguous up to the last.
		for k, l := range lines {
			want := fmt.Sprintf(`{"i":%d}`, n-len(lines)+k)
			if l != want {
				t.Fatalf("line %d is %q, want %q", k, l, want)
			}
		}
		// Reopening appends to the current file.
		r, err = openRotatingFile(path, maxBytes, keep)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Write([]byte("{\"i\":\"again\"}\n")); err != nil {
			t.Fatal(err)
		}
		_ = r.Close()
		again, _ := readAuditFiles(t, path, keep)
		if got := again[len(again)-1]; got != `{"i":"again"}` || len(again) < len(lines) {
			t.Fatalf("after reopening: last line %q, %d lines (before %d)", got, len(again), len(lines))
		}
	})
}

// TestAuditSinksServe: with [log] audit_file the serve logger writes every
// line to stderr and the audit events, and only those, to the file; the
// file is created 0600.
func TestAuditSinksServe(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	c := config.Default().Log
	c.AuditFile = path
	var stderr bytes.Buffer
	log, sinks, err := newAuditedLogger(c, &stderr, true)
	if err != nil {
		t.Fatal(err)
	}
	log, stopLimits := rateLimited(log, zap.InfoLevel)
	log.Info("palisade starting")
	audit := log.Named("audit").With(zap.Bool("audit", true))
	audit.Info("user_add", zap.String("jid", "alice@localhost"))
	audit.Named("c2s").Warn("login_failed", zap.String("jid", "bob@localhost"))
	log.Named("c2s").Info("listening")
	stopLimits()
	if err := sinks.Close(); err != nil {
		t.Fatal(err)
	}
	lines, _ := readAuditFiles(t, path, 1)
	if len(lines) != 2 || !strings.Contains(lines[0], `"msg":"user_add"`) || !strings.Contains(lines[1], `"msg":"login_failed"`) {
		t.Fatalf("audit file lines %q", lines)
	}
	for _, want := range []string{"palisade starting", "user_add", "login_failed", "listening"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}
}

// TestAuditSyslog: with audit_syslog = "unixgram:///PATH" each audit event
// reaches the socket as one syslog message tagged palisade-audit; the
// other lines do not.
func TestAuditSyslog(t *testing.T) {
	dir, err := os.MkdirTemp("", "as")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "log")
	pc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	c := config.Default().Log
	c.AuditSyslog = "unixgram://" + sock
	var stderr bytes.Buffer
	log, sinks, err := newAuditedLogger(c, &stderr, true)
	if err != nil {
		t.Fatal(err)
	}
	defer sinks.Close()
	log.Info("an ordinary line")
	log.Named("audit").With(zap.Bool("audit", true)).Info("archive_export", zap.String("actor", "cli"))
	buf := make([]byte, 8192)
	_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := pc.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	msg := string(buf[:n])
	// <priority> = authpriv (10) * 8 + info (6) = 86.
	if !strings.HasPrefix(msg, "<86>") || !strings.Contains(msg, "palisade-audit") || !strings.Contains(msg, `"msg":"archive_export"`) {
		t.Fatalf("syslog message %q", msg)
	}
	if strings.Contains(msg, "ordinary") {
		t.Fatalf("a non-audit line reached syslog: %q", msg)
	}
}

// TestAuditSinkConfig: bad [log] audit keys are refused with the key named.
func TestAuditSinkConfig(t *testing.T) {
	for _, tc := range []struct{ toml, want string }{
		{"[log]\naudit_syslog = \"ftp://x\"\n", "log.audit_syslog"},
		{"[log]\naudit_syslog = \"udp://nohost\"\n", "log.audit_syslog"},
		{"[log]\naudit_syslog = \"unix://\"\n", "names no socket path"},
		{"[log]\naudit_file_keep = 0\n", "log.audit_file_keep"},
		{"[log]\naudit_file_max_mb = -1\n", "log.audit_file_max_mb"},
		{"[log]\naudit_file = \"/var/log/\"\n", "names a directory"},
		{"[log]\naudit_file_maxmb = 3\n", "audit_file_maxmb"},
	} {
		path := filepath.Join(t.TempDir(), "p.toml")
		if err := os.WriteFile(path, []byte(tc.toml), 0o600); err != nil {
			t.Fatal(err)
		}
		var out, errb bytes.Buffer
		code := Main([]string{"check-config", path}, strings.NewReader(""), &out, &errb)
		if code != 2 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%q: exit %d, stderr %q, want 2 naming %q", tc.toml, code, errb.String(), tc.want)
		}
	}
}
