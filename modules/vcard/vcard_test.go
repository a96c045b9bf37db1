package vcard

import (
	"strings"
	"testing"

	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/module/moduletest"
	"github.com/palisade-im/palisade/server/stanza"
)

// XEP-0054 Example 5 (vCard update request, shortened), from stpeter@jabber.org.
const update = `<iq id='v2' type='set'>
  <vCard xmlns='vcard-temp'>
    <FN>Peter Saint-Andre</FN>
    <N><FAMILY>Saint-Andre</FAMILY><GIVEN>Peter</GIVEN><MIDDLE/></N>
    <NICKNAME>stpeter</NICKNAME>
    <URL>http://www.xmpp.org/xsf/people/stpeter.shtml</URL>
    <BDAY>1966-08-06</BDAY>
    <TEL><WORK/><VOICE/><NUMBER>303-308-3282</NUMBER></TEL>
    <EMAIL><INTERNET/><PREF/><USERID>stpeter@jabber.org</USERID></EMAIL>
    <JABBERID>stpeter@jabber.org</JABBERID>
    <DESC>
      Check out my blog at https://stpeter.im/
    </DESC>
  </vCard>
</iq>`

func newVCard(t *testing.T, cfg Config) *Module {
	t.Helper()
	h, _ := moduletest.NewHost(t, nil)
	m, err := New(h.Store, h.Log, cfg, 0)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestVCard(t *testing.T) {
	m := newVCard(t, *DefaultConfig())
	const peter = "stpeter@jabber.org/roundabout"
	const retrieve = `<iq id='v1' type='get'><vCard xmlns='vcard-temp'/></iq>`

	// XEP-0054 section 3.1: no vCard yet: an empty <vCard/>.
	res, err := moduletest.Request(t, m, peter, module.ScopeAccount, retrieve)
	if err != nil || moduletest.String(res) != `<vCard xmlns="vcard-temp"/>` {
		t.Errorf("empty: %s, %v", moduletest.String(res), err)
	}
	// Section 3.3: another user's missing vCard (or a missing user).
	for _, to := range []string{"stpeter@jabber.org", "nobody@jabber.org"} {
		_, err = moduletest.Request(t, m, "jer@jabber.org/home", module.ScopeAccount,
			`<iq id='v3' to='`+to+`' type='get'><vCard xmlns='vcard-temp'/></iq>`)
		if moduletest.Condition(err) != stanza.ServiceUnavailable {
			t.Errorf("%s: %v", to, err)
		}
	}

	// Section 3.2: update, then read back (owner and others).
	res, err = moduletest.Request(t, m, peter, module.ScopeAccount, update)
	if err != nil || res != nil {
		t.Fatalf("set: %s, %v", moduletest.String(res), err)
	}
	want := moduletest.Parse(t, update).Payload().String()
	res, err = moduletest.Request(t, m, peter, module.ScopeAccount, retrieve)
	if err != nil || moduletest.String(res) != want {
		t.Errorf("own:\n got %s\nwant %s (%v)", moduletest.String(res), want, err)
	}
	res, err = moduletest.Request(t, m, "jer@jabber.org/home", module.ScopeAccount,
		`<iq id='v3' to='stpeter@jabber.org' type='get'><vCard xmlns='vcard-temp'/></iq>`)
	if err != nil || moduletest.String(res) != want {
		t.Errorf("other: %s, %v", moduletest.String(res), err)
	}

	// Example 7: modifying another entity's vCard.
	_, err = moduletest.Request(t, m, "jer@jabber.org/home", module.ScopeAccount,
		`<iq id='v2' to='stpeter@jabber.org' type='set'><vCard xmlns='vcard-temp'><FN>Mallory</FN></vCard></iq>`)
	if moduletest.Condition(err) != stanza.Forbidden {
		t.Errorf("other set: %v", err)
	}

	// An empty <vCard/> deletes it.
	if _, err := moduletest.Request(t, m, peter, module.ScopeAccount, `<iq id='v4' type='set'><vCard xmlns='vcard-temp'/></iq>`); err != nil {
		t.Fatal(err)
	}
	res, err = moduletest.Request(t, m, peter, module.ScopeAccount, retrieve)
	if err != nil || moduletest.String(res) != `<vCard xmlns="vcard-temp"/>` {
		t.Errorf("after delete: %s, %v", moduletest.String(res), err)
	}
}

func TestVCardTooLarge(t *testing.T) {
	m := newVCard(t, Config{MaxBytes: 100})
	_, err := moduletest.Request(t, m, "stpeter@jabber.org/roundabout", module.ScopeAccount,
		`<iq id='v2' type='set'><vCard xmlns='vcard-temp'><DESC>`+strings.Repeat("x", 100)+`</DESC></vCard></iq>`)
	if moduletest.Condition(err) != stanza.NotAcceptable {
		t.Errorf("too large: %v", err)
	}
	if err := (&Config{}).Validate(); err == nil {
		t.Error("max_bytes 0 accepted")
	}
}

// limits.max_vcard_bytes bounds the vCard (and so a vcard-temp avatar)
// below the module's own max_bytes: a larger one is refused with the
// quota named, and the stored one stays.
func TestVCardQuota(t *testing.T) {
	h, _ := moduletest.NewHost(t, nil)
	m, err := New(h.Store, h.Log, *DefaultConfig(), 300)
	if err != nil {
		t.Fatal(err)
	}
	const from = "stpeter@jabber.org/roundabout"
	small := `<iq id='v1' type='set'><vCard xmlns='vcard-temp'><FN>Peter</FN></vCard></iq>`
	if _, err := moduletest.Request(t, m, from, module.ScopeAccount, small); err != nil {
		t.Fatal(err)
	}
	_, err = moduletest.Request(t, m, from, module.ScopeAccount,
		`<iq id='v2' type='set'><vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png</TYPE><BINVAL>`+strings.Repeat("QUFB", 100)+`</BINVAL></PHOTO></vCard></iq>`)
	if moduletest.Condition(err) != stanza.NotAcceptable || !strings.Contains(err.Error(), "limits.max_vcard_bytes") {
		t.Fatalf("vCard over the quota: %v, want not-acceptable naming limits.max_vcard_bytes", err)
	}
	res, err := moduletest.Request(t, m, from, module.ScopeAccount, `<iq id='v3' type='get'><vCard xmlns='vcard-temp'/></iq>`)
	if err != nil || !strings.Contains(moduletest.String(res), "<FN>Peter</FN>") {
		t.Errorf("stored vCard after the refusal: %s, %v", moduletest.String(res), err)
	}
}
