package conformance

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/palisade-im/palisade/conformance/federation"
)

// The federation tests run Palisade (palisade.test on 127.0.0.1:5269)
// against real Prosody and ejabberd servers, each on its own loopback
// address (conformance/federation). They share 127.0.0.1:5269 and the
// partners' s2s ports: none of them runs in parallel.

const fedTimeout = 60 * time.Second

// fed is one federation test's Palisade with alice@palisade.test.
type fed struct {
	pki   *federation.PKI
	cfg   FedConfig
	s     *Server
	alice federation.User
}

// partnerA and ejPartner are the partner entries of the brief's
// configuration.
func partnerA(pki *federation.PKI) FedPartner {
	return FedPartner{Name: "partner-a", Domains: []string{federation.PartnerDomain}, CAFile: pki.CA.File,
		Endpoints: []string{federation.S2SAddr(federation.PartnerDomain)}}
}

func ejPartner(pki *federation.PKI) FedPartner {
	return FedPartner{Name: "ejpartner", Domains: []string{federation.EjDomain}, CAFile: pki.CA.File,
		Endpoints: []string{federation.S2SAddr(federation.EjDomain)}}
}

// newFed starts Palisade with the given partners (both of the brief's
// when nil) and creates alice.
func newFed(t *testing.T, pki *federation.PKI, partners []FedPartner) *fed {
	t.Helper()
	RequireSlixmpp(t)
	if partners == nil {
		partners = []FedPartner{partnerA(pki), ejPartner(pki)}
	}
	f := &fed{pki: pki, cfg: FedConfig{Cert: pki.Certs[federation.PalisadeDomain], CAFile: pki.CA.File, Partners: partners}}
	f.s = StartFederationServer(t, f.cfg)
	f.alice = federation.User{JID: "alice@" + federation.PalisadeDomain, Password: accounts["alice"], Addr: f.s.C2S, CAFile: pki.CA.File}
	f.s.AddUser(t, f.alice.JID, f.alice.Password)
	return f
}

// prosodyPartner starts Prosody for partner.test (or stranger.test) with
// a certificate from the test CA and user paula (or sam).
func prosodyPartner(t *testing.T, pki *federation.PKI, domain string) (*federation.Prosody, federation.User) {
	t.Helper()
	user := map[string]string{federation.PartnerDomain: "paula", federation.StrangerDomain: "sam"}[domain]
	pr := federation.StartProsody(t, federation.ProsodyOptions{
		Domain: domain, Cert: pki.Certs[domain], CAFile: pki.CA.File, Hosts: pki.Hosts,
		Users: map[string]string{user: user + "-secret"},
	})
	return pr, federation.User{JID: user + "@" + domain, Password: user + "-secret", Addr: pr.C2S, CAFile: pki.CA.File}
}

// checkArchived checks that the journal (archive search, archive export)
// and alice's MAM archive hold the two messages exchanged with remote.
func (f *fed) checkArchived(t *testing.T, remote federation.User) {
	t.Helper()
	out1, out2 := "hello from "+f.alice.JID, "hello from "+remote.JID
	lines := searchLines(t, f.s, "--with", remote.JID, "--kind", "message")
	for _, want := range []string{
		regexp.QuoteMeta(f.alice.JID) + `/\S+ -> ` + regexp.QuoteMeta(remote.JID) + `\t.*\t` + regexp.QuoteMeta(out1) + `$`,
		regexp.QuoteMeta(remote.JID) + `/\S+ -> ` + regexp.QuoteMeta(f.alice.JID) + `\S*\t.*\t` + regexp.QuoteMeta(out2) + `$`,
	} {
		if len(matching(lines, want)) != 1 {
			t.Errorf("archive search --with %s: want one record /%s/, got:\n%s", remote.JID, want, strings.Join(lines, "\n"))
		}
	}
	bundle := filepath.Join(f.s.Dir, "export-"+strings.SplitN(remote.JID, "@", 2)[1])
	out, err := archiveCLI(t, f.s, "export", "--out", bundle, "--with", remote.JID, "--kind", "message")
	if err != nil {
		t.Fatalf("archive export --with %s: %v\n%s", remote.JID, err, out)
	}
	emls, _ := filepath.Glob(filepath.Join(bundle, "conversations", "*.eml"))
	var all strings.Builder
	for _, e := range emls {
		b, _ := os.ReadFile(e)
		all.Write(b)
	}
	for _, want := range []string{": " + out1 + "\r\n", ": " + out2 + "\r\n", remote.JID} {
		if !strings.Contains(all.String(), want) {
			t.Errorf("export --with %s (%s; %d conversation files) lacks %q:\n%s", remote.JID, strings.TrimSpace(out), len(emls), want, all.String())
		}
	}
	mam := federation.StartSlix(t, "slixmpp alice mam", f.alice, federation.SlixSteps{MAMWith: remote.JID}, fedTimeout).MustSucceed(t)
	for _, want := range []string{
		`MAM ` + regexp.QuoteMeta(f.alice.JID+" "+remote.JID+" "+out1),
		`MAM ` + regexp.QuoteMeta(remote.JID+" "+f.alice.JID+" "+out2),
		`MAM COUNT 2`,
	} {
		if !federation.HasLine(mam, want) {
			t.Errorf("alice's MAM query with %s: no line /%s/:\n%s", remote.JID, want, mam)
		}
	}
}

