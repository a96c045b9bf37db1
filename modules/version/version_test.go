package version

import (
	"testing"

	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/module/moduletest"
	"github.com/palisade-im/palisade/server/stanza"
)

func TestVersion(t *testing.T) {
	m := New(Config{}, "1.2.3")
	// XEP-0092 Example 1, answered as in Example 2 without <os/>.
	res, err := moduletest.Request(t, m, "romeo@montague.net/orchard", module.ScopeServer,
		`<iq type='get' to='juliet@capulet.com/balcony' id='version_1'><query xmlns='jabber:iq:version'/></iq>`)
	want := `<query xmlns="jabber:iq:version"><name>Palisade</name><version>1.2.3</version></query>`
	if err != nil || moduletest.String(res) != want {
		t.Errorf("got %s, %v", moduletest.String(res), err)
	}
	_, err = moduletest.Request(t, m, "romeo@montague.net/orchard", module.ScopeServer,
		`<iq type='set' to='capulet.com' id='version_2'><query xmlns='jabber:iq:version'/></iq>`)
	if moduletest.Condition(err) != stanza.BadRequest {
		t.Errorf("set: %v", err)
	}
	if f := m.ServerFeatures(); len(f) != 1 || f[0] != NS {
		t.Errorf("features %v", f)
	}
}

func TestHide(t *testing.T) {
	m := New(Config{Hide: true}, "1.2.3")
	if len(m.ServerFeatures()) != 0 || len(m.IQRoutes()) != 0 {
		t.Error("hidden version still advertised or routed")
	}
	_, err := moduletest.Request(t, m, "romeo@montague.net/orchard", module.ScopeServer,
		`<iq type='get' to='capulet.com' id='version_1'><query xmlns='jabber:iq:version'/></iq>`)
	if moduletest.Condition(err) != stanza.ServiceUnavailable {
		t.Errorf("hidden: %v", err)
	}
}
