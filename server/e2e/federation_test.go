package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
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
	"go.uber.org/zap/zaptest"
	"mellium.im/xmpp/jid"
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
	go func() { _ = srv.ServeTCP(ctx, ln, false); close(done) }()
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
	_ = jid.JID{}
	_ = strings.Contains
}
