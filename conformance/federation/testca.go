// Package federation runs real partner servers (Prosody 0.12 and ejabberd
// 23.01 from Debian) for Palisade's server-to-server tests: a test CA that
// issues their certificates, a hosts file mapping every test domain to its
// own loopback address, and each server started as a child process with
// its own configuration and data directory, ended by PID.
package federation

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA is a test certificate authority (ECDSA P-256) whose certificate is
// written to File.
type CA struct {
	// Dir is where the CA writes its certificate and the ones it issues.
	Dir string
	// Name is the CA's common name and its files' base name.
	Name string
	// File is the PEM certificate of the CA, for ca_file / cafile options.
	File string

	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// Cert is an issued certificate and key on disk.
type Cert struct {
	Domain   string
	CertFile string // PEM certificate (leaf only)
	KeyFile  string // PEM PKCS#8 private key
	// SPKIPin is "sha256/" and the base64 SHA-256 of the certificate's
	// SubjectPublicKeyInfo (the format of federation.partner.spki_pins).
	SPKIPin string
}

// NewCA creates a CA named name and writes its certificate to
// dir/name.pem.
func NewCA(dir, name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("testca: key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"Palisade federation tests"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("testca: create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("testca: parse CA certificate: %w", err)
	}
	ca := &CA{Dir: dir, Name: name, File: filepath.Join(dir, name+".pem"), cert: cert, key: key}
	if err := writePEM(ca.File, "CERTIFICATE", der, 0o644); err != nil {
		return nil, err
	}
	return ca, nil
}

// Issue writes a certificate for domain (SAN dNSName domain, and the given
// IP addresses) signed by the CA, usable as TLS server and client
// certificate (s2s certificates are used both ways), to
// dir/domain[-CAname].pem and .key.
func (ca *CA) Issue(domain string, ips ...net.IP) (*Cert, error) {
	return issue(ca.Dir, domain+"-"+ca.Name, domain, ips, ca.cert, ca.key)
}

// SelfSigned writes a self-signed certificate for domain (no CA), for the
// dialback tests, to dir/domain-selfsigned.pem and .key.
func SelfSigned(dir, domain string) (*Cert, error) {
	return issue(dir, domain+"-selfsigned", domain, nil, nil, nil)
}

func issue(dir, base, domain string, ips []net.IP, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*Cert, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("testca: key for %s: %w", domain, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: domain},
		DNSNames:     []string{domain},
		IPAddresses:  ips,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if parent == nil {
		// As `openssl req -x509` makes it: its own CA, so that clients can
		// trust it as a root.
		parent, parentKey = tmpl, key
		tmpl.BasicConstraintsValid = true
		tmpl.IsCA = true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, fmt.Errorf("testca: certificate for %s: %w", domain, err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("testca: marshal key for %s: %w", domain, err)
	}
	spki, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("testca: marshal public key for %s: %w", domain, err)
	}
	sum := sha256.Sum256(spki)
	c := &Cert{
		Domain:   domain,
		CertFile: filepath.Join(dir, base+".pem"),
		KeyFile:  filepath.Join(dir, base+".key"),
		SPKIPin:  "sha256/" + base64.StdEncoding.EncodeToString(sum[:]),
	}
	if err := writePEM(c.CertFile, "CERTIFICATE", der, 0o644); err != nil {
		return nil, err
	}
	// Readable by all: ejabberd reads it as user ejabberd. Test keys only.
	if err := writePEM(c.KeyFile, "PRIVATE KEY", pkcs8, 0o644); err != nil {
		return nil, err
	}
	return c, nil
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	b := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	if err := os.WriteFile(path, b, mode); err != nil {
		return fmt.Errorf("testca: write %s: %w", path, err)
	}
	return nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		panic(err)
	}
	return n
}

// PKI is the certificate material of one federation test: the test CA, a
// second ("wrong") CA, a certificate from the test CA for every test
// domain, and the hosts file.
type PKI struct {
	Dir     string
	CA      *CA
	WrongCA *CA
	// Certs holds a certificate from CA for each test domain.
	Certs map[string]*Cert
	// Hosts is the hosts file mapping every test domain to its address.
	Hosts string
}

// NewPKI takes the federation test lock (Lock) and creates the test's
// PKI in a temporary directory.
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	Lock(t)
	dir := t.TempDir()
	p := &PKI{Dir: dir, Certs: map[string]*Cert{}}
	var err error
	if p.CA, err = NewCA(dir, "testca"); err != nil {
		t.Fatal(err)
	}
	if p.WrongCA, err = NewCA(dir, "wrongca"); err != nil {
		t.Fatal(err)
	}
	for d, addr := range Addrs {
		if p.Certs[d], err = p.CA.Issue(d, net.ParseIP(addr)); err != nil {
			t.Fatal(err)
		}
	}
	if p.Hosts, err = WriteHosts(dir); err != nil {
		t.Fatal(err)
	}
	// Prosody and ejabberd (as user ejabberd) read these files.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}
