package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/palisade-im/palisade/modules/register"
	"github.com/palisade-im/palisade/server/config"
)

func codes(ws []Warning) []string {
	var c []string
	for _, w := range ws {
		c = append(c, w.Code)
	}
	slices.Sort(c)
	return c
}

// certPEM writes a certificate for name to dir: self-signed, or issued by
// a CA of its own; it returns the file.
func certPEM(t *testing.T, dir, name string, self bool) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	parent, parentKey := tmpl, key
	if !self {
		caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		parent = &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test CA"}, IsCA: true,
			BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: tmpl.NotBefore, NotAfter: tmpl.NotAfter}
		parentKey = caKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name+map[bool]string{true: "-self", false: "-ca"}[self]+".pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestPosture: each weakening setting gives its warning, a hardened
// configuration none.
func TestPosture(t *testing.T) {
	dir := t.TempDir()
	hardened := func() *config.Config {
		c := config.Default()
		c.Server.Domains = []string{"example.com"}
		c.TLS.CertFile, c.TLS.KeyFile = certPEM(t, dir, "example.com", false), "unused.key"
		c.Archive.Retention = []config.Retention{{Name: "sec", Scope: config.ScopeAll, KeepDays: 2190, Locked: true}}
		c.Archive.OfficerKeys = []string{"officer.asc"}
		c.Archive.Witnesses = []config.Witness{{URL: "https://w.example.net", Key: "w.example.net/w+00000000+AA"}}
		c.Archive.CheckpointSyslog = "udp://192.0.2.1:514"
		c.Log.AuditFile = "/var/log/palisade/audit.log"
		c.Modules = map[string]config.Section{"register": {Name: "register", Value: &register.Config{}}}
		return c
	}
	if ws := Posture(hardened()); len(ws) != 0 {
		t.Fatalf("hardened configuration: %+v", ws)
	}
	for _, tc := range []struct {
		name string
		mod  func(*config.Config)
		want []string
	}{
		{"archive off", func(c *config.Config) { c.Archive.Enabled = false }, []string{WarnArchiveOff}},
		{"no retention", func(c *config.Config) { c.Archive.Retention = nil }, []string{WarnNoRetention}},
		{"retention unlocked", func(c *config.Config) { c.Archive.Retention[0].Locked = false }, []string{WarnRetentionUnlocked}},
		{"no officer keys", func(c *config.Config) { c.Archive.OfficerKeys = nil }, []string{WarnNoOfficerKeys}},
		{"registration open", func(c *config.Config) {
			c.Modules["register"] = config.Section{Name: "register", Value: &register.Config{Allow: true}}
		}, []string{WarnRegistrationOpen}},
		{"self-signed certificate", func(c *config.Config) { c.TLS.CertFile = certPEM(t, dir, "example.com", true) }, []string{WarnSelfSigned}},
		{"development certificate", func(c *config.Config) { c.TLS.CertFile, c.TLS.KeyFile = "", "" }, []string{WarnSelfSigned}},
		{"development certificate on localhost", func(c *config.Config) {
			c.TLS.CertFile, c.TLS.KeyFile = "", ""
			c.Server.Domains = []string{"localhost"}
		}, nil},
		{"self-signed on one public domain of two", func(c *config.Config) {
			c.TLS.CertFile = certPEM(t, dir, "localhost", true)
			c.Server.Domains = []string{"localhost", "chat.example.com"}
		}, []string{WarnSelfSigned}},
		{"no witness", func(c *config.Config) { c.Archive.Witnesses = nil }, []string{WarnNoWitness}},
		{"checkpoints local only", func(c *config.Config) {
			c.Archive.Witnesses, c.Archive.CheckpointSyslog = nil, ""
		}, []string{WarnCheckpointsLocal, WarnNoWitness}},
		{"audit on stderr only", func(c *config.Config) { c.Log.AuditFile = "" }, []string{WarnAuditStderrOnly}},
		{"partners verified by certificate", func(c *config.Config) {
			c.Federation.Partners = []config.Partner{
				{Name: "system-roots", Domains: []string{"a.example.net"}},
				{Name: "own-ca", Domains: []string{"b.example.net"}, CAFile: "/etc/palisade/b-ca.pem", SPKIPins: []string{"sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="}},
			}
		}, nil},
		{"partners accepting dialback", func(c *config.Config) {
			c.Federation.Partners = []config.Partner{
				{Name: "legacy", Domains: []string{"legacy.example.net"}, Dialback: true},
				{Name: "own-ca", Domains: []string{"b.example.net"}, CAFile: "/etc/palisade/b-ca.pem"},
				{Name: "old", Domains: []string{"old.example.net", "muc.old.example.net"}, Dialback: true},
			}
		}, []string{WarnPartnerDialback, WarnPartnerDialback}},
	} {
		c := hardened()
		tc.mod(c)
		ws := Posture(c)
		want := slices.Clone(tc.want)
		slices.Sort(want)
		if got := codes(ws); !slices.Equal(got, want) {
			t.Errorf("%s: warnings %v, want %v (%+v)", tc.name, got, want, ws)
		}
		for _, w := range ws {
			if w.Text == "" {
				t.Errorf("%s: %s has no text", tc.name, w.Code)
			}
			if w.Code == WarnSelfSigned && !strings.Contains(w.Text, "example.com") {
				t.Errorf("%s: %q does not name the domain", tc.name, w.Text)
			}
			if w.Code == WarnPartnerDialback && !strings.HasPrefix(w.Text, "partner legacy accepts dialback: its identity rests on DNS (legacy.example.net)") &&
				!strings.HasPrefix(w.Text, "partner old accepts dialback: its identity rests on DNS (old.example.net, muc.old.example.net)") {
				t.Errorf("%s: %q does not name the partner and its domains", tc.name, w.Text)
			}
		}
	}
	// The default configuration (localhost, archive on, nothing else).
	got := codes(Posture(config.Default()))
	want := []string{WarnAuditStderrOnly, WarnCheckpointsLocal, WarnNoOfficerKeys, WarnNoRetention, WarnNoWitness}
	if !slices.Equal(got, want) {
		t.Errorf("default configuration: %v, want %v", got, want)
	}
}
