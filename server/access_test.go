package server

import (
	"strconv"
	"testing"

	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/stanza"
)

func TestStanzaRightsOf(t *testing.T) {
	no := false
	for _, c := range []struct {
		name               string
		a                  config.Access
		restricted, crypto bool
	}{
		{"defaults", config.Default().Access, false, false},
		{"login rules only", config.Access{Rules: []config.Rule{{JID: "a@x", Rights: config.Rights{Login: &no, Networks: []string{"10.0.0.0/8"}}}}}, false, false},
		{"read-only rule", config.Access{Rules: []config.Rule{{JID: "a@x"}, {JID: "b@x", Rights: config.Rights{Send: &no}}}}, true, false},
		{"default without federation", config.Access{Default: config.Rights{Federate: &no}}, true, false},
		{"encryption rule", config.Access{Rules: []config.Rule{{JID: "a@x", Rights: config.Rights{EncryptionRequired: true}}}}, true, true},
	} {
		r, e := stanzaRightsOf(c.a)
		if r != c.restricted || e != c.crypto {
			t.Errorf("%s: stanzaRightsOf = %v, %v, want %v, %v", c.name, r, e, c.restricted, c.crypto)
		}
	}
}

// BenchmarkCheckRights is the access check on a plain chat message
// between local accounts under ten jid rules (none matching) and a
// default that requires encryption for the recipient only by rule.
func BenchmarkCheckRights(b *testing.B) {
	cfg := config.Default()
	for i := range 10 {
		cfg.Access.Rules = append(cfg.Access.Rules, config.Rule{JID: "user" + strconv.Itoa(i) + "@localhost", Rights: config.Rights{EncryptionRequired: true}})
	}
	s := &Server{cfg: cfg, domains: map[string]bool{"localhost": true}}
	s.stanzaRights, s.encryptionRules = stanzaRightsOf(cfg.Access)
	el, err := element.Parse([]byte("<message from='alice@localhost/a' to='bob@localhost' type='chat'><body>hi</body></message>"), stanza.NSClient)
	if err != nil {
		b.Fatal(err)
	}
	st, err := stanza.Parse(el)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if d := s.checkRights(st); d != nil {
			b.Fatal(d.Reason)
		}
	}
}
