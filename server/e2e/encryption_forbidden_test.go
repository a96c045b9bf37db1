package e2e

import (
	"strings"
	"testing"

	"github.com/palisade-im/palisade/modules/pep"
	"github.com/palisade-im/palisade/server/config"
)

// TestEncryptionForbidden: alice and bob are in a group whose rule says
// encryption = "forbidden"; carol is not. An OMEMO (legacy or 2),
// OpenPGP for XMPP or XEP-0027 payload is refused with a modify
// policy-violation whether alice sends it or carol sends it to alice, and
// is never journaled; plain messages pass. alice may not publish to the
// OMEMO and OpenPGP key nodes; her other PEP nodes work, and carol (not
// under the rule) may publish her OMEMO device list. Each one's
// disco#info names the policy in effect for the account.
func TestEncryptionForbidden(t *testing.T) {
	t.Parallel()
	e, logs := newEnvObserved(t, func(c *config.Config) {
		c.Groups = map[string]string{"ops": ""}
		c.Access.Rules = []config.Rule{{Group: "ops", Rights: config.Rights{Encryption: config.EncryptionForbidden}}}
		c.Modules["pep"] = config.Section{Name: "pep", Value: &pep.Config{MaxItems: 50, MaxNodes: 10, MaxPayloadBytes: 2000}}
	})
	for _, u := range []string{"alice", "bob"} {
		groupCLI(t, e, "add", u+"@"+domain, "ops")
		waitRule(t, e, u+"@"+domain, 0)
	}
	alice := pepLogin(t, e, "alice", "a")
	bob := login(t, e, modeStartTLS, "bob", "b")
	carol := pepLogin(t, e, "carol", "c")

	payloads := []struct{ id, children, name string }{
		{"omemo2", e2eOMEMO2, "OMEMO 2"},
		{"omemo-legacy", e2eOMEMOLegacy, "OMEMO"},
		{"ox", "<openpgp xmlns='urn:xmpp:openpgp:0'>aGVsbG8=</openpgp><body>ox secret</body>", "OpenPGP for XMPP"},
		{"xep27", "<x xmlns='jabber:x:encrypted'>aGVsbG8=</x><body>xep27 secret</body>", "jabber:x:encrypted"},
		{"empty-omemo", "<encrypted xmlns='urn:xmpp:omemo:2'/><body>empty omemo secret</body>", "OMEMO 2"},
	}
	for _, p := range payloads {
		wantE2ERefused(t, alice.client, "bob@localhost/b", "a-"+p.id, p.children, "end-to-end encryption is forbidden for this account: its messages must stay readable to the content rules ("+p.name+" payload)")
		wantE2ERefused(t, carol.client, "alice@localhost/a", "c-"+p.id, p.children, "the recipient may not receive end-to-end encrypted messages")
	}
	bob.nothing(quiet)
	wantDelivered(t, alice.client, bob, "bob@localhost/b", "plain", "<body>plain hello</body>", nsClient, "body")
	wantDelivered(t, carol.client, bob, "bob@localhost/b", "plain-in", "<body>plain from carol</body>", nsClient, "body")

	for _, r := range journalRows(t, e) {
		for _, secret := range []string{"5Ro9Hc0DCWBk", "ox secret", "xep27 secret", "empty omemo secret"} {
			if strings.Contains(r.rawData, secret) && r.typ != "error" {
				t.Errorf("refused %q is journaled as %s from %s", secret, r.typ, r.from)
			}
		}
	}
	for _, who := range []string{"sender", "recipient"} {
		if n := len(auditEvents(logs, "policy_denied", "reason", "access.rule 1: encryption = forbidden ("+who+"): OMEMO 2 payload")); n != 2 {
			t.Errorf("%d audit events for the %s's OMEMO 2 refusals, want 2", n, who)
		}
	}

	devices := "<list xmlns='eu.siacs.conversations.axolotl'><device id='4223'/></list>"
	for _, node := range []string{
		"eu.siacs.conversations.axolotl.devicelist",
		"eu.siacs.conversations.axolotl.bundles:4223",
		"urn:xmpp:omemo:2:devices",
		"urn:xmpp:omemo:2:bundles",
		"urn:xmpp:openpgp:0:public-keys",
		"urn:xmpp:openpgp:0:public-keys:1234ABCD",
		"urn:xmpp:openpgp:0:secret-key",
	} {
		alice.fails("set", "", publish(node, "current", devices, ""), "policy-violation", "")
	}
	if n := len(auditEvents(logs, "policy_denied", "reason", "access.rule 1: encryption = forbidden (pep publish of end-to-end keys)")); n != 7 {
		t.Errorf("%d audit events for refused key publishes, want 7", n)
	}
	// Each account's disco#info names its policy.
	for c, want := range map[*pc]string{alice: "urn:palisade:encryption:forbidden", carol: "urn:palisade:encryption:allowed"} {
		r := c.ok("get", "", "<query xmlns='"+nsDiscoI+"'/>")
		var got []string
		for _, f := range r.Child(nsDiscoI, "query").Nodes {
			if v := f.A("var"); strings.HasPrefix(v, "urn:palisade:encryption:") {
				got = append(got, v)
			}
		}
		if len(got) != 1 || got[0] != want {
			t.Errorf("%s's disco#info: encryption features %v, want [%s]", c.name(), got, want)
		}
	}
	alice.ok("set", "", publish("urn:xmpp:avatar:metadata", "1", "<metadata xmlns='urn:xmpp:avatar:metadata'/>", ""))
	carol.ok("set", "", publish("eu.siacs.conversations.axolotl.devicelist", "current", devices, ""))
}