// exchangeOK runs federation.Exchange and checks both sides' lines.
func exchangeOK(t *testing.T, a, b federation.User) {
	t.Helper()
	outA, outB := federation.Exchange(t, a, b, fedTimeout)
	for _, c := range []struct {
		out      string
		me, them federation.User
	}{{outA, a, b}, {outB, b, a}} {
		me := strings.SplitN(c.me.JID, "@", 2)[0]
		for _, re := range []string{
			`PRESENCE ` + me + ` ` + regexp.QuoteMeta(c.them.JID) + ` available`,
			`BOTH ` + regexp.QuoteMeta(c.them.JID),
			`RECEIVED ` + me + ` ` + regexp.QuoteMeta(c.them.JID) + ` hello from ` + regexp.QuoteMeta(c.them.JID),
		} {
			if !federation.HasLine(c.out, re) {
				t.Errorf("%s: no line /%s/:\n%s", c.me.JID, re, c.out)
			}
		}
	}
}

// TestFederationProsody: alice@palisade.test and paula@partner.test
// (Prosody 0.12, certificate from the test CA, s2s_secure_auth)
// subscribe to each other, see each other's presence and exchange a
// message each way; the journal (archive search, archive export) and
// alice's MAM archive hold both messages.
func TestFederationProsody(t *testing.T) {
	pki := federation.NewPKI(t)
	_, paula := prosodyPartner(t, pki, federation.PartnerDomain)
	f := newFed(t, pki, nil)
	exchangeOK(t, f.alice, paula)
	f.checkArchived(t, paula)
}

// TestFederationEjabberd is TestFederationProsody with
// ejo@ejpartner.test on ejabberd 23.01.
func TestFederationEjabberd(t *testing.T) {
	pki := federation.NewPKI(t)
	ej := federation.StartEjabberd(t, federation.EjabberdOptions{
		Cert: pki.Certs[federation.EjDomain], CAFile: pki.CA.File, Hosts: pki.Hosts,
		Users: map[string]string{"ejo": "ejo-secret"},
	})
	ejo := federation.User{JID: "ejo@" + federation.EjDomain, Password: "ejo-secret", Addr: ej.C2S, CAFile: pki.CA.File}
	f := newFed(t, pki, nil)
	exchangeOK(t, f.alice, ejo)
	f.checkArchived(t, ejo)
}

