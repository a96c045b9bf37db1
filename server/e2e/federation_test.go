package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"encoding/xml"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/palisade-im/palisade/certs"
	"github.com/palisade-im/palisade/s2s"
	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/stanza"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
)

// testCA issues certificates for the federation tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string // PEM
}

func newTestCA(t testing.TB, dir, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{cert: cert, key: key, file: filepath.Join(dir, name+".pem")}
	if err := os.WriteFile(ca.file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return ca
}

// issue writes a certificate for domain (serverAuth and clientAuth) and
// its key; it returns the files and the tls.Certificate.
func (ca *testCA) issue(t testing.TB, dir, domain string) (certFile, keyFile string, c *tls.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: domain}, DNSNames: []string{domain},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, domain+".pem"), filepath.Join(dir, domain+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, &pair
}

// fakePeer is a partner server built from the s2s package itself, with a
// Handler that keeps what it receives.
type fakePeer struct {
	domain string
	srv    *s2s.Server
	addr   string
	got    chan *stanza.Stanza
	mu     sync.Mutex
	bounce []*stanza.Error
}

func (p *fakePeer) Receive(_ context.Context, st *stanza.Stanza) func() {
	return func() { p.got <- st }
}

func (p *fakePeer) Bounce(_ context.Context, st *stanza.Stanza, e *stanza.Error) {
	p.mu.Lock()
	p.bounce = append(p.bounce, e)
	p.mu.Unlock()
}

// startPeer runs a fake partner server for domain that federates with
// palisade (domain "localhost") at palisadeS2S.
func startPeer(t *testing.T, dir string, ca *testCA, domain, palisadeS2S string, partner config.Partner) *fakePeer {
	t.Helper()
	return startPeerTLS(t, dir, ca, domain, palisadeS2S, partner, false)
}

// startPeerTLS is startPeer whose listener speaks direct TLS (XEP-0368)
// when directTLS.
func startPeerTLS(t *testing.T, dir string, ca *testCA, domain, palisadeS2S string, partner config.Partner, directTLS bool) *fakePeer {
	t.Helper()
	certFile, keyFile, _ := ca.issue(t, dir, domain)
	kp, err := certs.LoadOrCreate(filepath.Join(dir, domain+"-data"), []string{domain}, certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &fakePeer{domain: domain, addr: ln.Addr().String(), got: make(chan *stanza.Stanza, 100)}
	partner.Domains = []string{"localhost"}
	partner.Endpoints = []string{palisadeS2S}
	fed := config.Default().Federation
	fed.Partners = []config.Partner{partner}
	srv, err := s2s.New(s2s.Config{
		Domains: []string{domain}, TLS: certs.ServerConfig(kp), Certificate: kp.Certificate,
		MaxStanza: 1 << 16, DialbackSecret: []byte("peer-secret-" + domain), Federation: fed,
	}, p, zaptest.NewLogger(t).Named(domain), zaptest.NewLogger(t).Named(domain+".audit"))
	if err != nil {
		t.Fatal(err)
	}
	p.srv = srv
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = srv.ServeTCP(ctx, ln, directTLS); close(done) }()
	t.Cleanup(func() {
		sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
		defer c()
		srv.Shutdown(sctx)
		cancel()
		<-done
	})
	return p
}

// send makes the peer send a stanza to palisade.
func (p *fakePeer) send(t *testing.T, raw string) {
	t.Helper()
	el, err := element.Parse([]byte(raw), stanza.NSClient)
	if err != nil {
		t.Fatal(err)
	}
	st, err := stanza.Parse(el)
	if err != nil {
		t.Fatal(err)
	}
	p.srv.Send(context.Background(), st)
}

func (p *fakePeer) expect(t *testing.T) *stanza.Stanza {
	t.Helper()
	select {
	case st := <-p.got:
		return st
	case <-time.After(short):
		t.Fatalf("%s received nothing", p.domain)
		return nil
	}
}

// federationEnv starts palisade (localhost) with a certificate from ca and
// the given partners (their endpoints filled in by the caller).
func federationEnv(t *testing.T, dir string, ca *testCA, s2sAddr string, partners ...config.Partner) *env {
	t.Helper()
	certFile, keyFile, _ := ca.issue(t, dir, "localhost")
	return newEnv(t, func(c *config.Config) {
		c.TLS.CertFile, c.TLS.KeyFile = certFile, keyFile
		c.Listen.S2S = s2sAddr
		c.Federation.Partners = partners
		c.Federation.RetryMin = config.Duration(100 * time.Millisecond)
	})
}

