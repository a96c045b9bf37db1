// Package certs provides the server's TLS material: loading an operator's
// certificate or generating and reusing a self-signed one, a hardened
// tls.Config whose certificate can be swapped at run time, and the TLS
// channel-binding values SCRAM-*-PLUS needs (RFC 9266, RFC 5929).
package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// selfSignedValidity is how long a generated certificate is valid.
	selfSignedValidity = 365 * 24 * time.Hour
	// renewBefore is the remaining validity below which a generated
	// certificate is replaced instead of reused.
	renewBefore = 30 * 24 * time.Hour
)

// Keypair is the server's certificate and key. The current certificate is
// held in an atomic pointer so Reload can replace it while connections are
// being accepted; a Keypair must not be copied.
type Keypair struct {
	// CertFile is the path of the PEM certificate (chain) in use. For a
	// generated certificate it is also the file clients can trust as a CA.
	CertFile string
	// KeyFile is the path of the PEM private key in use.
	KeyFile string

	// generated is true when the files live under dataDir and are managed
	// (created, renewed) by this package.
	generated bool
	dataDir   string
	domains   []string

	mu  sync.Mutex // serializes Reload
	cur atomic.Pointer[tls.Certificate]
}

// LoadOrCreate returns the server's keypair. When certFile and keyFile are
// set they are loaded as given (both are required together). Otherwise the
// files dataDir/certs/server.pem and dataDir/certs/server.key are reused if
// they parse, are valid for more than 30 more days and cover every domain;
// if not, a new self-signed certificate is generated and written there.
//
// A generated certificate is an ECDSA P-256 self-signed certificate valid for
// one year, with DNS names for each domain plus "localhost" and IP addresses
// 127.0.0.1 and ::1. It is marked CA:TRUE, constrained by name constraints to
// exactly those names, so that clients can use the PEM file as a trust anchor.
func LoadOrCreate(dataDir string, domains []string, certFile, keyFile string) (*Keypair, error) {
	kp := &Keypair{dataDir: dataDir, domains: append([]string(nil), domains...)}
	switch {
	case certFile != "" && keyFile != "":
		kp.CertFile, kp.KeyFile = certFile, keyFile
	case certFile != "" || keyFile != "":
		return nil, errors.New("certs: a certificate file and a key file must be configured together")
	default:
		if dataDir == "" {
			return nil, errors.New("certs: no data directory for the generated certificate")
		}
		kp.generated = true
		dir := filepath.Join(dataDir, "certs")
		kp.CertFile = filepath.Join(dir, "server.pem")
		kp.KeyFile = filepath.Join(dir, "server.key")
	}
	if err := kp.Reload(); err != nil {
		return nil, err
	}
	return kp, nil
}

// Certificate returns the certificate currently served.
func (kp *Keypair) Certificate() *tls.Certificate {
	return kp.cur.Load()
}

// Leaf returns the parsed leaf of the certificate currently served.
func (kp *Keypair) Leaf() *x509.Certificate {
	return kp.cur.Load().Leaf
}

// Reload reads the certificate and key again and swaps them in for new
// handshakes. For a generated certificate it also renews the files when they
// are missing, invalid, close to expiry or do not cover every domain. On
// error the previous certificate stays in use.
func (kp *Keypair) Reload() error {
	kp.mu.Lock()
	defer kp.mu.Unlock()
	if !kp.generated {
		cert, err := loadFiles(kp.CertFile, kp.KeyFile)
		if err != nil {
			return err
		}
		kp.cur.Store(cert)
		return nil
	}
	if cert, err := loadFiles(kp.CertFile, kp.KeyFile); err == nil && reusable(cert.Leaf, kp.domains, time.Now()) {
		kp.cur.Store(cert)
		return nil
	}
	cert, err := generate(kp.domains, time.Now())
	if err != nil {
		return err
	}
	if err := writeFiles(cert, kp.CertFile, kp.KeyFile); err != nil {
		return err
	}
	kp.cur.Store(cert)
	return nil
}

func (kp *Keypair) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	cert := kp.cur.Load()
	if cert == nil {
		return nil, errors.New("certs: no certificate loaded")
	}
	return cert, nil
}

