package xtime

import (
	"testing"
	"time"

	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/module/moduletest"
	"github.com/palisade-im/palisade/server/stanza"
)

func TestTime(t *testing.T) {
	// XEP-0202 Example 2's instant, given in another zone: the answer is UTC.
	at := time.Date(2006, 12, 19, 11, 58, 35, 500, time.FixedZone("CST", -6*3600))
	m := New(func() time.Time { return at })
	// XEP-0202 Example 1.
	res, err := moduletest.Request(t, m, "juliet@capulet.com/balcony", module.ScopeServer,
		`<iq type='get' from='romeo@montague.net/orchard' to='capulet.com' id='time_1'><time xmlns='urn:xmpp:time'/></iq>`)
	want := `<time xmlns="urn:xmpp:time"><tzo>+00:00</tzo><utc>2006-12-19T17:58:35Z</utc></time>`
	if err != nil || moduletest.String(res) != want {
		t.Errorf("got %s, %v", moduletest.String(res), err)
	}
	_, err = moduletest.Request(t, m, "juliet@capulet.com/balcony", module.ScopeServer,
		`<iq type='set' to='capulet.com' id='time_2'><time xmlns='urn:xmpp:time'/></iq>`)
	if moduletest.Condition(err) != stanza.BadRequest {
		t.Errorf("set: %v", err)
	}
	var found bool
	for _, i := range module.Registered() {
		found = found || i.Name == "time"
	}
	if !found {
		t.Error(`module "time" not registered`)
	}
}
