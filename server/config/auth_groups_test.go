package config

import (
	"strings"
	"testing"
)

// TestPasswordPolicyKeys: [auth] password_min_length and
// password_reject_common decode, default to 12 and true, and bad values
// are refused at their line.
func TestPasswordPolicyKeys(t *testing.T) {
	if d := Default().Auth; d.PasswordMinLength != 12 || !d.PasswordRejectCommon {
		t.Errorf("defaults = %d, %v", d.PasswordMinLength, d.PasswordRejectCommon)
	}
	cfg, err := Parse("p.toml", []byte("[auth]\npassword_min_length = 16\npassword_reject_common = false\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Auth.PasswordMinLength != 16 || cfg.Auth.PasswordRejectCommon {
		t.Errorf("auth = %+v", cfg.Auth)
	}
	for _, tc := range []struct{ doc, want string }{
		{"[auth]\npassword_min_length = 4\n", "p.toml:2:1: auth.password_min_length: must be between 8 and 256, got 4"},
		{"[auth]\npassword_min_length = 257\n", "p.toml:2:1: auth.password_min_length: must be between 8 and 256, got 257"},
		{"[auth]\n\npassword_reject_common = \"yes\"\n", "p.toml:3:"},
		{"[auth]\npassword_min_lenght = 12\n", "password_min_lenght"},
	} {
		_, err := Parse("p.toml", []byte(tc.doc), nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.doc, err, tc.want)
		}
	}
}

// TestInternalGroups: "" declares a group of internal accounts only; an
// access rule may name it; a value that is neither "" nor a DN is refused.
func TestInternalGroups(t *testing.T) {
	doc := "[groups]\nops = \"\"\nstaff = \"cn=staff,dc=x\"\n\n[[access.rule]]\ngroup = \"ops\"\nlogin = false\n"
	cfg, err := Parse("p.toml", []byte(doc), nil)
	if err != nil {
		t.Fatal(err)
	}
	if dn, ok := cfg.Groups["ops"]; !ok || dn != "" || cfg.Access.Rules[0].Group != "ops" {
		t.Errorf("groups = %v, rules = %+v", cfg.Groups, cfg.Access.Rules)
	}
	for _, tc := range []struct{ doc, want string }{
		{"[groups]\nops = \"  \"\n", `p.toml:2:1: groups.ops: "  " is not a directory group DN (or "" for a group of internal accounts only)`},
		{"[groups]\nops = \"staff\"\n", `groups.ops: "staff" is not a directory group DN`},
		{"[groups]\n\" \" = \"\"\n", `" " is not a usable group name`},
		{"[groups]\nops = 3\n", "p.toml:2:"},
	} {
		_, err := Parse("p.toml", []byte(tc.doc), nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.doc, err, tc.want)
		}
	}
}