// TestFederationOfflineCarbons: offline storage and carbons apply to
// federated traffic. paula@partner.test (Prosody) writes to alice while
// she is offline: alice gets it, with its delay stamp, at her next login.
// Then alice is online twice with carbons enabled: her second resource
// gets a sent carbon of what the first writes to paula and a received
// carbon of what paula writes to the first.
func TestFederationOfflineCarbons(t *testing.T) {
	pki := federation.NewPKI(t)
	_, paula := prosodyPartner(t, pki, federation.PartnerDomain)
	f := newFed(t, pki, []FedPartner{partnerA(pki)})

	federation.StartSlix(t, "slixmpp paula offline", paula, federation.SlixSteps{
		Send: []string{f.alice.JID + "=offline from paula"}, Linger: time.Second,
	}, fedTimeout).MustSucceed(t)
	// The journal holds it before alice is online: it crossed the stream.
	deadline := time.Now().Add(15 * time.Second)
	for len(matching(searchLines(t, f.s, "--with", paula.JID, "--kind", "message"), `offline from paula$`)) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("paula's message to offline alice is not in the journal within 15s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	out := federation.StartSlix(t, "slixmpp alice login", f.alice, federation.SlixSteps{
		Expect: []string{"offline from paula"},
	}, fedTimeout).MustSucceed(t)
	if !federation.HasLine(out, `RECEIVED alice `+regexp.QuoteMeta(paula.JID)+` offline from paula DELAY \S+`) {
		t.Errorf("alice's offline message from paula, with its delay stamp:\n%s", out)
	}

	r1, r2 := f.alice, f.alice
	r1.JID, r2.JID = f.alice.JID+"/r1", f.alice.JID+"/r2"
	pl := federation.StartSlix(t, "slixmpp paula", paula, federation.SlixSteps{
		Expect: []string{"carbon out"}, Linger: 3 * time.Second,
	}, fedTimeout)
	pl.WaitLine(t, `LOGIN OK .*`, fedTimeout)
	c2 := federation.StartSlix(t, "slixmpp alice/r2", r2, federation.SlixSteps{
		Carbons: true, ExpectCarbon: []string{"sent:carbon out", "received:carbon in"},
	}, fedTimeout)
	c2.WaitLine(t, `CARBONS ENABLED .*`, fedTimeout)
	c1 := federation.StartSlix(t, "slixmpp alice/r1", r1, federation.SlixSteps{
		Carbons: true, Send: []string{paula.JID + "=carbon out"}, Expect: []string{"carbon in"}, Linger: time.Second,
	}, fedTimeout)
	c1.WaitLine(t, `CARBONS ENABLED .*`, fedTimeout)
	federation.StartSlix(t, "slixmpp paula to r1", paula, federation.SlixSteps{
		Send: []string{r1.JID + "=carbon in"}, Linger: time.Second,
	}, fedTimeout).MustSucceed(t)
	pl.MustSucceed(t)
	c1.MustSucceed(t)
	out = c2.MustSucceed(t)
	for _, want := range []string{
		`CARBON sent alice/r2 ` + regexp.QuoteMeta(f.alice.JID+" "+paula.JID) + ` carbon out`,
		`CARBON received alice/r2 ` + regexp.QuoteMeta(paula.JID+" "+f.alice.JID) + ` carbon in`,
	} {
		if !federation.HasLine(out, want) {
			t.Errorf("alice/r2: no line /%s/:\n%s", want, out)
		}
	}
}

// refusedBothWays checks that alice's message to remote gets a message
// error (wantCond, or any when ""; the condition is returned) and that
// remote's message to alice never reaches her: the sender's server never
// authenticates a stream to palisade.test.
func refusedBothWays(t *testing.T, f *fed, pr *federation.Prosody, remote federation.User, wantCond string) string {
	t.Helper()
	if wantCond == "" {
		wantCond = "any"
	}
	out := federation.StartSlix(t, "slixmpp alice to "+remote.JID, f.alice, federation.SlixSteps{
		Send: []string{remote.JID + "=alice to " + remote.JID}, ExpectError: wantCond,
	}, fedTimeout).MustSucceed(t)
	cond := regexp.MustCompile(`(?m)^STANZA ERROR alice ` + regexp.QuoteMeta(remote.JID) + ` (\S+)`).FindStringSubmatch(out)
	// alice stays online while remote's user sends to her.
	ca := federation.StartSlix(t, "slixmpp alice listening", f.alice, federation.SlixSteps{
		Linger: 8 * time.Second, Absent: []string{remote.JID + " to alice"},
	}, fedTimeout)
	ca.WaitLine(t, `LOGIN OK .*`, fedTimeout)
	federation.StartSlix(t, "slixmpp "+remote.JID, remote, federation.SlixSteps{
		Send: []string{f.alice.JID + "=" + remote.JID + " to alice"}, Linger: 5 * time.Second,
	}, fedTimeout).MustSucceed(t)
	if o := ca.MustSucceed(t); !federation.HasLine(o, `ABSENT OK`) {
		t.Errorf("alice:\n%s", o)
	}
	if strings.Contains(pr.LogText(), "connection "+remote.JID[strings.Index(remote.JID, "@")+1:]+"->palisade.test is now authenticated") {
		t.Errorf("prosody %s authenticated a stream to palisade.test", pr.Domain)
	}
	if cond == nil {
		return ""
	}
	return cond[1]
}

