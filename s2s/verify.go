package s2s

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/palisade-im/palisade/server/config"
)

// trust is how one partner's certificates are checked: the CAs they must
// chain to and the keys they may carry.
type trust struct {
	roots *x509.CertPool // nil: the system roots
	pins  [][]byte       // SHA-256 of SubjectPublicKeyInfo; none: any key
}

// loadTrust reads a partner's ca_file and pins.
func loadTrust(p *config.Partner) (trust, error) {
	var t trust
	if p.CAFile != "" {
		pem, err := os.ReadFile(p.CAFile)
		if err != nil {
			return t, fmt.Errorf("partner %s: ca_file: %w", p.Name, err)
		}
		t.roots = x509.NewCertPool()
		if !t.roots.AppendCertsFromPEM(pem) {
			return t, fmt.Errorf("partner %s: ca_file %s holds no PEM certificate", p.Name, p.CAFile)
		}
	}
	for _, pin := range p.SPKIPins {
		b, err := base64.StdEncoding.DecodeString(pin[len("sha256/"):])
		if err != nil || len(b) != sha256.Size {
			return t, fmt.Errorf("partner %s: spki pin %q is not sha256/ and 32 bytes of base64", p.Name, pin)
		}
		t.pins = append(t.pins, b)
	}
	return t, nil
}

// errNoCertificate is verifyPeer's error when the peer sent none.
var errNoCertificate = errors.New("the peer presented no certificate")

// verifyPeer checks the peer's certificate for domain (RFC 6125 / RFC
// 9525 DNS-ID rules, as crypto/x509 applies them): it must chain to the
// partner's CAs (or the system roots), be valid now, name domain, and
// when pins are set carry a pinned key somewhere in the verified chain.
// Extended key usage is not required to say serverAuth or clientAuth: a
// server's certificate serves it in both roles. It returns the leaf.
func verifyPeer(cs tls.ConnectionState, domain string, t trust, now time.Time) (*x509.Certificate, error) {
	if len(cs.PeerCertificates) == 0 {
		return nil, errNoCertificate
	}
	leaf := cs.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		DNSName: domain, Roots: t.roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return leaf, fmt.Errorf("certificate for %s does not verify: %w", domain, err)
	}
	if len(t.pins) == 0 {
		return leaf, nil
	}
	for _, chain := range chains {
		for _, c := range chain {
			sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
			if slices.ContainsFunc(t.pins, func(p []byte) bool { return string(p) == string(sum[:]) }) {
				return leaf, nil
			}
		}
	}
	return leaf, fmt.Errorf("certificate for %s carries none of the partner's pinned keys", domain)
}

// SPKIPin returns the spki_pins form of a certificate's key:
// "sha256/" and the base64 SHA-256 of its SubjectPublicKeyInfo.
func SPKIPin(c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return "sha256/" + base64.StdEncoding.EncodeToString(sum[:])
}