// TestFederationBothWays: a partner authenticated by its certificate
// (SASL EXTERNAL both ways) exchanges messages with a local user in both
// directions; the partner's stanzas reach alice with their from intact.
func TestFederationBothWays(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir, "test-ca")
	s2sAddr := freeAddr(t)
	// The peer is started first so that its address can be pinned.
	peer := startPeer(t, dir, ca, "partner.test", s2sAddr, config.Partner{Name: "palisade", CAFile: ca.file})
	e := federationEnv(t, dir, ca, s2sAddr, config.Partner{Name: "partner-a", Domains: []string{"partner.test"},
		CAFile: ca.file, Endpoints: []string{peer.addr}})
	alice := login(t, e, modeStartTLS, "alice", "one")

	// Outbound: alice -> bob@partner.test.
	alice.send("<message to='bob@partner.test' id='out1' type='chat'><body>hello partner</body></message>")
	got := peer.expect(t)
	if got.From.String() != "alice@localhost/one" || got.To.String() != "bob@partner.test" || got.Body() != "hello partner" {
		t.Fatalf("peer got %s", got.El)
	}
	if got.Peer == nil || got.Peer.Auth != s2s.AuthExternal {
		t.Fatalf("peer's stream auth = %+v, want %s", got.Peer, s2s.AuthExternal)
	}

	// Inbound: bob@partner.test -> alice.
	peer.send(t, "<message from='bob@partner.test/desk' to='alice@localhost/one' id='in1' type='chat'><body>hello alice</body></message>")
	m := alice.expect(nsClient, "message")
	if m.A("from") != "bob@partner.test/desk" || m.Child(nsClient, "body").Text != "hello alice" {
		t.Fatalf("alice got %s", m)
	}

	// A second message goes over the established stream.
	alice.send("<message to='bob@partner.test' id='out2' type='chat'><body>again</body></message>")
	if got := peer.expect(t); got.Body() != "again" {
		t.Fatalf("peer got %s", got.El)
	}

	// All crossed the journal, with the peer and its stream's method (the
	// first outgoing one was recorded before its stream was up).
	rows := journalRows(t, e)
	if r := findRow(rows, "hello partner"); r == nil || !strings.Contains(r.rawData, `"peer":"partner.test","auth":""`) {
		t.Errorf("first outgoing record: %+v", r)
	}
	for _, body := range []string{"again", "hello alice"} {
		r := findRow(rows, body)
		if r == nil {
			t.Fatalf("no journal record holds %q", body)
		}
		if !strings.Contains(r.rawData, `"peer":"partner.test","auth":"sasl-external"`) {
			t.Errorf("record of %q: %s, want peer partner.test and auth sasl-external", body, r.rawData)
		}
	}
	if r := findRow(rows, "hello partner"); r.dir != "outbound" {
		t.Errorf("outgoing record direction %q", r.dir)
	}
	if r := findRow(rows, "hello alice"); r.dir != "inbound" {
		t.Errorf("incoming record direction %q", r.dir)
	}

	// The live streams, as palisade federation status shows them (the
	// count follows the write that the peer may read first).
	waitFor(t, func() bool { st := e.srv.FederationStatus(); return len(st) == 2 && st[0].StanzasOut == 2 })
	st := e.srv.FederationStatus()
	if len(st) != 2 || st[0].Direction != "out" || st[1].Direction != "in" || st[0].Partner != "partner-a" ||
		st[0].Auth != s2s.AuthExternal || st[0].StanzasOut != 2 || st[1].StanzasIn != 1 || st[0].CertNotAfter.IsZero() {
		t.Errorf("status: %+v", st)
	}
}