// auditedRefusal checks that Palisade audited the refusal of domain's
// streams both ways, each with a reason matching why.
func auditedRefusal(t *testing.T, s *Server, domain, why string) {
	t.Helper()
	d := regexp.QuoteMeta(domain)
	for _, dir := range []string{"out", "in"} {
		s.WaitLog(t, `"logger":"audit".*"direction":"`+dir+`".*"peer":"`+d+`".*`+why, 5*time.Second)
	}
}

// TestFederationStranger: stranger.test (Prosody, certificate from the
// test CA, no partner entry) is refused both ways: alice's message to it
// gets policy-violation (a federation policy denial in the audit log),
// its user's message to alice never arrives: its stream gets the stream
// error policy-violation, an audit event naming the domain.
func TestFederationStranger(t *testing.T) {
	pki := federation.NewPKI(t)
	pr, sam := prosodyPartner(t, pki, federation.StrangerDomain)
	f := newFed(t, pki, nil)
	refusedBothWays(t, f, pr, sam, "policy-violation")
	// Alice's message: the federation policy's denial. The inbound
	// stream: an audit event of the refusal naming the domain.
	f.s.WaitLog(t, `"logger":"audit","msg":"policy_denied".*"policy":"federation".*"to":"sam@stranger.test"`, 5*time.Second)
	f.s.WaitLog(t, `"logger":"audit".*"direction":"in".*stranger\.test.*("policy":"federation"|"condition":"policy-violation")`, 5*time.Second)
	pr.WaitLog(t, "Session closed by remote with error: policy-violation", 5*time.Second)
}

// TestFederationWrongCA: partner.test's certificate is from the test CA,
// but its partner entry names another CA (or pins another key): refused
// both ways, alice's message bounced, paula's never delivered, and both
// refusals audited with the reason.
func TestFederationWrongCA(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(pki *federation.PKI, p *FedPartner)
		why  string // the audited reason
	}{
		{"wrong-ca", func(pki *federation.PKI, p *FedPartner) { p.CAFile = pki.WrongCA.File }, "does not verify"},
		{"spki-pin", func(pki *federation.PKI, p *FedPartner) {
			p.SPKIPins = []string{pki.Certs[federation.StrangerDomain].SPKIPin}
		}, "pinned"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pki := federation.NewPKI(t)
			pr, paula := prosodyPartner(t, pki, federation.PartnerDomain)
			p := partnerA(pki)
			tc.mod(pki, &p)
			f := newFed(t, pki, []FedPartner{p})
			cond := refusedBothWays(t, f, pr, paula, "")
			t.Logf("alice's message to paula: error %q", cond)
			if cond == "" {
				t.Errorf("alice's message to %s got no error", paula.JID)
			}
			auditedRefusal(t, f.s, federation.PartnerDomain, tc.why)
		})
	}
}

