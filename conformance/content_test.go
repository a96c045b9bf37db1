package conformance

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/palisade-im/palisade/conformance/federation"
)

// TestContentRulesSlixmpp: real slixmpp clients on a server with content
// rules. alice's message with a Luhn-valid card number gets
// policy-violation and never reaches bob; a random 16-digit number and
// an IBAN do. The IBAN's record is flagged: `archive search --flag` finds
// it, `archive review list` shows it open, `review close` closes it
// (once: closing again, or a record no rule flagged, is refused), and
// `archive verify` still passes.
func TestContentRulesSlixmpp(t *testing.T) {
	RequireSlixmpp(t)
	s := StartServerWith(t, `
[[content.rule]]
name = "cards"
detector = "card_number"
action = "block"
text = "card numbers may not be sent over chat"

[[content.rule]]
name = "iban-review"
detector = "iban"
action = "flag"
`)
	for _, u := range []string{"alice", "bob"} {
		s.AddUser(t, u+"@"+Domain, accounts[u])
	}
	user := func(name string) federation.User {
		return federation.User{JID: name + "@" + Domain, Password: accounts[name], Addr: s.C2S, CAFile: s.CAFile}
	}
	const card, random, iban = "card 4111 1111 1111 1111", "ref 4111 1111 1111 1112", "pay DE89 3704 0044 0532 0130 00"
	bob := federation.StartSlix(t, "slixmpp bob", user("bob"), federation.SlixSteps{
		Expect: []string{random, iban}, Linger: 2 * time.Second, Absent: []string{card},
	}, 60*time.Second)
	bob.WaitLine(t, `LOGIN OK .*`, 30*time.Second)
	out := federation.StartSlix(t, "slixmpp alice", user("alice"), federation.SlixSteps{
		Send: []string{"bob@" + Domain + "=" + card, "bob@" + Domain + "=" + random, "bob@" + Domain + "=" + iban}, ExpectError: "policy-violation",
	}, 60*time.Second).MustSucceed(t)
	if !federation.HasLine(out, `STANZA ERROR alice bob@localhost policy-violation card numbers may not be sent over chat`) {
		t.Errorf("alice's card message: no policy-violation with the rule's text:\n%s", out)
	}
	if o := bob.MustSucceed(t); !federation.HasLine(o, `ABSENT OK`) {
		t.Errorf("bob:\n%s", o)
	}

	lines := searchLines(t, s, "--flag", "iban-review")
	if len(lines) != 1 || !strings.Contains(lines[0], "[flagged: iban-review] "+iban) {
		t.Fatalf("archive search --flag iban-review: %q", lines)
	}
	seq := strings.SplitN(lines[0], "\t", 2)[0]
	review := func(args ...string) (string, error) { return archiveCLI(t, s, append([]string{"review"}, args...)...) }
	if out, err := review("list"); err != nil || !regexp.MustCompile(`(?m)^`+seq+`\t\S+\talice@localhost/\S+ -> bob@localhost\tiban-review\topen$`).MatchString(out) ||
		!strings.Contains(out, "1 open, 1 flagged in all") {
		t.Fatalf("review list: %v\n%s", err, out)
	}
	if out, err := review("close", seq, "--reason", "supplier invoice, allowed", "--by", "officer-1"); err != nil || !strings.Contains(out, "review of record "+seq+" closed") {
		t.Fatalf("review close: %v\n%s", err, out)
	}
	if out, err := review("list"); err != nil || !strings.Contains(out, "0 open, 1 flagged in all") {
		t.Fatalf("review list after close: %v\n%s", err, out)
	}
	if out, err := review("list", "--all"); err != nil || !strings.Contains(out, "closed by cli:officer-1") || !strings.Contains(out, "supplier invoice, allowed") {
		t.Fatalf("review list --all: %v\n%s", err, out)
	}
	if out, err := review("close", seq, "--reason", "again"); err == nil || !strings.Contains(out, "closed already") {
		t.Errorf("closing twice: %v\n%s", err, out)
	}
	plain := searchLines(t, s, "--text", "ref 4111")
	if len(plain) != 1 {
		t.Fatalf("search --text: %q", plain)
	}
	if out, err := review("close", strings.SplitN(plain[0], "\t", 2)[0], "--reason", "x"); err == nil || !strings.Contains(out, "not flagged") {
		t.Errorf("closing an unflagged record: %v\n%s", err, out)
	}
	if out, err := archiveCLI(t, s, "verify"); err != nil {
		t.Errorf("archive verify: %v\n%s", err, out)
	}
}