// TestFederationNotPartner: no partner entry, no federation. A user's
// stanza to another domain gets policy-violation naming it (audited as
// policy federation); an inbound stream from a domain that is not a
// partner is refused with the stream error policy-violation before any
// stanza, and audited with the domain.
func TestFederationNotPartner(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir, "test-ca")
	s2sAddr := freeAddr(t)
	certFile, keyFile, _ := ca.issue(t, dir, "localhost")
	e, logs := newEnvObserved(t, func(c *config.Config) {
		c.TLS.CertFile, c.TLS.KeyFile = certFile, keyFile
		c.Listen.S2S = s2sAddr
		c.Federation.Partners = []config.Partner{{Name: "partner-a", Domains: []string{"partner.test"}, CAFile: ca.file, Endpoints: []string{"127.0.0.1:1"}}}
	})
	alice := login(t, e, modeStartTLS, "alice", "one")
	alice.send("<message to='eve@stranger.test' id='s1' type='chat'><body>psst</body></message>")
	m := alice.expect(nsClient, "message")
	if m.A("type") != "error" || m.Child(nsClient, "error").Child(nsStanzas, "policy-violation") == nil ||
		!strings.Contains(m.Child(nsClient, "error").Child(nsStanzas, "text").Text, "stranger.test is not a federation partner") {
		t.Fatalf("alice got %s", m)
	}
	if n := logs.FilterMessage("policy_denied").FilterField(zap.String("policy", "federation")).Len(); n != 1 {
		t.Errorf("%d policy_denied events of policy federation, want 1", n)
	}
	for _, r := range journalRows(t, e) {
		if r.to == "eve@stranger.test" {
			t.Errorf("a refused stanza was journaled: %+v", r)
		}
	}

	// stranger.test's server trusts us and tries; palisade refuses it.
	peer := startPeer(t, dir, ca, "stranger.test", s2sAddr, config.Partner{Name: "palisade", CAFile: ca.file})
	peer.send(t, "<message from='eve@stranger.test' to='alice@localhost/one' id='s2' type='chat'><body>hi</body></message>")
	waitFor(t, func() bool { return peer.bounces() > 0 })
	if e := peer.lastBounce(); e.Condition != stanza.RemoteServerNotFound || !strings.Contains(e.Text, "policy-violation") {
		t.Errorf("stranger's bounce: %+v", e)
	}
	alice.nothing(200 * time.Millisecond)
	refused := logs.FilterMessage("s2s_stream_refused").FilterField(zap.String("peer", "stranger.test"))
	if refused.Len() == 0 {
		t.Fatal("no s2s_stream_refused audit event for stranger.test")
	}
	if c := refused.All()[0].ContextMap()["condition"]; c != "policy-violation" {
		t.Errorf("refused with %v", c)
	}
}

// TestFederationCertificateRules: a partner whose certificate is from
// another CA, or whose key is not pinned, is refused in both directions;
// the right pin is accepted.
func TestFederationCertificateRules(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir, "test-ca")
	other := newTestCA(t, dir, "other-ca")
	cases := []struct {
		name    string
		partner func(peerPin string) config.Partner
		ok      bool
		reason  string
	}{
		{"wrong CA", func(string) config.Partner { return config.Partner{CAFile: other.file} }, false, "does not verify"},
		{"pin mismatch", func(string) config.Partner {
			return config.Partner{CAFile: ca.file, SPKIPins: []string{"sha256/" + strings.Repeat("A", 43) + "="}}
		}, false, "pinned"},
		{"pinned", func(pin string) config.Partner { return config.Partner{CAFile: ca.file, SPKIPins: []string{pin}} }, true, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s2sAddr := freeAddr(t)
			peer := startPeer(t, dir, ca, "partner.test", s2sAddr, config.Partner{Name: "palisade", CAFile: ca.file})
			pin := peerPin(t, filepath.Join(dir, "partner.test.pem"))
			p := c.partner(pin)
			p.Name, p.Domains, p.Endpoints = "partner-a", []string{"partner.test"}, []string{peer.addr}
			certFile, keyFile, _ := ca.issue(t, dir, "localhost")
			e, logs := newEnvObserved(t, func(cfg *config.Config) {
				cfg.TLS.CertFile, cfg.TLS.KeyFile = certFile, keyFile
				cfg.Listen.S2S = s2sAddr
				cfg.Federation.Partners = []config.Partner{p}
			})
			alice := login(t, e, modeStartTLS, "alice", "one")
			alice.send("<message to='bob@partner.test' id='c1' type='chat'><body>out</body></message>")
			peer.send(t, "<message from='bob@partner.test' to='alice@localhost/one' id='c2' type='chat'><body>in</body></message>")
			if c.ok {
				if got := peer.expect(t); got.Body() != "out" {
					t.Fatalf("peer got %s", got.El)
				}
				if m := alice.expect(nsClient, "message"); m.A("id") != "c2" {
					t.Fatalf("alice got %s", m)
				}
				return
			}
			m := alice.expect(nsClient, "message")
			if m.A("id") != "c1" || m.A("type") != "error" || m.Child(nsClient, "error").Child(nsStanzas, "remote-server-not-found") == nil ||
				!strings.Contains(m.Child(nsClient, "error").Child(nsStanzas, "text").Text, c.reason) {
				t.Fatalf("alice got %s, want remote-server-not-found saying %q", m, c.reason)
			}
			waitFor(t, func() bool { return peer.bounces() > 0 })
			alice.nothing(200 * time.Millisecond)
			if n := logs.FilterMessage("s2s_stream_refused").FilterField(zap.String("peer", "partner.test")).Len(); n == 0 {
				t.Error("no s2s_stream_refused event for the inbound stream")
			}
		})
	}
}

