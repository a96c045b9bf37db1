package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/palisade-im/palisade/modules/archive"
	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/storage/sqlite"
	"go.uber.org/zap"
)

// writeConfig writes a configuration with the archive in dir and the
// given retention policies (TOML), listeners on free loopback ports off.
func writeConfig(t *testing.T, dir, extra string) string {
	t.Helper()
	path := filepath.Join(dir, "palisade.toml")
	doc := "[server]\ndomains = [\"example.com\"]\ndata_dir = \"" + dir + "\"\n" +
		"[listen]\nc2s = \"\"\nc2s_direct_tls = \"\"\nwebsocket = \"\"\nadmin = \"\"\n" + extra
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func run(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := Main(args, strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestLockedPolicyRefusedAtStartAndCheck(t *testing.T) {
	dir := t.TempDir()
	locked := "[[archive.retention]]\nname = \"sec-17a4\"\nscope = \"all\"\nkeep_days = 2190\nlocked = true\n"
	path := writeConfig(t, dir, locked)
	cfg, err := config.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	// What a first start records.
	ctx := context.Background()
	j, err := sqlite.OpenJournal(ctx, archive.Paths(cfg).Journal)
	if err != nil {
		t.Fatal(err)
	}
	if err := archive.EnforceLocks(ctx, j, j, cfg.Archive.Retention, "test", zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	j.Close()

	if code, out, _ := run("check-config", path); code != 0 || !strings.Contains(out, "1 recorded") {
		t.Fatalf("check-config of the recorded policy: %d %s", code, out)
	}
	for _, c := range []struct{ name, doc, want string }{
		{"shortened", strings.Replace(locked, "2190", "365", 1), "keep_days shortened from 2190 to 365"},
		{"removed", "", "removed from the configuration"},
		{"unlocked", strings.Replace(locked, "true", "false", 1), "no longer locked"},
	} {
		path := writeConfig(t, dir, c.doc)
		for _, cmd := range [][]string{{"check-config", path}, {"--config", path, "serve"}} {
			code, _, errOut := run(cmd...)
			if code != 2 || !strings.Contains(errOut, `"sec-17a4"`) || !strings.Contains(errOut, c.want) {
				t.Errorf("%s: %v: exit %d, stderr %q; want 2 naming sec-17a4: %s", c.name, cmd[len(cmd)-1], code, errOut, c.want)
			}
		}
	}
}

func TestOfficerKeysChecked(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "missing.asc")
	notKey := filepath.Join(dir, "not-a-key.asc")
	if err := os.WriteFile(notKey, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{bad, notKey} {
		path := writeConfig(t, dir, "[archive]\nofficer_keys = [\""+f+"\"]\n")
		for _, cmd := range [][]string{{"check-config", path}, {"--config", path, "serve"}} {
			code, _, errOut := run(cmd...)
			if code != 2 || !strings.Contains(errOut, "archive.officer_keys") || !strings.Contains(errOut, f) {
				t.Errorf("%s, %s: exit %d, %q", f, cmd[len(cmd)-1], code, errOut)
			}
		}
	}
}