// TestFederationReload: partner-a is removed from the file and palisade
// gets SIGHUP: the live stream with partner.test is closed with the
// stream error policy-violation (Prosody logs it for both of its
// streams), Palisade audits both closings and the reload, and alice's
// next message to paula gets policy-violation.
func TestFederationReload(t *testing.T) {
	pki := federation.NewPKI(t)
	pr, paula := prosodyPartner(t, pki, federation.PartnerDomain)
	f := newFed(t, pki, nil)
	exchangeOK(t, f.alice, paula)
	before := len(pr.LogText())
	f.s.Rewrite(t, FedConfig{Cert: f.cfg.Cert, CAFile: f.cfg.CAFile, Partners: []FedPartner{ejPartner(pki)}})
	// Both of Prosody's streams with palisade.test end with the stream
	// error policy-violation.
	want := []string{
		"Incoming s2s stream palisade.test->partner.test closed: policy-violation",
		"Outgoing s2s stream partner.test->palisade.test closed: policy-violation",
	}
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(pr.LogText()[before:], want[0]) || !strings.Contains(pr.LogText()[before:], want[1]) {
		if time.Now().After(deadline) {
			t.Fatalf("prosody did not log %q within 15s of SIGHUP:\n%s", want, tail(pr.LogText()[before:], 4000))
		}
		select {
		case <-f.s.done:
			t.Fatalf("palisade exited on SIGHUP: %v", f.s.cmd.ProcessState)
		case <-time.After(100 * time.Millisecond):
		}
	}
	// Palisade audits the closing of each, and the reload.
	f.s.WaitLog(t, `"logger":"audit".*"direction":"out".*"peer":"partner\.test".*"condition":"policy-violation"`, 5*time.Second)
	f.s.WaitLog(t, `"logger":"audit".*"direction":"in".*"partner\.test".*"condition":"policy-violation"`, 5*time.Second)
	f.s.WaitLog(t, `"logger":"audit","msg":"federation_reloaded".*"partners":\["ejpartner"\]`, 5*time.Second)
	out := federation.StartSlix(t, "slixmpp alice after reload", f.alice, federation.SlixSteps{
		Send: []string{paula.JID + "=after reload"}, ExpectError: "policy-violation",
	}, fedTimeout).MustSucceed(t)
	t.Logf("after reload:\n%s", out)
}

// TestFederationDialback: Prosody with a self-signed certificate (not
// from the test CA, s2s_secure_auth off) federates by XEP-0220 dialback
// when partner-a's entry allows it (messages both ways), and is refused
// both ways when it does not (audited, the reason naming dialback).
func TestFederationDialback(t *testing.T) {
	for _, allow := range []bool{true, false} {
		t.Run(fmt.Sprintf("dialback=%v", allow), func(t *testing.T) {
			pki := federation.NewPKI(t)
			self, err := federation.SelfSigned(pki.Dir, federation.PartnerDomain)
			if err != nil {
				t.Fatal(err)
			}
			pr := federation.StartProsody(t, federation.ProsodyOptions{
				Domain: federation.PartnerDomain, Cert: self, CAFile: pki.CA.File, Hosts: pki.Hosts, DialbackOnly: true,
				Users: map[string]string{"paula": "paula-secret"},
			})
			paula := federation.User{JID: "paula@" + federation.PartnerDomain, Password: "paula-secret", Addr: pr.C2S, CAFile: self.CertFile}
			p := partnerA(pki)
			p.Dialback = allow
			f := newFed(t, pki, []FedPartner{p})
			if allow {
				exchangeOK(t, f.alice, paula)
				if !strings.Contains(pr.LogText(), "db:result") {
					t.Errorf("prosody's log shows no dialback (db:result)")
				}
				return
			}
			cond := refusedBothWays(t, f, pr, paula, "")
			if cond == "" {
				t.Errorf("alice's message to %s got no error", paula.JID)
			}
			t.Logf("alice's message to paula without dialback: error %q", cond)
			auditedRefusal(t, f.s, federation.PartnerDomain, "dialback")
		})
	}
}

// TestFederationPiggyback: a raw s2s client with partner.test's
// certificate authenticates with SASL EXTERNAL as partner.test, then sends
// a message from x@stranger.test: the stream is closed with the stream
// error invalid-from, and alice gets nothing.
func TestFederationPiggyback(t *testing.T) {
	pki := federation.NewPKI(t)
	f := newFed(t, pki, nil)
	ca := federation.StartSlix(t, "slixmpp alice listening", f.alice, federation.SlixSteps{
		Linger: 6 * time.Second, Absent: []string{"piggy-backed"},
	}, fedTimeout)
	ca.WaitLine(t, `LOGIN OK .*`, fedTimeout)

	rs := rawS2SExternal(t, federation.S2SAddr(federation.PalisadeDomain), pki.Certs[federation.PartnerDomain], pki.CA.File, federation.PalisadeDomain)
	rs.send(`<message xmlns='jabber:server' from='x@stranger.test' to='alice@palisade.test' type='chat' id='p1'><body>piggy-backed</body></message>`)
	for {
		name := rs.next()
		if name == "" {
			t.Fatalf("stream ended without a stream error; last: %s", rs.last)
		}
		if name == "error" {
			if !strings.Contains(rs.last, "invalid-from") {
				t.Fatalf("stream error is not invalid-from: %s", rs.last)
			}
			break
		}
	}
	t.Logf("stream error: %s", rs.last)
	if o := ca.MustSucceed(t); !federation.HasLine(o, `ABSENT OK`) {
		t.Errorf("alice:\n%s", o)
	}
}

