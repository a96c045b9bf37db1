package password

import (
	"errors"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	p := Policy{MinLength: 12, RejectCommon: true}
	for _, tc := range []struct {
		pw, why string // why "" = accepted
	}{
		{"correct-horse-7", ""},
		{"alice-secret-1", ""},
		{"Tr0ub4dor&3xyz", ""},
		{"zwölf Äpfel am Baum", ""},
		{"short", "at least 12 characters"},
		{"elevenchars", "at least 12 characters"},
		{"ÄÖÜäöüßéèêë", "at least 12 characters"}, // 11 characters, more bytes
		{strings.Repeat("x", MaxBytes+1), "too long"},
		{"bad\u0007control!!", "not allowed"},
		// The account's own names, also with digits or symbols after them.
		{"Alice@Example.com", "name or domain"},
		{"Example.com!", "name or domain"},
		{"EXAMPLE2024!", "name or domain"},
		{"alice12345678", "name or domain"},
		// The list, ignoring case, trailing digits and symbols, substitutions.
		{"password1234", "most common"},
		{"Password2026!", "most common"},
		{"P@ssw0rd12345", "most common"},
		{"qwertyuiop123", "most common"},
		{"Summer2024!!!", "most common"},
		{"correcthorsebatterystaple", "most common"},
		{"iloveyou1234", "most common"},
		{"palisade2026!", "most common"},
		// Patterns.
		{"aaaaaaaaaaaa", "repeated or sequential"},
		{"abcabcabcabc", "repeated or sequential"},
		{"121212121212", "repeated or sequential"},
		{"abcdefghijklm", "repeated or sequential"},
		{"7890123456789", "repeated or sequential"},
		{"zyxwvutsrqpon", "repeated or sequential"},
	} {
		err := p.Check(tc.pw, "alice", "example.com")
		var weak *Weak
		switch {
		case tc.why == "" && err != nil:
			t.Errorf("%q refused: %v", tc.pw, err)
		case tc.why != "" && (!errors.As(err, &weak) || !strings.Contains(weak.Reason, tc.why)):
			t.Errorf("%q: %v, want a *Weak saying %q", tc.pw, err, tc.why)
		case err != nil && len(tc.pw) > 3 && strings.Contains(err.Error(), tc.pw):
			t.Errorf("%q: the error repeats the password: %v", tc.pw, err)
		}
	}
}

func TestRejectCommonOff(t *testing.T) {
	p := Policy{MinLength: 8}
	for _, pw := range []string{"password1234", "aaaaaaaaaaaa", "qwertyuiop"} {
		if err := p.Check(pw, "alice", "example.com"); err != nil {
			t.Errorf("%q refused with reject_common off: %v", pw, err)
		}
	}
	// Length and the account's names still apply.
	if err := p.Check("short", "alice", "example.com"); err == nil {
		t.Error("short accepted")
	}
	if err := p.Check("alice2026", "alice", "example.com"); err == nil {
		t.Error("the localpart accepted")
	}
}

func TestList(t *testing.T) {
	if n := CommonCount(); n < 300 {
		t.Errorf("%d common passwords, want a few hundred", n)
	}
	for pw := range common {
		if pw != strings.ToLower(pw) || strings.TrimSpace(pw) != pw || strings.HasPrefix(pw, "#") {
			t.Errorf("list entry %q is not a lowercase password", pw)
		}
	}
}
