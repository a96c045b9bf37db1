package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

type dirConfig struct {
	URL  string `toml:"url"`
	Base string `toml:"base_dn"`
}

func (c *dirConfig) Validate() error {
	var errs []error
	if !strings.HasPrefix(c.URL, "ldaps://") {
		errs = append(errs, &FieldError{Key: "url", Msg: "must be ldaps://"})
	}
	if c.Base == "" {
		errs = append(errs, &FieldError{Key: "base_dn", Msg: "must be set"})
	}
	if c.URL == "ldaps://whole" {
		errs = append(errs, errors.New("section-wide problem"))
	}
	return errors.Join(errs...)
}

func dirRegistry() StaticRegistry {
	return StaticRegistry{"ldap": func() any { return &dirConfig{} }}
}

// TestModuleFieldErrors checks that a module's FieldErrors are reported at
// their own key and line, and others at the section.
func TestModuleFieldErrors(t *testing.T) {
	doc := "[auth]\nproviders = [\"ldap\"]\n\n[modules.ldap]\nbase_dn = \"\"\nurl = \"ldap://dc1.corp.example\"\n"
	_, err := Parse("p.toml", []byte(doc), dirRegistry())
	if err == nil {
		t.Fatal("accepted")
	}
	got := err.Error()
	for _, want := range []string{
		"p.toml:5:1: modules.ldap.base_dn: must be set",
		"p.toml:6:1: modules.ldap.url: must be ldaps://",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("errors lack %q:\n%s", want, got)
		}
	}
	_, err = Parse("p.toml", []byte("[modules.ldap]\nurl = \"ldaps://whole\"\nbase_dn = \"x\"\n"), dirRegistry())
	if err == nil || !strings.Contains(err.Error(), "p.toml:1:10: modules.ldap: section-wide problem") {
		t.Errorf("section error = %v", err)
	}
}

// TestProviderNeedsSection checks that an external provider without its
// module section is refused at auth.providers.
func TestProviderNeedsSection(t *testing.T) {
	_, err := Parse("p.toml", []byte("[auth]\nproviders = [\"internal\", \"ldap\"]\n"), dirRegistry())
	if err == nil || !strings.Contains(err.Error(), `p.toml:2:`) ||
		!strings.Contains(err.Error(), `auth.providers: provider "ldap" needs a [modules.ldap] section`) {
		t.Fatalf("err = %v", err)
	}
	if _, err := Parse("p.toml", []byte("[auth]\nproviders = [\"ldap\"]\n[modules.ldap]\nurl = \"ldaps://x\"\nbase_dn = \"dc=x\"\n"), dirRegistry()); err != nil {
		t.Fatal(err)
	}
}