// TestFederationDialback: a partner whose certificate does not verify
// (a CA we do not trust) federates by XEP-0220 dialback, under TLS, when
// its entry allows it; without that permission the same peer is refused.
func TestFederationDialback(t *testing.T) {
	for _, allowed := range []bool{true, false} {
		t.Run(map[bool]string{true: "allowed", false: "not allowed"}[allowed], func(t *testing.T) {
			dir := t.TempDir()
			ca := newTestCA(t, dir, "test-ca")
			untrusted := newTestCA(t, dir, "untrusted-ca")
			s2sAddr := freeAddr(t)
			// The peer's certificate is from a CA palisade does not
			// trust; the peer itself trusts nobody and allows dialback.
			peer := startPeer(t, dir, untrusted, "partner.test", s2sAddr, config.Partner{Name: "palisade", CAFile: untrusted.file, Dialback: true})
			e := federationEnv(t, dir, ca, s2sAddr, config.Partner{Name: "partner-a", Domains: []string{"partner.test"},
				CAFile: ca.file, Endpoints: []string{peer.addr}, Dialback: allowed})
			alice := login(t, e, modeStartTLS, "alice", "one")
			alice.send("<message to='bob@partner.test' id='d1' type='chat'><body>out</body></message>")
			peer.send(t, "<message from='bob@partner.test' to='alice@localhost/one' id='d2' type='chat'><body>in</body></message>")
			if !allowed {
				m := alice.expect(nsClient, "message")
				if m.A("id") != "d1" || m.Child(nsClient, "error").Child(nsStanzas, "remote-server-not-found") == nil {
					t.Fatalf("alice got %s", m)
				}
				waitFor(t, func() bool { return peer.bounces() > 0 })
				alice.nothing(200 * time.Millisecond)
				return
			}
			if got := peer.expect(t); got.Body() != "out" || got.Peer.Auth != s2s.AuthDialback {
				t.Fatalf("peer got %s over %+v", got.El, got.Peer)
			}
			if m := alice.expect(nsClient, "message"); m.A("id") != "d2" {
				t.Fatalf("alice got %s", m)
			}
			r := findRow(journalRows(t, e), ">in<")
			if r == nil || !strings.Contains(r.rawData, `"auth":"dialback"`) {
				t.Errorf("journal record of the inbound message: %+v", r)
			}
		})
	}
}

// TestFederationPiggyback: a stream that authenticated as partner.test
// may not carry stanzas from another domain: the stream is closed with
// invalid-from and the stanza is not delivered.
func TestFederationPiggyback(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir, "test-ca")
	s2sAddr := freeAddr(t)
	_, _, peerCert := ca.issue(t, dir, "partner.test")
	e, logs := func() (*env, *observer.ObservedLogs) {
		certFile, keyFile, _ := ca.issue(t, dir, "localhost")
		return newEnvObserved(t, func(c *config.Config) {
			c.TLS.CertFile, c.TLS.KeyFile = certFile, keyFile
			c.Listen.S2S = s2sAddr
			c.Federation.Partners = []config.Partner{
				{Name: "partner-a", Domains: []string{"partner.test"}, CAFile: ca.file, Endpoints: []string{"127.0.0.1:1"}},
				{Name: "partner-b", Domains: []string{"other.test"}, CAFile: ca.file, Endpoints: []string{"127.0.0.1:1"}},
			}
		})
	}()
	alice := login(t, e, modeStartTLS, "alice", "one")
	raw := rawS2S(t, s2sAddr, "partner.test", ca, peerCert)
	raw.send("<message from='bob@partner.test' to='alice@localhost/one' id='ok' type='chat'><body>fine</body></message>")
	if m := alice.expect(nsClient, "message"); m.A("id") != "ok" {
		t.Fatalf("alice got %s", m)
	}
	// other.test is a partner too, but this stream did not authenticate it.
	raw.send("<message from='mallory@other.test' to='alice@localhost/one' id='bad' type='chat'><body>forged</body></message>")
	raw.expectStreamError("invalid-from")
	alice.nothing(200 * time.Millisecond)
	if logs.FilterMessage("s2s_invalid_from").Len() != 1 {
		t.Error("no s2s_invalid_from audit event")
	}
}

