package federation

import (
	"strings"
	"testing"
	"time"
)

// TestFederationPeersProsodyEjabberd proves the recipes without Palisade:
// Prosody (partner.test) and ejabberd (ejpartner.test), certificates from
// the test CA and s2s_secure_auth / required STARTTLS on both, federate;
// a slixmpp user on each subscribes to the other, sees the other's
// presence and gets the other's message.
func TestFederationPeersProsodyEjabberd(t *testing.T) {
	pki := NewPKI(t)
	pr := StartProsody(t, ProsodyOptions{
		Domain: PartnerDomain, Cert: pki.Certs[PartnerDomain], CAFile: pki.CA.File, Hosts: pki.Hosts,
		Users: map[string]string{"paula": "paula-pw"},
	})
	ej := StartEjabberd(t, EjabberdOptions{
		Cert: pki.Certs[EjDomain], CAFile: pki.CA.File, Hosts: pki.Hosts,
		Users: map[string]string{"ejo": "ejo-pw"},
	})
	a := User{JID: "paula@" + PartnerDomain, Password: "paula-pw", Addr: pr.C2S, CAFile: pki.CA.File}
	b := User{JID: "ejo@" + EjDomain, Password: "ejo-pw", Addr: ej.C2S, CAFile: pki.CA.File}
	start := time.Now()
	outA, outB := Exchange(t, a, b, 60*time.Second)
	t.Logf("exchange took %v\n%s\n%s", time.Since(start), outA, outB)
	for _, c := range []struct{ out, me, other string }{{outA, "paula", b.JID}, {outB, "ejo", a.JID}} {
		for _, re := range []string{
			`PRESENCE ` + c.me + ` ` + c.other + ` available`,
			`BOTH ` + c.other,
			`RECEIVED ` + c.me + ` ` + c.other + ` hello from ` + c.other,
		} {
			if !HasLine(c.out, re) {
				t.Errorf("%s: no line /%s/", c.me, re)
			}
		}
	}
	// Both streams authenticated with SASL EXTERNAL on verified
	// certificates, not with dialback.
	for _, want := range []string{
		"Sending[s2sout_unauthed]: <auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>",
		"connection partner.test->ejpartner.test is now authenticated for ejpartner.test",
		"connection ejpartner.test->partner.test is now authenticated for ejpartner.test",
	} {
		if !strings.Contains(pr.LogText(), want) {
			t.Errorf("prosody log lacks %q", want)
		}
	}
	for _, want := range []string{
		"Accepted inbound s2s EXTERNAL authentication partner.test -> ejpartner.test",
		"Outbound s2s connection started: ejpartner.test -> partner.test",
	} {
		if !strings.Contains(ej.LogText(), want) {
			t.Errorf("ejabberd log lacks %q", want)
		}
	}
}