// TestAccessRules checks [groups] and [[access.rule]] decoding, and that
// an error in the second rule points at that rule's line.
func TestAccessRules(t *testing.T) {
	doc := `[groups]
staff = "cn=staff,ou=groups,dc=corp,dc=example"

[access]
default = { login = false }

[[access.rule]]
group = "staff"
networks = ["127.0.0.1/32"]

[[access.rule]]
jid = "kiosk@localhost"
login = false
max_sessions = 2
max_session_duration = "8h"
send = false
federate = false
file_transfer = "contacts"
encryption_required = true
`
	cfg, err := Parse("p.toml", []byte(doc), nil)
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Access
	if a.Default.MayLogin() || len(a.Rules) != 2 || a.Rules[0].Group != "staff" || !a.Rules[0].MayLogin() ||
		a.Rules[0].Networks[0] != "127.0.0.1/32" || a.Rules[1].JID != "kiosk@localhost" || a.Rules[1].MayLogin() ||
		a.Rules[1].MaxSessions != 2 || cfg.Groups["staff"] != "cn=staff,ou=groups,dc=corp,dc=example" {
		t.Errorf("access = %+v, groups = %v", a, cfg.Groups)
	}
	// The staff rule sets none of the other rights: they are permissive.
	if r := a.Rules[0].Rights; r.MaxSessionDuration != 0 || !r.MaySend() || !r.MayFederate() ||
		r.FileTransferScope() != FileTransferAll || r.EncryptionRequired {
		t.Errorf("unset rights = %+v", r)
	}
	if r := a.Rules[1].Rights; time.Duration(r.MaxSessionDuration) != 8*time.Hour || r.MaySend() || r.MayFederate() ||
		r.FileTransferScope() != FileTransferContacts || !r.EncryptionRequired {
		t.Errorf("kiosk rights = %+v", r)
	}
	if got := a.Rules[1].Describe(); got != "no login, 2 sessions, sessions up to 8h0m0s, read-only, no federation, file transfer contacts, encryption required" {
		t.Errorf("Describe = %q", got)
	}
	if sum := cfg.Summary(); !strings.Contains(sum, "access rules:     2, default: no login\n") ||
		!strings.Contains(sum, "groups:           staff\n") || !strings.Contains(sum, "lockout:          after 10 failed logins") {
		t.Errorf("summary:\n%s", sum)
	}
	bad := `[groups]
staff = "cn=staff,dc=x"

[[access.rule]]
group = "staff"

[[access.rule]]
group = "nobody"
networks = ["10.0.0.0/8", "10.1.2.3"]

[[access.rule]]
jid = "a@localhost"
group = "staff"

[[access.rule]]
jid = "b@localhost"
file_transfer = "everyone"
max_session_duration = "-1h"

[access]
default = { send = true, file_transfer = "friends", max_session_duration = "10ms" }
`
	_, err = Parse("p.toml", []byte(bad), nil)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		`p.toml:8:1: access.rule[1].group: unknown group "nobody"`,
		`p.toml:9:27: access.rule[1].networks: "10.1.2.3" is not a CIDR range`,
		`p.toml:11:`,
		`access.rule[2]: set exactly one of group and jid`,
		`p.toml:17:1: access.rule[3].file_transfer: must be "none", "contacts" or "all", got "everyone"`,
		`p.toml:18:1: access.rule[3].max_session_duration: must be 0 (no limit) or a positive duration, got -1h0m0s`,
		`access.default.file_transfer: must be "none", "contacts" or "all", got "friends"`,
		`access.default.max_session_duration: must be 0 (no limit) or at least 1s, got 10ms`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("errors lack %q:\n%v", want, err)
		}
	}
}

// TestEncryptionPolicy checks encryption and the older
// encryption_required: both read, "forbidden" kept, contradictions and
// unknown values refused at their line.
func TestEncryptionPolicy(t *testing.T) {
	doc := `[groups]
traders = "cn=traders,dc=x"
kiosks = "cn=kiosks,dc=x"
legacy = "cn=legacy,dc=x"

[access]
default = { encryption = "allowed" }

[[access.rule]]
group = "traders"
encryption = "forbidden"

[[access.rule]]
group = "kiosks"
encryption = "required"

[[access.rule]]
group = "legacy"
encryption_required = true
`
	cfg, err := Parse("p.toml", []byte(doc), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{EncryptionForbidden, EncryptionRequired, EncryptionRequired}
	for i, r := range cfg.Access.Rules {
		if got := r.EncryptionPolicy(); got != want[i] {
			t.Errorf("rule %d: policy %q, want %q", i+1, got, want[i])
		}
	}
	if got := cfg.Access.Default.EncryptionPolicy(); got != EncryptionAllowed {
		t.Errorf("default: %q", got)
	}
	if got := cfg.Access.Rules[0].Describe(); got != "login, encryption forbidden" {
		t.Errorf("Describe = %q", got)
	}
	for _, tc := range []struct{ doc, want string }{
		{"[[access.rule]]\njid = \"a@localhost\"\nencryption = \"sometimes\"\n", `p.toml:3:1: access.rule[0].encryption: must be "required", "allowed" or "forbidden", got "sometimes"`},
		{"[[access.rule]]\njid = \"a@localhost\"\nencryption_required = true\nencryption = \"forbidden\"\n", `p.toml:4:1: access.rule[0].encryption: "forbidden" contradicts encryption_required = true`},
		{"[access]\ndefault = { encryption_required = true, encryption = \"allowed\" }\n", `access.default.encryption: "allowed" contradicts`},
	} {
		_, err := Parse("p.toml", []byte(tc.doc), nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want %q", tc.doc, err, tc.want)
		}
	}
	// encryption_required alone on the default: no contradiction with the
	// built-in "allowed".
	cfg, err = Parse("p.toml", []byte("[access]\ndefault = { encryption_required = true }\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Access.Default.EncryptionPolicy(); got != EncryptionRequired {
		t.Errorf("default with encryption_required: %q", got)
	}
}
