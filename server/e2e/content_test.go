package e2e

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	_ "github.com/palisade-im/palisade/modules/content" // the content rules policy link, in every e2e server
	"github.com/palisade-im/palisade/server/config"
	"mellium.im/xmpp/jid"
)

// contentEnv starts a server with content rules: card numbers blocked
// for everyone, IBANs flagged, links to executables and to a paste site
// blocked, and "project x" logged for the group ops (alice; bob is not
// in it).
func contentEnv(t *testing.T) (*env, func() []string) {
	t.Helper()
	e, logs := newEnvObserved(t, func(c *config.Config) {
		c.Groups = map[string]string{"ops": ""}
		c.Content.Rules = []config.ContentRule{
			{Name: "cards", Detector: "card_number", Action: config.ContentBlock, Text: "card numbers may not be sent over chat"},
			{Name: "iban-review", Detector: "iban", Action: config.ContentFlag},
			{Name: "executables", URLExtensions: []string{".exe", ".scr"}, URLDomains: []string{"paste.example"}, Action: config.ContentBlock},
			{Name: "project-x", Regex: `(?i)\bproject[ -]x\b`, Groups: []string{"ops"}, Action: config.ContentLog},
			{Name: "partners-only", Regex: `internal only`, Direction: config.DirectionPartners, Action: config.ContentBlock},
		}
	})
	groupCLI(t, e, "add", "alice@"+domain, "ops")
	deadline := time.Now().Add(10 * time.Second)
	for !slices.Contains(e.srv.Groups(jid.MustParse("alice@"+domain)), "ops") {
		if time.Now().After(deadline) {
			t.Fatal("alice is not in ops within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	audits := func() []string {
		var out []string
		for _, en := range logs.All() {
			if en.LoggerName == "audit" {
				b, _ := json.Marshal(en.ContextMap())
				out = append(out, en.Message+" "+string(b))
			}
		}
		return out
	}
	return e, audits
}

// TestContentRules: a Luhn-valid card number is refused with the rule's
// text, in a body, grouped with spaces; a random 16-digit number whose
// check fails is delivered. A link to an .exe, in the body, in an OOB URL
// or in XHTML-IM, and one to a subdomain of a blocked domain are refused.
// Refused messages reach no one and leave no journal record of their own;
// the matched value is in no audit event.
func TestContentRules(t *testing.T) {
	t.Parallel()
	e, audits := contentEnv(t)
	alice := login(t, e, modeStartTLS, "alice", "a")
	bob := login(t, e, modeStartTLS, "bob", "b")

	for _, r := range []struct{ id, children string }{
		{"card", "<body>my card: 4111 1111 1111 1111</body>"},
		{"card-dashes", "<body>4111-1111-1111-1111 exp 12/29</body>"},
		{"exe-body", "<body>get it at https://files.example.com/setup.EXE.</body>"},
		{"exe-oob", "<body>a file</body><x xmlns='jabber:x:oob'><url>https://files.example.com/a/tool.scr</url></x>"},
		{"exe-xhtml", "<body>click</body><html xmlns='http://jabber.org/protocol/xhtml-im'><body xmlns='http://www.w3.org/1999/xhtml'><a href='http://x.example/run.exe'>here</a></body></html>"},
		{"paste", "<body>see www.cdn.paste.example/abc</body>"},
	} {
		alice.send("<message to='bob@localhost/b' type='chat' id='%s'>%s</message>", r.id, r.children)
		n := alice.expect(nsClient, "message")
		wantRefused(t, n, r.id, "modify", r.id)
		if strings.HasPrefix(r.id, "card") && errorText(n) != "card numbers may not be sent over chat" {
			t.Errorf("%s: error text %q", r.id, errorText(n))
		}
	}
	bob.nothing(quiet)
	wantDelivered(t, alice, bob, "bob@localhost/b", "random", "<body>ref 4111 1111 1111 1112</body>", nsClient, "body")
	wantDelivered(t, alice, bob, "bob@localhost/b", "exe-word", "<body>the .exe files are gone</body>", nsClient, "body")

	for _, row := range journalRows(t, e) {
		if row.typ != "error" && (strings.Contains(row.content, "4111 1111 1111 1111") || strings.Contains(row.content, "setup.EXE")) {
			t.Errorf("a refused message is journaled: %s", row.rawData)
		}
	}
	for _, a := range audits() {
		if strings.Contains(a, "4111") || strings.Contains(a, "setup.EXE") {
			t.Errorf("an audit event holds the matched content: %s", a)
		}
	}
	var cardDenials int
	for _, a := range audits() {
		if strings.HasPrefix(a, "policy_denied ") && strings.Contains(a, `"policy":"content"`) && strings.Contains(a, `"reason":"content.rule cards: card_number"`) {
			cardDenials++
		}
	}
	if cardDenials != 2 {
		t.Errorf("%d audited card refusals, want 2:\n%s", cardDenials, strings.Join(audits(), "\n"))
	}
}

// TestContentFlagAndLog: an IBAN is delivered and its journal record
// carries "flags":["iban-review"] (audited as content_flagged); "project
// x" from alice (ops) is delivered and audited as content_matched, from
// bob (not in ops) it is not; a direction = "partners" rule does not
// apply between local accounts.
func TestContentFlagAndLog(t *testing.T) {
	t.Parallel()
	e, audits := contentEnv(t)
	alice := login(t, e, modeStartTLS, "alice", "a")
	bob := login(t, e, modeStartTLS, "bob", "b")

	wantDelivered(t, alice, bob, "bob@localhost/b", "iban", "<body>pay DE89 3704 0044 0532 0130 00</body>", nsClient, "body")
	wantDelivered(t, alice, bob, "bob@localhost/b", "px-alice", "<body>about Project X</body>", nsClient, "body")
	wantDelivered(t, bob, alice, "alice@localhost/a", "px-bob", "<body>about project-x</body>", nsClient, "body")
	wantDelivered(t, alice, bob, "bob@localhost/b", "internal", "<body>internal only</body>", nsClient, "body")
	wantDelivered(t, alice, bob, "bob@localhost/b", "plain", "<body>nothing here</body>", nsClient, "body")

	flagged := map[string]bool{}
	for _, row := range journalRows(t, e) {
		if strings.Contains(row.rawData, `"flags":`) {
			flagged[row.content[strings.Index(row.content, "id=")+4:strings.Index(row.content, "id=")+8]] = true
			if !strings.Contains(row.rawData, `"flags":["iban-review"]`) || !strings.Contains(row.content, "DE89") {
				t.Errorf("flagged record: %s", row.rawData)
			}
		}
	}
	if len(flagged) != 1 {
		t.Errorf("flagged records: %v, want the IBAN message's only", flagged)
	}
	var flagEvents, logEvents int
	for _, a := range audits() {
		switch {
		case strings.HasPrefix(a, "content_flagged ") && strings.Contains(a, `"rule":"iban-review"`) && strings.Contains(a, `"id":"iban"`):
			flagEvents++
		case strings.HasPrefix(a, "content_matched ") && strings.Contains(a, `"rule":"project-x"`):
			logEvents++
			if !strings.Contains(a, `"id":"px-alice"`) {
				t.Errorf("project-x matched for a non-member: %s", a)
			}
		}
	}
	if flagEvents != 1 || logEvents != 1 {
		t.Errorf("%d content_flagged and %d content_matched events, want 1 each:\n%s", flagEvents, logEvents, strings.Join(audits(), "\n"))
	}
}