// rawS2SExternal opens an s2s stream to addr as cert's domain:
// STARTTLS (verifying the receiving server as domain to against caFile,
// presenting cert), SASL EXTERNAL, and the restarted stream's features.
func rawS2SExternal(t *testing.T, addr string, cert *federation.Cert, caFile, to string) *rawS2S {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(cert.CertFile, cert.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	roots.AppendCertsFromPEM(caPEM)
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	rs := newRawS2S(t, conn, cert.Domain, to)
	rs.open()
	rs.expect("starttls")
	rs.send(`<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`)
	rs.expect("proceed")
	tc := tls.Client(conn, &tls.Config{ServerName: to, RootCAs: roots, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS with %s: %v", to, err)
	}
	rs = rs.restart(tc)
	rs.open()
	rs.expect("mechanisms")
	if !strings.Contains(rs.last, "EXTERNAL") {
		t.Fatalf("%s offers no SASL EXTERNAL after TLS with %s's certificate: %s", to, cert.Domain, rs.last)
	}
	rs.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>` + base64.StdEncoding.EncodeToString([]byte(cert.Domain)) + `</auth>`)
	rs.expect("success")
	rs = rs.restart(tc)
	rs.open()
	rs.expect("features")
	return rs
}

// rawS2S is the initiating side of an s2s stream from one domain to
// another, reading top-level elements.
type rawS2S struct {
	t        *testing.T
	from, to string
	w        io.Writer
	dec      *xml.Decoder
	last     string // the last element read, as XML
}

func newRawS2S(t *testing.T, c io.ReadWriter, from, to string) *rawS2S {
	return &rawS2S{t: t, from: from, to: to, w: c, dec: xml.NewDecoder(bufio.NewReader(c))}
}

// restart is a new stream over c (after STARTTLS or SASL).
func (r *rawS2S) restart(c io.ReadWriter) *rawS2S { return newRawS2S(r.t, c, r.from, r.to) }

func (r *rawS2S) send(s string) {
	r.t.Helper()
	if _, err := io.WriteString(r.w, s); err != nil {
		r.t.Fatalf("s2s write: %v", err)
	}
}

// open sends a stream header and reads the answer's.
func (r *rawS2S) open() {
	r.t.Helper()
	r.send(`<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' from='` + r.from + `' to='` + r.to + `' version='1.0'>`)
	for {
		tok, err := r.dec.Token()
		if err != nil {
			r.t.Fatalf("s2s stream header: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "stream" {
			return
		}
	}
}

// next reads the next top-level element and returns its local name ("" at
// the end of the stream).
func (r *rawS2S) next() string {
	r.t.Helper()
	for {
		tok, err := r.dec.Token()
		if err != nil {
			return ""
		}
		switch se := tok.(type) {
		case xml.StartElement:
			var x struct {
				Inner []byte `xml:",innerxml"`
			}
			if err := r.dec.DecodeElement(&x, &se); err != nil {
				return ""
			}
			r.last = "<" + se.Name.Local + ">" + string(x.Inner)
			return se.Name.Local
		case xml.EndElement:
			return ""
		}
	}
}

// expect reads elements until one named name (features count as holding
// their children: "starttls" and "mechanisms" match a features element
// that contains them).
func (r *rawS2S) expect(name string) {
	r.t.Helper()
	for i := 0; i < 5; i++ {
		got := r.next()
		if got == "" {
			r.t.Fatalf("s2s: stream ended waiting for %s; last: %s", name, r.last)
		}
		if got == name || (got == "features" && strings.Contains(r.last, "<"+name)) {
			return
		}
		if got == "error" || got == "failure" {
			r.t.Fatalf("s2s: %s while waiting for %s: %s", got, name, r.last)
		}
	}
	r.t.Fatalf("s2s: no %s; last: %s", name, r.last)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
