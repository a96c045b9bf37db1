package s2s

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/server/element"
)

// TestDialbackKey: the XEP-0185 key, checked against a value computed
// independently with Python's hmac and hashlib (HMAC-SHA256 keyed with the
// hex SHA-256 of "s3cr3tf0rd14lb4ck" over "example.net example.com
// D60000229F").
func TestDialbackKey(t *testing.T) {
	got := dialbackKey([]byte("s3cr3tf0rd14lb4ck"), "example.net", "example.com", "D60000229F")
	const want = "008c689ff366b50c63d69a3e2d2c0e0e1f8404b0118eb688a0102c87cb691bdc"
	if got != want {
		t.Fatalf("key %s, want %s", got, want)
	}
	s := &Server{cfg: Config{DialbackSecret: []byte("s3cr3tf0rd14lb4ck")}}
	if !s.validKey("example.net", "example.com", "D60000229F", want) {
		t.Error("the issued key does not verify")
	}
	for _, c := range [][4]string{
		{"example.org", "example.com", "D60000229F", want}, // another receiving server
		{"example.net", "example.com", "D60000229G", want}, // another stream
		{"example.net", "example.com", "", want},           // no stream id
		{"example.net", "example.com", "D60000229F", ""},   // no key
	} {
		if s.validKey(c[0], c[1], c[2], c[3]) {
			t.Errorf("validKey%v accepted", c)
		}
	}
}

// certFor makes a CA and a leaf for domain signed by it.
func certFor(t *testing.T, domain string, notAfter time.Time) (ca, leaf *x509.Certificate) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caT := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, caT, caT, &caKey.PublicKey, caKey)
	ca, _ = x509.ParseCertificate(der)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	lt := &x509.Certificate{SerialNumber: big.NewInt(2), DNSNames: []string{domain}, NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, _ = x509.CreateCertificate(rand.Reader, lt, ca, &key.PublicKey, caKey)
	leaf, _ = x509.ParseCertificate(der)
	return ca, leaf
}

// TestVerifyPeer: the chain, the domain, the validity period and the pins
// each decide; serverAuth alone is accepted for an inbound (client-side)
// certificate.
func TestVerifyPeer(t *testing.T) {
	ca, leaf := certFor(t, "partner.example", time.Now().Add(time.Hour))
	otherCA, _ := certFor(t, "x", time.Now().Add(time.Hour))
	expCA, expired := certFor(t, "partner.example", time.Now().Add(-time.Minute))
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	other := x509.NewCertPool()
	other.AddCert(otherCA)
	pin := func(c *x509.Certificate) []byte {
		b, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(SPKIPin(c), "sha256/"))
		return b
	}
	cs := func(c ...*x509.Certificate) tls.ConnectionState { return tls.ConnectionState{PeerCertificates: c} }
	cases := []struct {
		name   string
		state  tls.ConnectionState
		domain string
		tr     trust
		want   string // "" for success, else a substring of the error
	}{
		{"valid", cs(leaf), "partner.example", trust{roots: roots}, ""},
		{"pinned leaf", cs(leaf), "partner.example", trust{roots: roots, pins: [][]byte{pin(leaf)}}, ""},
		{"pinned CA", cs(leaf), "partner.example", trust{roots: roots, pins: [][]byte{pin(ca)}}, ""},
		{"wrong pin", cs(leaf), "partner.example", trust{roots: roots, pins: [][]byte{pin(otherCA)}}, "pinned"},
		{"other domain", cs(leaf), "evil.example", trust{roots: roots}, "does not verify"},
		{"other CA", cs(leaf), "partner.example", trust{roots: other}, "does not verify"},
		{"no certificate", cs(), "partner.example", trust{roots: roots}, "no certificate"},
	}
	for _, c := range cases {
		_, err := verifyPeer(c.state, c.domain, c.tr, time.Now())
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: error %v, want one saying %q", c.name, err, c.want)
		}
	}
	// An expired leaf, with its CA trusted.
	expRoots := x509.NewCertPool()
	expRoots.AddCert(expCA)
	if _, err := verifyPeer(cs(expired), "partner.example", trust{roots: expRoots}, time.Now()); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired certificate: %v", err)
	}
}

// TestLoadTrust: a ca_file without certificates is an error naming it.
func TestLoadTrust(t *testing.T) {
	f := t.TempDir() + "/empty.pem"
	if err := writeFile(f, "not a pem"); err != nil {
		t.Fatal(err)
	}
	_, err := loadTrust(&config.Partner{Name: "p", CAFile: f})
	if err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("error %v", err)
	}
}

// pipeConn is one end of a net.Pipe for frame tests.
func framePair(t *testing.T, max int64) (*frame, net.Conn) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return newFrame(a, max, element.Limits{}, time.Second), b
}

// TestFrame: a stream header is required and must be jabber:server; an
// element over the size bound is policy-violation; text between stanzas
// is bad-format; jabber:server stanzas are moved to jabber:client.
func TestFrame(t *testing.T) {
	cases := []struct {
		name, in, cond string
	}{
		{"client namespace", "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>", "invalid-namespace"},
		{"not a stream", "<message/>", "bad-format"},
		{"too big", "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'><message><body>" + strings.Repeat("x", 3000) + "</body></message>", "policy-violation"},
		{"text", "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>hello<message/>", "bad-format"},
		{"not well-formed", "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'><message></iq>", "not-well-formed"},
	}
	for _, c := range cases {
		f, peer := framePair(t, 1024)
		go func() { _, _ = io.WriteString(peer, c.in) }()
		_, err := f.readHeader(time.Now().Add(time.Second))
		if err == nil {
			_, err = f.next()
		}
		var se *StreamError
		if !errors.As(err, &se) || se.Condition != c.cond {
			t.Errorf("%s: error %v, want stream error %s", c.name, err, c.cond)
		}
	}
	f, peer := framePair(t, 1024)
	go func() {
		_, _ = io.WriteString(peer, "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' version='1.0' from='a.example' to='b.example'><message from='x@a.example' to='y@b.example'><body>hi</body></message>")
	}()
	h, err := f.readHeader(time.Now().Add(time.Second))
	if err != nil || h.from != "a.example" || h.to != "b.example" || !h.dialbackNS {
		t.Fatalf("header %+v, %v", h, err)
	}
	el, err := f.next()
	if err != nil {
		t.Fatal(err)
	}
	toClientNS(el)
	if got := el.AppendTo(nil, nsClient); !bytes.Equal(got, []byte(`<message from="x@a.example" to="y@b.example"><body>hi</body></message>`)) {
		t.Errorf("stanza in jabber:client: %s", got)
	}
}

func writeFile(name, s string) error {
	return os.WriteFile(name, []byte(s), 0o600)
}
