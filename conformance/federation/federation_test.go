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
	// Both streams authenticated on verified certificates: ejabberd logs
	// the EXTERNAL it accepted; Prosody's own debug line of the <auth/> it
	// sent is not always written before the test reads the log.
	for _, want := range []string{
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

// TestFederationPeersDialback proves the dialback recipe without
// Palisade: partner.test (Prosody, s2s_secure_auth off, a self-signed
// certificate no one can verify) federates with stranger.test (a second
// Prosody on its own address, certificate from the test CA, secure auth
// off too) by XEP-0220 dialback, messages both ways.
func TestFederationPeersDialback(t *testing.T) {
	pki := NewPKI(t)
	self, err := SelfSigned(pki.Dir, PartnerDomain)
	if err != nil {
		t.Fatal(err)
	}
	pr := StartProsody(t, ProsodyOptions{Domain: PartnerDomain, Cert: self, CAFile: pki.CA.File, Hosts: pki.Hosts,
		DialbackOnly: true, Users: map[string]string{"paula": "paula-pw"}})
	st := StartProsody(t, ProsodyOptions{Domain: StrangerDomain, Cert: pki.Certs[StrangerDomain], CAFile: pki.CA.File, Hosts: pki.Hosts,
		DialbackOnly: true, Users: map[string]string{"sam": "sam-pw"}})
	a := User{JID: "paula@" + PartnerDomain, Password: "paula-pw", Addr: pr.C2S, CAFile: self.CertFile}
	b := User{JID: "sam@" + StrangerDomain, Password: "sam-pw", Addr: st.C2S, CAFile: pki.CA.File}
	outA, outB := Exchange(t, a, b, 60*time.Second)
	for _, c := range []struct{ out, me, other string }{{outA, "paula", b.JID}, {outB, "sam", a.JID}} {
		if re := `RECEIVED ` + c.me + ` ` + c.other + ` hello from ` + c.other; !HasLine(c.out, re) {
			t.Errorf("%s: no line /%s/", c.me, re)
		}
	}
	// stranger.test could not verify partner.test's certificate and
	// verified its stream by dialback instead.
	log := st.LogText()
	if !strings.Contains(log, "certificate chain validation result: invalid") {
		t.Errorf("stranger.test's log has no invalid certificate chain")
	}
	valid := false
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "Sending[s2sin]: <db:result ") && strings.Contains(l, "to='partner.test'") && strings.Contains(l, "type='valid'") {
			valid = true
		}
	}
	if !valid {
		t.Errorf("stranger.test never sent partner.test <db:result type='valid'>")
	}
}
