package server

import (
	"testing"

	"mellium.im/xmpp/jid"
)

// FuzzRuleJID checks the shortcut Rights takes to match an [[access.rule]]
// jid against an account (isBare, which avoids building the bare JID's
// string): for every rule jid that config validation accepts (a normalized
// bare user JID) and every address from the wire, it matches exactly when
// the address's bare JID is the rule's.
func FuzzRuleJID(f *testing.F) {
	f.Add("alice@localhost", "alice@localhost/phone")
	f.Add("alice@localhost", "Alice@LOCALHOST")
	f.Fuzz(func(t *testing.T, rule, addr string) {
		r, err := jid.Parse(rule)
		if err != nil || r.Localpart() == "" || r.Resourcepart() != "" || r.String() != rule {
			return // config.Parse refuses this rule
		}
		a, err := jid.Parse(addr)
		if err != nil {
			return // stanza.Parse refuses this address
		}
		got := isBare(rule, a.Localpart(), a.Domainpart())
		if want := a.Bare().String() == rule; got != want {
			t.Fatalf("isBare(%q, %q, %q) = %v, want %v", rule, a.Localpart(), a.Domainpart(), got, want)
		}
		if got != a.Bare().Equal(r) {
			t.Fatalf("isBare(%q) = %v but Bare(%q).Equal = %v", rule, got, addr, !got)
		}
	})
}
