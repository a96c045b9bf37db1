// Package password is the policy for the passwords of internal accounts,
// applied wherever one is set: XEP-0077 registration and password change
// (modules/register) and `palisade user add|passwd` (server/cli).
//
// A password is prepared with the PRECIS OpaqueString profile (RFC 8265),
// as SCRAM and PLAIN prepare it at login, and refused when it is
// longer than MaxBytes, shorter than Policy.MinLength characters, the
// account's own name (localpart, domain, bare JID or the domain's first
// label, also followed by digits or symbols), or, with
// Policy.RejectCommon, one of a few hundred common passwords (common.txt,
// embedded) or a trivial pattern: one short unit repeated ("aaaaaaaaaaaa",
// "abcabcabcabc") or a straight run ("123456789012", "lmnopqrstuvw").
// Common passwords are matched ignoring case, after stripping trailing
// digits and symbols ("Summer2024!" is "summer") and undoing the usual
// substitutions (@ for a, 0 for o, 3 for e, $ for s).
//
// Errors say why in words fit for the user; they never contain the
// password.
package password

import (
	_ "embed"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/secure/precis"
)

// MaxBytes is the longest password accepted, in bytes.
const MaxBytes = 1024

// Policy is the password policy of internal accounts ([auth]
// password_min_length and password_reject_common).
type Policy struct {
	// MinLength is the fewest characters (after PRECIS preparation).
	MinLength int
	// RejectCommon refuses common passwords and trivial patterns.
	RejectCommon bool
}

// Weak is a password the policy refuses. Reason is for the user.
type Weak struct {
	Reason string
}

func (w *Weak) Error() string { return w.Reason }

//go:embed common.txt
var commonText string

// common is the set of common passwords, built once at start-up from the
// embedded list and never changed.
var common = func() map[string]bool {
	m := map[string]bool{}
	for _, l := range strings.Split(commonText, "\n") {
		l = strings.TrimSpace(l)
		if l != "" && !strings.HasPrefix(l, "#") {
			m[strings.ToLower(l)] = true
		}
	}
	return m
}()

// CommonCount is the number of passwords in the built-in list.
func CommonCount() int { return len(common) }

// Check returns nil when the policy accepts password for the account
// localpart@domain, else a *Weak saying why.
func (p Policy) Check(password, localpart, domain string) error {
	if len(password) > MaxBytes {
		return &Weak{Reason: fmt.Sprintf("the password is too long (at most %d bytes)", MaxBytes)}
	}
	prepared, err := precis.OpaqueString.String(password)
	if err != nil || prepared == "" {
		return &Weak{Reason: "the password contains characters that are not allowed"}
	}
	if n := utf8.RuneCountInString(prepared); n < p.MinLength {
		return &Weak{Reason: fmt.Sprintf("the password must be at least %d characters long", p.MinLength)}
	}
	lower := strings.ToLower(prepared)
	base := strings.TrimRightFunc(lower, func(r rune) bool { return unicode.IsDigit(r) || unicode.IsPunct(r) || unicode.IsSymbol(r) || r == ' ' })
	for _, name := range names(localpart, domain) {
		if lower == name || base == name {
			return &Weak{Reason: "the password must not be the account's name or domain"}
		}
	}
	if !p.RejectCommon {
		return nil
	}
	if common[lower] || (utf8.RuneCountInString(base) >= 4 && (common[base] || common[undoSubstitutions(base)])) {
		return &Weak{Reason: "this password is one of the most common passwords"}
	}
	if repeated(lower) || straightRun(lower) {
		return &Weak{Reason: "this password is a repeated or sequential pattern"}
	}
	return nil
}

// names are the account's own names a password must not be.
func names(localpart, domain string) []string {
	l, d := strings.ToLower(localpart), strings.ToLower(domain)
	out := []string{}
	if l != "" {
		out = append(out, l)
	}
	if d != "" {
		out = append(out, d)
		if first, _, ok := strings.Cut(d, "."); ok && first != "" {
			out = append(out, first)
		}
	}
	if l != "" && d != "" {
		out = append(out, l+"@"+d)
	}
	return out
}

var substitutions = strings.NewReplacer("@", "a", "0", "o", "3", "e", "$", "s")

func undoSubstitutions(s string) string { return substitutions.Replace(s) }

// repeated reports whether s is a unit of at most four characters
// repeated at least twice ("aaaa", "abab", "12341234").
func repeated(s string) bool {
	r := []rune(s)
	for unit := 1; unit <= 4 && 2*unit <= len(r); unit++ {
		if len(r)%unit != 0 {
			continue
		}
		same := true
		for i := unit; i < len(r) && same; i++ {
			same = r[i] == r[i-unit]
		}
		if same {
			return true
		}
	}
	return false
}

// straightRun reports whether every character of s follows the one
// before it, up or down by one ("abcdef", "987654"); digits wrap ("7890123").
func straightRun(s string) bool {
	r := []rune(s)
	if len(r) < 3 {
		return false
	}
	step := func(a, b rune) int {
		d := int(b - a)
		if unicode.IsDigit(a) && unicode.IsDigit(b) {
			d = ((d % 10) + 10) % 10
			if d == 9 {
				d = -1
			}
		}
		return d
	}
	dir := step(r[0], r[1])
	if dir != 1 && dir != -1 {
		return false
	}
	for i := 2; i < len(r); i++ {
		if step(r[i-1], r[i]) != dir {
			return false
		}
	}
	return true
}
