package certs

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestGenerate(t *testing.T) {
	dir := t.TempDir()
	kp, err := LoadOrCreate(dir, []string{"example.org", "conference.example.org"}, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "certs", "server.pem"); kp.CertFile != want {
		t.Errorf("CertFile = %q, want %q", kp.CertFile, want)
	}
	leaf := kp.Leaf()
	if _, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Errorf("public key is %T, want ECDSA", leaf.PublicKey)
	}
	if !leaf.IsCA || !leaf.BasicConstraintsValid {
		t.Error("certificate is not CA:TRUE")
	}
	if leaf.KeyUsage != x509.KeyUsageDigitalSignature|x509.KeyUsageCertSign {
		t.Errorf("KeyUsage = %v", leaf.KeyUsage)
	}
	if len(leaf.ExtKeyUsage) != 1 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
		t.Errorf("ExtKeyUsage = %v", leaf.ExtKeyUsage)
	}
	wantDNS := []string{"example.org", "conference.example.org", "localhost"}
	if strings.Join(leaf.DNSNames, ",") != strings.Join(wantDNS, ",") {
		t.Errorf("DNSNames = %v, want %v", leaf.DNSNames, wantDNS)
	}
	if strings.Join(leaf.PermittedDNSDomains, ",") != strings.Join(wantDNS, ",") || !leaf.PermittedDNSDomainsCritical {
		t.Errorf("PermittedDNSDomains = %v (critical %v)", leaf.PermittedDNSDomains, leaf.PermittedDNSDomainsCritical)
	}
	if len(leaf.IPAddresses) != 2 || !leaf.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) || !leaf.IPAddresses[1].Equal(net.ParseIP("::1")) {
		t.Errorf("IPAddresses = %v", leaf.IPAddresses)
	}
	if len(leaf.PermittedIPRanges) != 2 {
		t.Errorf("PermittedIPRanges = %v", leaf.PermittedIPRanges)
	}
	if d := time.Until(leaf.NotAfter); d < 360*24*time.Hour || d > 366*24*time.Hour {
		t.Errorf("validity ends in %v", d)
	}
	for path, want := range map[string]os.FileMode{
		filepath.Join(dir, "certs"):               0o700 | os.ModeDir,
		filepath.Join(dir, "certs", "server.key"): 0o600,
	} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s mode = %v, want %v", path, fi.Mode(), want)
		}
	}
	// Name constraints must not exclude the certificate's own names.
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	for _, name := range wantDNS {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: pool}); err != nil {
			t.Errorf("verify %s: %v", name, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "example.com", Roots: pool}); err == nil {
		t.Error("verified for a name it does not cover")
	}
}

