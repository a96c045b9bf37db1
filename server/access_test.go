package server

import (
	"strconv"
	"testing"

	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/module"
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
		{"default without federation", config.Access{Default: config.Rights{Federate: config.FederateNone()}}, true, false},
		{"rule naming partners", config.Access{Rules: []config.Rule{{JID: "a@x", Rights: config.Rights{Federate: config.FederateWith("partner-a")}}}}, true, false},
		{"rule federate true", config.Access{Rules: []config.Rule{{JID: "a@x", Rights: config.Rights{Federate: config.FederateAll()}}}}, false, false},
		{"encryption rule", config.Access{Rules: []config.Rule{{JID: "a@x", Rights: config.Rights{EncryptionRequired: true}}}}, true, true},
	} {
		r, e := stanzaRightsOf(c.a)
		if r != c.restricted || e != c.crypto {
			t.Errorf("%s: stanzaRightsOf = %v, %v, want %v, %v", c.name, r, e, c.restricted, c.crypto)
		}
	}
}

// TestCheckRightsFederate applies federate = ["partner-a"] (bob's rule)
// and false (carol's) in both directions: what bob sends to partner-b and
// what partner-b sends to him is refused with the same text, whether the
// recipient exists or not (the default also names partner-a only); a
// domain no partner names passes here (the federation gate refuses it),
// and the live partner list decides which partner owns a domain.
func TestCheckRightsFederate(t *testing.T) {
	cfg := config.Default()
	cfg.Federation.Partners = []config.Partner{
		{Name: "partner-a", Domains: []string{"a.test"}},
		{Name: "partner-b", Domains: []string{"b.test"}},
	}
	cfg.Access.Default.Federate = config.FederateWith("partner-a")
	cfg.Access.Rules = []config.Rule{
		{JID: "bob@localhost", Rights: config.Rights{Federate: config.FederateWith("partner-a")}},
		{JID: "carol@localhost", Rights: config.Rights{Federate: config.FederateNone()}},
		{JID: "dave@localhost"}, // federate unset: every partner
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	s := &Server{cfg: cfg, domains: map[string]bool{"localhost": true}}
	s.stanzaRights, s.encryptionRules = stanzaRightsOf(cfg.Access)
	fed := cfg.Federation
	s.federation.Store(&fed)
	parse := func(from, to, kind string) *stanza.Stanza {
		t.Helper()
		el, err := element.Parse([]byte("<"+kind+" from='"+from+"' to='"+to+"' id='x'/>"), stanza.NSClient)
		if err != nil {
			t.Fatal(err)
		}
		st, err := stanza.Parse(el)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	check := func(from, to, kind string) *module.Denial { return s.checkRights(parse(from, to, kind)) }
	checkOnly := func(from, to, kind string) *module.Denial { return s.checkFederate(parse(from, to, kind)) }
	refused := func(d *module.Denial, text string) bool {
		return d != nil && d.Err.Condition == stanza.PolicyViolation && d.Err.Type == stanza.Cancel && d.Err.Text == text
	}
	for _, c := range []struct {
		from, to, kind string
		text           string // "" passes
	}{
		{"bob@localhost/r", "x@a.test", "message", ""},
		{"bob@localhost/r", "x@b.test", "message", "this account may not communicate with b.test"},
		{"bob@localhost/r", "b.test", "iq", "this account may not communicate with b.test"},
		{"bob@localhost/r", "x@b.test", "presence", "this account may not communicate with b.test"},
		{"bob@localhost/r", "x@stranger.test", "message", ""}, // the federation gate's
		{"bob@localhost/r", "alice@localhost", "message", ""},
		{"x@a.test/r", "bob@localhost", "message", ""},
		{"x@b.test/r", "bob@localhost", "message", "this account may not communicate with b.test"},
		{"x@b.test/r", "bob@localhost/r", "presence", "this account may not communicate with b.test"},
		{"x@b.test/r", "nobody@localhost", "message", "this account may not communicate with b.test"},
		{"x@b.test/r", "localhost", "iq", ""}, // the server itself
		{"carol@localhost/r", "x@a.test", "message", "this account may not communicate with other domains"},
		{"x@a.test/r", "carol@localhost", "message", "this account may not communicate with a.test"},
		{"dave@localhost/r", "x@b.test", "message", ""},
		{"x@b.test/r", "dave@localhost", "message", ""},
		{"localhost", "x@b.test", "message", ""},
	} {
		d := check(c.from, c.to, c.kind)
		if c.text == "" && d != nil || c.text != "" && !refused(d, c.text) {
			t.Errorf("%s %s -> %s: denial %+v, want %q", c.kind, c.from, c.to, d, c.text)
		}
		// checkFederate (the copies that skip the chain) decides the same.
		if f := checkOnly(c.from, c.to, c.kind); (f == nil) != (d == nil) || f != nil && f.Err.Text != d.Err.Text {
			t.Errorf("%s %s -> %s: checkFederate %+v, checkRights %+v", c.kind, c.from, c.to, f, d)
		}
	}
	if d := check("x@b.test/r", "bob@localhost", "message"); d.Reason != `access.rule 1: federate = ["partner-a"] (recipient) excludes partner partner-b (b.test)` {
		t.Errorf("reason = %q", d.Reason)
	}
	// The live list decides: b.test moved to partner-a is bob's.
	moved := cfg.Federation
	moved.Partners = []config.Partner{{Name: "partner-a", Domains: []string{"a.test", "b.test"}}}
	s.federation.Store(&moved)
	if d := check("bob@localhost/r", "x@b.test", "message"); d != nil {
		t.Errorf("after the reload: %+v", d)
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