// TestFederationStreamRules: RFC 6120 on the inbound side, raw: a stream
// to a domain not served gets host-unknown, one without TLS may send
// nothing but <starttls/>, and stanzas before authentication are refused.
func TestFederationStreamRules(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir, "test-ca")
	s2sAddr := freeAddr(t)
	_ = federationEnv(t, dir, ca, s2sAddr, config.Partner{Name: "partner-a", Domains: []string{"partner.test"}, CAFile: ca.file, Endpoints: []string{"127.0.0.1:1"}})
	open := func(from, to string) *client {
		c := dialRaw(t, s2sAddr)
		c.send("<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' version='1.0' from='%s' to='%s'>", from, to)
		return c
	}
	c := open("partner.test", "elsewhere.test")
	c.expectS2SHeader()
	c.expectStreamError("host-unknown")
	c = open("partner.test", "localhost")
	c.expectS2SHeader()
	f := c.expect(nsStream, "features")
	if f.Child(nsTLS, "starttls") == nil || f.Child(nsTLS, "starttls").Child(nsTLS, "required") == nil {
		t.Fatalf("features %s, want starttls required", f)
	}
	c.send("<message from='bob@partner.test' to='alice@localhost'><body>plain</body></message>")
	c.expectStreamError("policy-violation")
	c = open("stranger.test", "localhost")
	c.expectS2SHeader()
	c.expectStreamError("policy-violation")
}

func (p *fakePeer) bounces() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.bounce)
}

func (p *fakePeer) lastBounce() *stanza.Error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.bounce[len(p.bounce)-1]
}

// peerPin is the spki_pins form of the key in a PEM certificate file.
func peerPin(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return s2s.SPKIPin(c)
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(short)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// dialRaw connects to a server-to-server listener without TLS.
func dialRaw(t *testing.T, addr string) *client {
	t.Helper()
	raw, err := net.DialTimeout("tcp", addr, short)
	if err != nil {
		t.Fatal(err)
	}
	c := &client{t: t, mode: modeStartTLS, raw: raw, conn: raw, user: "raw-s2s"}
	c.dec = xml.NewDecoder(raw)
	t.Cleanup(c.close)
	return c
}

// expectS2SHeader reads the server's stream header.
func (c *client) expectS2SHeader() {
	c.t.Helper()
	if h := c.next(); !h.Is(nsStream, "stream") {
		c.t.Fatalf("got %s, want a stream header", h)
	}
}

// rawS2S is a raw partner stream to palisade's s2s listener, negotiated
// as a real server would: STARTTLS with cert, SASL EXTERNAL as from.
func rawS2S(t *testing.T, addr, from string, ca *testCA, cert *tls.Certificate) *client {
	t.Helper()
	c := dialRaw(t, addr)
	header := func() {
		c.send("<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' version='1.0' from='%s' to='localhost'>", from)
		c.expectS2SHeader()
	}
	header()
	c.expect(nsStream, "features")
	c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
	c.expect(nsTLS, "proceed")
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	tc := tls.Client(c.raw, &tls.Config{RootCAs: pool, ServerName: "localhost", Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS12})
	_ = tc.SetDeadline(time.Now().Add(short))
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	_ = tc.SetDeadline(time.Time{})
	c.conn, c.dec = tc, xml.NewDecoder(tc)
	header()
	f := c.expect(nsStream, "features")
	if m := mechanisms(f); len(m) != 1 || m[0] != "EXTERNAL" {
		t.Fatalf("features under TLS: %s, want EXTERNAL", f)
	}
	c.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>%s</auth>", base64.StdEncoding.EncodeToString([]byte(from)))
	c.expect(nsSASL, "success")
	c.dec = xml.NewDecoder(tc)
	header()
	c.expect(nsStream, "features")
	return c
}

// expectMatch waits for the peer to receive a stanza matching ok, skipping
// others (presence probes, roster-driven traffic).
func (p *fakePeer) expectMatch(t *testing.T, what string, ok func(*stanza.Stanza) bool) *stanza.Stanza {
	t.Helper()
	deadline := time.After(short)
	for {
		select {
		case st := <-p.got:
			if ok(st) {
				return st
			}
		case <-deadline:
			t.Fatalf("%s did not receive %s", p.domain, what)
			return nil
		}
	}
}

// TestFederationMAM: both directions of a conversation with a partner
// are in the local user's MAM archive (XEP-0313); roster, offline storage
// and carbons across the federation are covered with the real modules in
// conformance/federation_test.go.
func TestFederationMAM(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir, "test-ca")
	s2sAddr := freeAddr(t)
	peer := startPeer(t, dir, ca, "partner.test", s2sAddr, config.Partner{Name: "palisade", CAFile: ca.file})
	e := federationEnv(t, dir, ca, s2sAddr, config.Partner{Name: "partner-a", Domains: []string{"partner.test"},
		CAFile: ca.file, Endpoints: []string{peer.addr}})
	alice := login(t, e, modeStartTLS, "alice", "one")
	peer.send(t, "<message from='bob@partner.test/desk' to='alice@localhost/one' id='m1' type='chat'><body>question</body></message>")
	alice.expect(nsClient, "message")
	alice.send("<message to='bob@partner.test' id='m2' type='chat'><body>answer</body></message>")
	peer.expectMatch(t, "alice's answer", func(st *stanza.Stanza) bool { return st.ID == "m2" })

	alice.send("<iq type='set' id='mam'><query xmlns='urn:xmpp:mam:2' queryid='q'/></iq>")
	var bodies []string
	for {
		n := alice.next()
		if n.Is(nsClient, "iq") && n.A("id") == "mam" {
			break
		}
		if r := n.Child("urn:xmpp:mam:2", "result"); r != nil {
			bodies = append(bodies, fmt.Sprint(r))
		}
	}
	all := strings.Join(bodies, "\n")
	if len(bodies) != 2 || !strings.Contains(all, "question") || !strings.Contains(all, "answer") {
		t.Errorf("MAM results %q, want both directions", all)
	}
}

