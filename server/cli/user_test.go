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

// TestUserGroup: `user group add|remove|list` on the store the server
// reads; groups not in [groups], unknown accounts, bad JIDs and repeats
// are refused naming what was wrong, and change nothing.
func TestUserGroup(t *testing.T) {
	dir := t.TempDir()
	path := writeConfig(t, dir, "[groups]\nops = \"\"\nstaff = \"cn=staff,dc=example,dc=com\"\n")
	for _, u := range []string{"alice", "bob"} {
		if code, _, errOut := runIn("quill-pen-ink-42\n", "--config", path, "user", "add", u+"@example.com"); code != 0 {
			t.Fatalf("add %s: %s", u, errOut)
		}
	}
	ok := func(want string, args ...string) {
		t.Helper()
		code, out, errOut := runIn("", append([]string{"--config", path, "user", "group"}, args...)...)
		if code != 0 || out != want {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want %q", args, code, out, errOut, want)
		}
	}
	fail := func(wantCode int, want string, args ...string) {
		t.Helper()
		code, out, errOut := runIn("", append([]string{"--config", path, "user", "group"}, args...)...)
		if code != wantCode || out != "" || !strings.Contains(errOut, want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want %d saying %q", args, code, out, errOut, wantCode, want)
		}
	}
	ok("alice@example.com: added to group ops\n", "add", "alice@example.com", "ops")
	ok("bob@example.com: added to group ops\n", "add", "bob@example.com", "ops")
	ok("alice@example.com: added to group staff\n", "add", "alice@example.com", "staff")

	fail(2, `group "admins" is not declared in [groups] of `+path+` (declared: ops, staff); add admins = "" there`, "add", "alice@example.com", "admins")
	fail(1, "user carol@example.com does not exist", "add", "carol@example.com", "ops")
	fail(1, "alice@example.com is already in group ops", "add", "alice@example.com", "ops")
	fail(2, `"alice" is not a bare JID`, "add", "alice", "ops")
	fail(2, `"alice@example.com/phone" is not a bare JID`, "add", "alice@example.com/phone", "ops")
	fail(2, `domain "example.org" is not served`, "add", "alice@example.org", "ops")
	fail(2, "usage: palisade user group", "add", "alice@example.com")
	fail(2, `unknown user group command "join"`, "join", "alice@example.com", "ops")
	fail(2, `"nobody" is neither a group declared in [groups] (declared: ops, staff) nor a bare JID`, "list", "nobody")

	ok("alice@example.com\nbob@example.com\n", "list", "ops")
	ok("ops\nstaff\n", "list", "alice@example.com")
	ok("ops (internal only): 2 internal member(s)\n  alice@example.com\n  bob@example.com\n"+
		"staff (directory group cn=staff,dc=example,dc=com): 1 internal member(s)\n  alice@example.com\n", "list")

	ok("bob@example.com: removed from group ops\n", "remove", "bob@example.com", "ops")
	fail(1, "bob@example.com is not in group ops", "remove", "bob@example.com", "ops")
	ok("alice@example.com\n", "list", "ops")
	ok("", "list", "bob@example.com")

	// A group taken out of [groups]: its membership has no effect, is
	// shown as such, and can still be removed; adding to it is refused.
	path = writeConfig(t, dir, "[groups]\nops = \"\"\n")
	ok("ops\nstaff (not in [groups]: no effect)\n", "list", "alice@example.com")
	fail(2, `group "staff" is not declared`, "add", "bob@example.com", "staff")
	fail(2, `group "staff" is not declared`, "remove", "bob@example.com", "staff")
	ok("alice@example.com: removed from group staff\n", "remove", "alice@example.com", "staff")

	// Deleting the account removes its memberships.
	if code, _, errOut := runIn("", "--config", path, "user", "del", "alice@example.com"); code != 0 {
		t.Fatal(errOut)
	}
	ok("", "list", "ops")
}
