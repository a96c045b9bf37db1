package config

import (
	"reflect"
	"strings"
	"testing"
)

// TestAdmins: server.admins takes normalized bare JIDs of served domains;
// anything else is reported at its line.
func TestAdmins(t *testing.T) {
	cfg, err := Parse("t.toml", []byte("[server]\ndomains = [\"example.com\", \"chat.example.com\"]\nadmins = [\"root@example.com\", \"ops@chat.example.com\"]\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"root@example.com", "ops@chat.example.com"}; !reflect.DeepEqual(cfg.Server.Admins, want) {
		t.Errorf("admins = %q, want %q", cfg.Server.Admins, want)
	}
	if d := Default().Server.Admins; len(d) != 0 {
		t.Errorf("default admins = %q, want none", d)
	}

	doc := "[server]\ndomains = [\"example.com\"]\nadmins = [\n  \"root@example.com/laptop\",\n  \"Root@example.com\",\n  \"example.com\",\n  \"root@elsewhere.example\",\n  \"a@b@c\",\n  \"ops@example.com\",\n  \"ops@example.com\",\n]\n"
	_, err = Parse("t.toml", []byte(doc), nil)
	if err == nil {
		t.Fatal("accepted bad admins")
	}
	got := err.Error()
	for _, want := range []string{
		`t.toml:4:3: server.admins: "root@example.com/laptop" is not a bare user JID (user@domain)`,
		`t.toml:5:3: server.admins: "Root@example.com" is not normalized (write "root@example.com")`,
		`t.toml:6:3: server.admins: "example.com" is not a bare user JID (user@domain)`,
		`t.toml:7:3: server.admins: "root@elsewhere.example" is not an account of a served domain (server.domains)`,
		`t.toml:8:3: server.admins: "a@b@c" is not a valid JID`,
		`t.toml:10:3: server.admins: duplicate JID "ops@example.com"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("errors lack %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "t.toml:9:") {
		t.Errorf("the first ops@example.com is fine:\n%s", got)
	}
}