// ServerConfig returns a server tls.Config using kp: TLS 1.2 or later, for
// TLS 1.2 only ECDHE key exchange with AEAD ciphers (AES-GCM,
// ChaCha20-Poly1305), key exchange groups X25519MLKEM768, X25519 and P-256.
// The certificate is fetched from kp on every handshake, so Reload takes
// effect without restarting listeners. Callers may set NextProtos and other
// fields on the returned value.
func ServerConfig(kp *Keypair) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
		CurvePreferences: []tls.CurveID{tls.X25519MLKEM768, tls.X25519, tls.CurveP256},
		GetCertificate:   kp.getCertificate,
	}
}

// loadFiles reads and parses a PEM certificate chain and key, naming the
// offending file in errors.
func loadFiles(certFile, keyFile string) (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("certs: read certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("certs: read key: %w", err)
	}
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("certs: %s: no PEM CERTIFICATE block", certFile)
	}
	if _, err := x509.ParseCertificate(block.Bytes); err != nil {
		return nil, fmt.Errorf("certs: %s: %w", certFile, err)
	}
	if block, _ := pem.Decode(keyPEM); block == nil || !strings.Contains(block.Type, "PRIVATE KEY") {
		return nil, fmt.Errorf("certs: %s: no PEM PRIVATE KEY block", keyFile)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("certs: %s with %s: %w", certFile, keyFile, err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("certs: %s: %w", certFile, err)
		}
	}
	return &cert, nil
}

// reusable reports whether a generated certificate can be kept.
func reusable(leaf *x509.Certificate, domains []string, now time.Time) bool {
	if leaf == nil || now.Before(leaf.NotBefore) || now.Add(renewBefore).After(leaf.NotAfter) {
		return false
	}
	for _, d := range append(domains, "localhost") {
		if leaf.VerifyHostname(d) != nil {
			return false
		}
	}
	return true
}

// generate creates a self-signed, name-constrained ECDSA P-256 certificate.
func generate(domains []string, now time.Time) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("certs: generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("certs: generate serial: %w", err)
	}
	var dnsNames []string
	ips := []net.IP{net.IPv4(127, 0, 0, 1).To4(), net.IPv6loopback}
	seen := map[string]bool{}
	for _, d := range append(append([]string(nil), domains...), "localhost") {
		d = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
		if d == "" || seen[d] {
			continue
		}
		seen[d] = true
		if ip := net.ParseIP(d); ip != nil {
			if ip4 := ip.To4(); ip4 != nil {
				ip = ip4
			}
			if !ip.IsLoopback() {
				ips = append(ips, ip)
			}
			continue
		}
		dnsNames = append(dnsNames, d)
	}
	var ipRanges []*net.IPNet
	for _, ip := range ips {
		ipRanges = append(ipRanges, &net.IPNet{IP: ip, Mask: net.CIDRMask(len(ip)*8, len(ip)*8)})
	}
	cn := dnsNames[0]
	tmpl := &x509.Certificate{
		SerialNumber:                serial,
		Subject:                     pkix.Name{CommonName: cn, Organization: []string{"Palisade self-signed"}},
		NotBefore:                   now.Add(-time.Hour),
		NotAfter:                    now.Add(selfSignedValidity),
		KeyUsage:                    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:                 []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid:       true,
		IsCA:                        true,
		MaxPathLen:                  0,
		MaxPathLenZero:              true,
		DNSNames:                    dnsNames,
		IPAddresses:                 ips,
		PermittedDNSDomainsCritical: true,
		PermittedDNSDomains:         dnsNames,
		PermittedIPRanges:           ipRanges,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("certs: create certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("certs: parse generated certificate: %w", err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// writeFiles stores a generated certificate: the directory 0700, the key
// 0600 and the certificate 0644, each written atomically.
func writeFiles(cert *tls.Certificate, certFile, keyFile string) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return fmt.Errorf("certs: marshal key: %w", err)
	}
	for _, dir := range []string{filepath.Dir(certFile), filepath.Dir(keyFile)} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("certs: create directory: %w", err)
		}
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("certs: restrict directory: %w", err)
		}
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	if err := writeAtomic(keyFile, keyPEM, 0o600); err != nil {
		return err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})
	return writeAtomic(certFile, certPEM, 0o644)
}

// writeAtomic writes data to a temporary file in the target's directory,
// syncs it and renames it into place.
func writeAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("certs: write %s: %w", path, err)
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("certs: write %s: %w", path, err)
	}
	if err := f.Chmod(perm); err != nil {
		return fail(err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("certs: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("certs: write %s: %w", path, err)
	}
	return nil
}