func TestReuseAndRegenerate(t *testing.T) {
	dir := t.TempDir()
	kp1, err := LoadOrCreate(dir, []string{"example.org"}, "", "")
	if err != nil {
		t.Fatal(err)
	}
	kp2, err := LoadOrCreate(dir, []string{"example.org"}, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if kp1.Leaf().SerialNumber.Cmp(kp2.Leaf().SerialNumber) != 0 {
		t.Error("certificate was not reused")
	}
	kp3, err := LoadOrCreate(dir, []string{"example.org", "example.net"}, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if kp3.Leaf().SerialNumber.Cmp(kp1.Leaf().SerialNumber) == 0 {
		t.Fatal("certificate was not regenerated for a new domain")
	}
	if err := kp3.Leaf().VerifyHostname("example.net"); err != nil {
		t.Error(err)
	}
	// The regenerated files are what the next start reuses.
	kp4, err := LoadOrCreate(dir, []string{"example.net"}, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if kp4.Leaf().SerialNumber.Cmp(kp3.Leaf().SerialNumber) != 0 {
		t.Error("certificate covering a subset of domains was not reused")
	}
}

func TestRegenerateExpiring(t *testing.T) {
	dir := t.TempDir()
	kp1, err := LoadOrCreate(dir, []string{"example.org"}, "", "")
	if err != nil {
		t.Fatal(err)
	}
	old, err := generate([]string{"example.org"}, time.Now().Add(-350*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := writeFiles(old, kp1.CertFile, kp1.KeyFile); err != nil {
		t.Fatal(err)
	}
	if err := kp1.Reload(); err != nil {
		t.Fatal(err)
	}
	if kp1.Leaf().SerialNumber.Cmp(old.Leaf.SerialNumber) == 0 {
		t.Error("certificate expiring within 30 days was reused")
	}
	if time.Until(kp1.Leaf().NotAfter) < 300*24*time.Hour {
		t.Error("renewed certificate has short validity")
	}
}

func TestRegenerateCorrupt(t *testing.T) {
	dir := t.TempDir()
	kp1, err := LoadOrCreate(dir, []string{"example.org"}, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kp1.KeyFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	kp2, err := LoadOrCreate(dir, []string{"example.org"}, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if kp2.Leaf().SerialNumber.Cmp(kp1.Leaf().SerialNumber) == 0 {
		t.Error("certificate with a corrupt key was reused")
	}
}

func TestLoadExplicit(t *testing.T) {
	src := t.TempDir()
	gen, err := LoadOrCreate(src, []string{"example.org"}, "", "")
	if err != nil {
		t.Fatal(err)
	}
	kp, err := LoadOrCreate("", nil, gen.CertFile, gen.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if kp.Leaf().SerialNumber.Cmp(gen.Leaf().SerialNumber) != 0 {
		t.Error("explicit files not loaded")
	}
	if kp.CertFile != gen.CertFile || kp.KeyFile != gen.KeyFile {
		t.Error("paths not kept")
	}

	missing := filepath.Join(src, "missing.pem")
	if _, err := LoadOrCreate("", nil, missing, gen.KeyFile); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing cert: err = %v", err)
	}
	bad := filepath.Join(src, "bad.pem")
	if err := os.WriteFile(bad, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreate("", nil, bad, gen.KeyFile); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("bad cert: err = %v", err)
	}
	if _, err := LoadOrCreate("", nil, gen.CertFile, bad); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("bad key: err = %v", err)
	}
	if _, err := LoadOrCreate("", nil, gen.CertFile, ""); err == nil {
		t.Error("cert without key accepted")
	}
	// A key that does not match the certificate.
	other, err := LoadOrCreate(t.TempDir(), []string{"example.org"}, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreate("", nil, gen.CertFile, other.KeyFile); err == nil || !strings.Contains(err.Error(), gen.CertFile) {
		t.Errorf("mismatched key: err = %v", err)
	}
}

// handshake runs a TLS handshake over loopback between ServerConfig(kp) and a
// client trusting kp's PEM file, returning both connection states.
func handshake(t *testing.T, kp *Keypair, serverName string, maxVersion uint16) (client, server tls.ConnectionState) {
	t.Helper()
	pemData, err := os.ReadFile(kp.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemData) {
		t.Fatal("no certificate in PEM file")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		cs  tls.ConnectionState
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		sc := tls.Server(c, ServerConfig(kp))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err = sc.HandshakeContext(ctx)
		if err == nil {
			// Wait for the client to finish reading so TLS 1.3 tickets flush.
			var b [1]byte
			sc.Read(b[:])
		}
		done <- result{sc.ConnectionState(), err}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cc := tls.Client(c, &tls.Config{RootCAs: pool, ServerName: serverName, MaxVersion: maxVersion})
	if err := cc.Handshake(); err != nil {
		c.Close()
		t.Fatalf("client handshake (%s): %v", serverName, err)
	}
	client = cc.ConnectionState()
	cc.Close()
	r := <-done
	if r.err != nil {
		t.Fatalf("server handshake: %v", r.err)
	}
	return client, r.cs
}

func TestHandshake(t *testing.T) {
	kp, err := LoadOrCreate(t.TempDir(), []string{"example.org"}, "", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		serverName string
		version    uint16
	}{
		{"localhost-tls13", "localhost", tls.VersionTLS13},
		{"ipv4-tls13", "127.0.0.1", tls.VersionTLS13},
		{"domain-tls12", "example.org", tls.VersionTLS12},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, server := handshake(t, kp, tc.serverName, tc.version)
			if client.Version != tc.version {
				t.Errorf("version = %x, want %x", client.Version, tc.version)
			}
			ce, err := TLSExporter(client)
			if err != nil {
				t.Fatal(err)
			}
			se, err := TLSExporter(server)
			if err != nil {
				t.Fatal(err)
			}
			if len(ce) != 32 || !bytes.Equal(ce, se) {
				t.Errorf("exporter mismatch: client %x server %x", ce, se)
			}
			cep := TLSServerEndPoint(client.PeerCertificates[0])
			sep := TLSServerEndPoint(kp.Leaf())
			if len(cep) != sha256.Size || !bytes.Equal(cep, sep) {
				t.Errorf("tls-server-end-point mismatch: client %x server %x", cep, sep)
			}
			if sum := sha256.Sum256(kp.Leaf().Raw); !bytes.Equal(sep, sum[:]) {
				t.Error("tls-server-end-point is not SHA-256 of an ECDSA-SHA256 certificate")
			}
		})
	}
}

func TestReloadSwapsCertificate(t *testing.T) {
	dir := t.TempDir()
	gen, err := LoadOrCreate(dir, []string{"example.org"}, "", "")
	if err != nil {
		t.Fatal(err)
	}
	certFile := filepath.Join(t.TempDir(), "c.pem")
	keyFile := filepath.Join(filepath.Dir(certFile), "c.key")
	copyFile(t, gen.CertFile, certFile)
	copyFile(t, gen.KeyFile, keyFile)
	kp, err := LoadOrCreate("", nil, certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg := ServerConfig(kp)
	first, _ := cfg.GetCertificate(nil)

	next, err := LoadOrCreate(t.TempDir(), []string{"example.org"}, "", "")
	if err != nil {
		t.Fatal(err)
	}
	copyFile(t, next.CertFile, certFile)
	copyFile(t, next.KeyFile, keyFile)
	if err := kp.Reload(); err != nil {
		t.Fatal(err)
	}
	second, _ := cfg.GetCertificate(nil)
	if first.Leaf.SerialNumber.Cmp(second.Leaf.SerialNumber) == 0 {
		t.Fatal("Reload did not swap the certificate")
	}
	client, _ := handshake(t, kp, "localhost", tls.VersionTLS13)
	if client.PeerCertificates[0].SerialNumber.Cmp(next.Leaf().SerialNumber) != 0 {
		t.Error("handshake did not use the reloaded certificate")
	}

	// A failed reload keeps the current certificate.
	if err := os.WriteFile(keyFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := kp.Reload(); err == nil {
		t.Error("Reload of a bad key succeeded")
	}
	if kp.Leaf().SerialNumber.Cmp(next.Leaf().SerialNumber) != 0 {
		t.Error("failed Reload changed the certificate")
	}
}

func TestExporterUnavailable(t *testing.T) {
	if _, err := TLSExporter(tls.ConnectionState{}); err == nil {
		t.Error("exporter of an incomplete handshake succeeded")
	}
	if TLSServerEndPoint(nil) != nil {
		t.Error("end-point of nil certificate")
	}
}

// TestOpenSSLTrustAnchor checks that an OpenSSL-based client (Python's ssl)
// accepts the generated PEM file as its CA file.
func TestOpenSSLTrustAnchor(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	kp, err := LoadOrCreate(t.TempDir(), []string{"example.org"}, "", "")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", ServerConfig(kp))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				c.(*tls.Conn).Handshake()
				c.Write([]byte("ok"))
			}()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	script := `
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[1])
for host in ("localhost", "127.0.0.1"):
    with socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=10) as s:
        with ctx.wrap_socket(s, server_hostname=host) as t:
            assert t.recv(2) == b"ok"
print("verified")
`
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, py, "-c", script, kp.CertFile, port).CombinedOutput()
	if err != nil {
		t.Fatalf("python ssl client: %v\n%s", err, out)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