// TestFederationReload: a partner removed by a reload has its live
// streams closed with policy-violation, and is refused from then on.
func TestFederationReload(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir, "test-ca")
	s2sAddr := freeAddr(t)
	peer := startPeer(t, dir, ca, "partner.test", s2sAddr, config.Partner{Name: "palisade", CAFile: ca.file})
	partner := config.Partner{Name: "partner-a", Domains: []string{"partner.test"}, CAFile: ca.file, Endpoints: []string{peer.addr}}
	e := federationEnv(t, dir, ca, s2sAddr, partner)
	alice := login(t, e, modeStartTLS, "alice", "one")
	alice.send("<message to='bob@partner.test' id='r1' type='chat'><body>before</body></message>")
	peer.expect(t)
	peer.send(t, "<message from='bob@partner.test' to='alice@localhost/one' id='r2' type='chat'><body>hi</body></message>")
	alice.expect(nsClient, "message")
	if n := len(e.srv.FederationStatus()); n != 2 {
		t.Fatalf("%d streams before the reload, want 2", n)
	}

	f := e.cfg.Federation
	f.Partners = nil
	if err := e.srv.ReloadFederation(context.Background(), f); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return len(e.srv.FederationStatus()) == 0 })
	alice.send("<message to='bob@partner.test' id='r3' type='chat'><body>after</body></message>")
	m := alice.expect(nsClient, "message")
	if m.A("id") != "r3" || m.Child(nsClient, "error").Child(nsStanzas, "policy-violation") == nil {
		t.Fatalf("alice got %s, want policy-violation", m)
	}
	peer.send(t, "<message from='bob@partner.test' to='alice@localhost/one' id='r4' type='chat'><body>still?</body></message>")
	waitFor(t, func() bool { return peer.bounces() > 0 })
	alice.nothing(200 * time.Millisecond)

	// Adding it back federates again.
	f.Partners = []config.Partner{partner}
	if err := e.srv.ReloadFederation(context.Background(), f); err != nil {
		t.Fatal(err)
	}
	alice.send("<message to='bob@partner.test' id='r5' type='chat'><body>again</body></message>")
	peer.expectMatch(t, "the message after re-adding", func(st *stanza.Stanza) bool { return st.ID == "r5" })
}

// TestFederationIdleAndUnreachable: an idle outgoing stream closes after
// idle_timeout and the next stanza opens a new one; a partner that cannot
// be reached gets its stanzas bounced (remote-server-not-found), and
// during the backoff that follows they are bounced at once.
func TestFederationIdleAndUnreachable(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir, "test-ca")
	s2sAddr := freeAddr(t)
	peer := startPeer(t, dir, ca, "partner.test", s2sAddr, config.Partner{Name: "palisade", CAFile: ca.file})
	certFile, keyFile, _ := ca.issue(t, dir, "localhost")
	e := newEnv(t, func(c *config.Config) {
		c.TLS.CertFile, c.TLS.KeyFile = certFile, keyFile
		c.Listen.S2S = s2sAddr
		c.Federation.IdleTimeout = config.Duration(300 * time.Millisecond)
		c.Federation.RetryMin = config.Duration(time.Minute)
		c.Federation.Partners = []config.Partner{
			{Name: "partner-a", Domains: []string{"partner.test"}, CAFile: ca.file, Endpoints: []string{peer.addr}},
			{Name: "gone", Domains: []string{"gone.test"}, CAFile: ca.file, Endpoints: []string{freeAddr(t)}},
		}
	})
	alice := login(t, e, modeStartTLS, "alice", "one")
	alice.send("<message to='bob@partner.test' id='i1' type='chat'><body>one</body></message>")
	peer.expect(t)
	waitFor(t, func() bool {
		for _, s := range e.srv.FederationStatus() {
			if s.Direction == "out" {
				return false
			}
		}
		return true
	})
	alice.send("<message to='bob@partner.test' id='i2' type='chat'><body>two</body></message>")
	peer.expectMatch(t, "the message after the idle close", func(st *stanza.Stanza) bool { return st.ID == "i2" })

	for _, id := range []string{"g1", "g2"} {
		alice.send("<message to='x@gone.test' id='%s' type='chat'><body>anyone?</body></message>", id)
		m := alice.expect(nsClient, "message")
		if m.A("id") != id || m.Child(nsClient, "error").Child(nsStanzas, "remote-server-not-found") == nil {
			t.Fatalf("alice got %s, want remote-server-not-found for %s", m, id)
		}
	}
}

