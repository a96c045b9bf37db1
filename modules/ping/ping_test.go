package ping

import (
	"testing"

	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/module/moduletest"
	"github.com/palisade-im/palisade/server/stanza"
)

func TestPing(t *testing.T) {
	m := New()
	// XEP-0199 Example 4: client-to-server ping.
	res, err := moduletest.Request(t, m, "juliet@capulet.lit/balcony", module.ScopeServer,
		`<iq from='juliet@capulet.lit/balcony' to='capulet.lit' id='c2s1' type='get'><ping xmlns='urn:xmpp:ping'/></iq>`)
	if err != nil || res != nil {
		t.Errorf("server ping: %v, %v", moduletest.String(res), err)
	}
	// Section 4.2 note: no 'to', or the user's own bare JID.
	for _, x := range []string{
		`<iq id='c2s2' type='get'><ping xmlns='urn:xmpp:ping'/></iq>`,
		`<iq to='juliet@capulet.lit' id='c2s3' type='get'><ping xmlns='urn:xmpp:ping'/></iq>`,
	} {
		res, err := moduletest.Request(t, m, "juliet@capulet.lit/balcony", module.ScopeAccount, x)
		if err != nil || res != nil {
			t.Errorf("%s: %v, %v", x, moduletest.String(res), err)
		}
	}
	// Someone else's bare JID.
	_, err = moduletest.Request(t, m, "romeo@montague.lit/home", module.ScopeAccount,
		`<iq to='juliet@capulet.lit' id='e2e1' type='get'><ping xmlns='urn:xmpp:ping'/></iq>`)
	if moduletest.Condition(err) != stanza.ServiceUnavailable {
		t.Errorf("other account: %v", err)
	}
	_, err = moduletest.Request(t, m, "juliet@capulet.lit/balcony", module.ScopeServer,
		`<iq to='capulet.lit' id='c2s4' type='set'><ping xmlns='urn:xmpp:ping'/></iq>`)
	if moduletest.Condition(err) != stanza.BadRequest {
		t.Errorf("set: %v", err)
	}
	if f := m.ServerFeatures(); len(f) != 1 || f[0] != NS {
		t.Errorf("features %v", f)
	}
}
