package cli

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/palisade-im/palisade/storage"
	"github.com/palisade-im/palisade/storage/sqlite"
)

// runIn runs a command with stdin.
func runIn(stdin string, args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := Main(args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestUserAddPasswordPolicy: `user add` and `user passwd` apply [auth]
// password_min_length and password_reject_common, refuse with exit 2 and
// a message saying why (never the password), and change nothing.
func TestUserAddPasswordPolicy(t *testing.T) {
	dir := t.TempDir()
	path := writeConfig(t, dir, "")
	for _, tc := range []struct{ pw, why string }{
		{"short-pw", "at least 12 characters"},
		{"Password2026!", "most common passwords"},
		{"alice12345678", "account's name or domain"},
		{"123456789012", "most common"},
	} {
		code, out, errOut := runIn(tc.pw+"\n", "--config", path, "user", "add", "alice@example.com")
		if code != 2 || !strings.Contains(errOut, "password refused for alice@example.com: ") ||
			!strings.Contains(errOut, tc.why) || strings.Contains(errOut+out, tc.pw) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 2 saying %q", tc.pw, code, out, errOut, tc.why)
		}
	}
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "palisade.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetUser(ctx, "alice", "example.com"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("refused add created alice: %v", err)
	}
	st.Close()
	if code, out, errOut := runIn("quill-pen-ink-42\n", "--config", path, "user", "add", "alice@example.com"); code != 0 || out != "alice@example.com: created\n" {
		t.Fatalf("add: %d %q %q", code, out, errOut)
	}
	if code, _, errOut := runIn("qwerty123456\n", "--config", path, "user", "passwd", "alice@example.com"); code != 2 || !strings.Contains(errOut, "most common") {
		t.Errorf("passwd to a common password: %d %q", code, errOut)
	}
	// A lower minimum and the list off are honoured.
	lax := writeConfig(t, dir, "[auth]\npassword_min_length = 8\npassword_reject_common = false\n")
	if code, out, errOut := runIn("password\n", "--config", lax, "user", "passwd", "alice@example.com"); code != 0 || out != "alice@example.com: password changed\n" {
		t.Errorf("passwd with the lax policy: %d %q %q", code, out, errOut)
	}
}