// TestFederationHygiene: what only this server may say is not taken from
// a partner: a carbon copy is refused with bad-request, a stanza-id
// claiming to be ours is removed, and an oversized stanza ends the stream
// with policy-violation.
func TestFederationHygiene(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir, "test-ca")
	s2sAddr := freeAddr(t)
	_, _, peerCert := ca.issue(t, dir, "partner.test")
	e := federationEnv(t, dir, ca, s2sAddr, config.Partner{Name: "partner-a", Domains: []string{"partner.test"}, CAFile: ca.file, Endpoints: []string{"127.0.0.1:1"}})
	alice := login(t, e, modeStartTLS, "alice", "one")
	raw := rawS2S(t, s2sAddr, "partner.test", ca, peerCert)
	raw.send("<message from='bob@partner.test' to='alice@localhost/one' id='c1'><sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' from='alice@localhost/two' to='carol@localhost'><body>forged</body></message></forwarded></sent></message>")
	raw.send("<message from='bob@partner.test' to='alice@localhost/one' id='s1' type='chat'><body>real</body><stanza-id xmlns='urn:xmpp:sid:0' by='alice@localhost' id='fake'/></message>")
	m := alice.expect(nsClient, "message")
	if m.A("id") != "s1" {
		t.Fatalf("alice got %s first, want s1 (the carbon refused)", m)
	}
	for _, c := range m.Nodes {
		if c.Is("urn:xmpp:sid:0", "stanza-id") && c.A("id") == "fake" {
			t.Errorf("the forged stanza-id reached alice: %s", m)
		}
	}
	raw.send("<message from='bob@partner.test' to='alice@localhost/one' id='big'><body>%s</body></message>", strings.Repeat("x", 20000))
	raw.expectStreamError("policy-violation")
	alice.nothing(200 * time.Millisecond)
}

// TestFederationSharing: a partner entry's kinds, rooms and files hold on
// every path: with kinds = ["message"], rooms = false and files = false,
// presence, IQs, room traffic and transfer offers to the partner are
// refused with policy-violation, and a chat message passes.
func TestFederationSharing(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir, "test-ca")
	s2sAddr := freeAddr(t)
	peer := startPeer(t, dir, ca, "partner.test", s2sAddr, config.Partner{Name: "palisade", CAFile: ca.file})
	e := federationEnv(t, dir, ca, s2sAddr, config.Partner{Name: "partner-a", Domains: []string{"partner.test", "conference.partner.test"},
		CAFile: ca.file, Endpoints: []string{peer.addr}, Kinds: []string{config.PartnerMessage}})
	alice := login(t, e, modeStartTLS, "alice", "one")
	refused := func(kind, id, want string) {
		t.Helper()
		n := alice.expect(nsClient, kind)
		if n.A("id") != id || n.A("type") != "error" || n.Child(nsClient, "error").Child(nsStanzas, "policy-violation") == nil ||
			!strings.Contains(n.Child(nsClient, "error").Child(nsStanzas, "text").Text, want) {
			t.Fatalf("got %s, want %s refused saying %q", n, id, want)
		}
	}
	alice.send("<presence to='bob@partner.test/desk' id='p1'/>")
	refused("presence", "p1", "does not carry presence")
	alice.send("<iq type='get' to='bob@partner.test/desk' id='q1'><query xmlns='jabber:iq:version'/></iq>")
	refused("iq", "q1", "does not carry iq")
	alice.send("<message to='room@conference.partner.test' type='groupchat' id='g1'><body>hi all</body></message>")
	refused("message", "g1", "does not share rooms")
	alice.send("<message to='bob@partner.test' id='x1'><x xmlns='jabber:x:conference' jid='room@conference.localhost'/></message>")
	refused("message", "x1", "does not share rooms")
	alice.send("<message to='bob@partner.test' id='o1'><body>file</body><x xmlns='jabber:x:oob'><url>https://files.example/a.pdf</url></x></message>")
	refused("message", "o1", "file transfer with partner.test is not allowed")
	alice.send("<message to='bob@partner.test' id='c1' type='chat'><body>plain chat</body></message>")
	if got := peer.expect(t); got.ID != "c1" {
		t.Fatalf("peer got %s", got.El)
	}
	// The partner's presence and IQs do not come in either.
	peer.send(t, "<presence from='bob@partner.test/desk' to='alice@localhost/one'/>")
	peer.send(t, "<message from='bob@partner.test/desk' to='alice@localhost/one' id='c2' type='chat'><body>back</body></message>")
	if m := alice.expect(nsClient, "message"); m.A("id") != "c2" {
		t.Fatalf("alice got %s, want only the chat message", m)
	}
}

// TestFederationEncryptionRequired: a partner with encryption_required
// gets no plaintext message from us, and its plaintext messages are not
// delivered (the sender's server gets policy-violation).
func TestFederationEncryptionRequired(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir, "test-ca")
	s2sAddr := freeAddr(t)
	peer := startPeer(t, dir, ca, "partner.test", s2sAddr, config.Partner{Name: "palisade", CAFile: ca.file})
	e := federationEnv(t, dir, ca, s2sAddr, config.Partner{Name: "partner-a", Domains: []string{"partner.test"},
		CAFile: ca.file, Endpoints: []string{peer.addr}, EncryptionRequired: true})
	alice := login(t, e, modeStartTLS, "alice", "one")
	alice.send("<message to='bob@partner.test' id='e1' type='chat'><body>plain</body></message>")
	m := alice.expect(nsClient, "message")
	if m.A("id") != "e1" || m.Child(nsClient, "error").Child(nsStanzas, "policy-violation") == nil ||
		!strings.Contains(m.Child(nsClient, "error").Child(nsStanzas, "text").Text, "must be end-to-end encrypted") {
		t.Fatalf("alice got %s", m)
	}
	peer.send(t, "<message from='bob@partner.test/desk' to='alice@localhost/one' id='e2' type='chat'><body>plain in</body></message>")
	got := peer.expectMatch(t, "the refusal of e2", func(st *stanza.Stanza) bool { return st.ID == "e2" && st.Type == "error" })
	if !strings.Contains(got.El.String(), "policy-violation") {
		t.Errorf("refusal %s", got.El)
	}
	alice.nothing(200 * time.Millisecond)
}

// TestFederationDirectTLS: XEP-0368 both ways: palisade's s2s_direct_tls
// listener takes the partner's stream, and palisade dials the partner's
// direct TLS endpoint (direct_tls = true), ALPN xmpp-server.
func TestFederationDirectTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir, "test-ca")
	direct := freeAddr(t)
	peer := startPeerTLS(t, dir, ca, "partner.test", direct, config.Partner{Name: "palisade", CAFile: ca.file, DirectTLS: true}, true)
	certFile, keyFile, _ := ca.issue(t, dir, "localhost")
	e := newEnv(t, func(c *config.Config) {
		c.TLS.CertFile, c.TLS.KeyFile = certFile, keyFile
		c.Listen.S2S, c.Listen.S2SDirectTLS = "", direct
		c.Federation.Partners = []config.Partner{{Name: "partner-a", Domains: []string{"partner.test"}, CAFile: ca.file,
			Endpoints: []string{peer.addr}, DirectTLS: true}}
	})
	alice := login(t, e, modeStartTLS, "alice", "one")
	alice.send("<message to='bob@partner.test' id='t1' type='chat'><body>direct out</body></message>")
	if got := peer.expect(t); got.Body() != "direct out" {
		t.Fatalf("peer got %s", got.El)
	}
	peer.send(t, "<message from='bob@partner.test' to='alice@localhost/one' id='t2' type='chat'><body>direct in</body></message>")
	if m := alice.expect(nsClient, "message"); m.A("id") != "t2" {
		t.Fatalf("alice got %s", m)
	}
	for _, st := range e.srv.FederationStatus() {
		if st.Auth != s2s.AuthExternal || st.TLS != "TLS 1.3" {
			t.Errorf("stream %+v", st)
		}
	}
}
