package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/palisade-im/palisade/conformance/loadgen"
	_ "github.com/palisade-im/palisade/modules/all"
	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/server/module"
)

// TestFederationConfigs: the two generated configurations pass Palisade's
// own strict parsing and validation (what check-config runs), each names
// the other as its only partner with the harness's CA and the other's s2s
// address pinned, and each certificate verifies for its domain against
// that CA for both server and client use.
func TestFederationConfigs(t *testing.T) {
	for _, extra := range []string{archiveOn, archiveOff} {
		dir := t.TempDir()
		fed, err := newFederation(dir, "palisade", extra)
		if err != nil {
			t.Fatal(err)
		}
		if fed.a.ip != "127.0.0.1" || fed.b.ip != "127.0.0.2" {
			t.Fatalf("addresses %s and %s", fed.a.ip, fed.b.ip)
		}
		for _, pair := range [][2]*fedNode{{fed.a, fed.b}, {fed.b, fed.a}} {
			n, peer := pair[0], pair[1]
			data, err := os.ReadFile(n.configFile())
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Parse(n.configFile(), data, module.ConfigRegistry{})
			if err != nil {
				t.Fatalf("%s: %v\n%s", n.domain, err, data)
			}
			if !slices.Equal(cfg.Server.Domains, []string{n.domain}) {
				t.Errorf("%s: domains %v", n.domain, cfg.Server.Domains)
			}
			if cfg.Listen.C2S != n.Addr() || cfg.Listen.S2S != n.S2S() || !strings.HasPrefix(cfg.Listen.S2S, n.ip+":") {
				t.Errorf("%s: c2s %q s2s %q, want %q %q", n.domain, cfg.Listen.C2S, cfg.Listen.S2S, n.Addr(), n.S2S())
			}
			if cfg.TLS.CertFile != n.certFile || cfg.TLS.KeyFile != n.keyFile {
				t.Errorf("%s: tls %q %q", n.domain, cfg.TLS.CertFile, cfg.TLS.KeyFile)
			}
			if len(cfg.Federation.Partners) != 1 {
				t.Fatalf("%s: partners %+v", n.domain, cfg.Federation.Partners)
			}
			p := cfg.Federation.Partners[0]
			if !slices.Equal(p.Domains, []string{peer.domain}) || p.CAFile != fed.ca.file || !slices.Equal(p.Endpoints, []string{peer.S2S()}) {
				t.Errorf("%s: partner %+v, want %s at %s with %s", n.domain, p, peer.domain, peer.S2S(), fed.ca.file)
			}
			if cfg.Federation.QueueStanzas != fedQueueStanzas {
				t.Errorf("%s: queue_stanzas %d", n.domain, cfg.Federation.QueueStanzas)
			}
			if cfg.Archive.Enabled != (extra == archiveOn) {
				t.Errorf("%s: archive enabled %v with %q", n.domain, cfg.Archive.Enabled, extra)
			}
			kp, err := tls.LoadX509KeyPair(n.certFile, n.keyFile)
			if err != nil {
				t.Fatal(err)
			}
			leaf, err := x509.ParseCertificate(kp.Certificate[0])
			if err != nil {
				t.Fatal(err)
			}
			roots := x509.NewCertPool()
			roots.AddCert(fed.ca.cert)
			for _, eku := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
				if _, err := leaf.Verify(x509.VerifyOptions{DNSName: n.domain, Roots: roots, KeyUsages: []x509.ExtKeyUsage{eku}}); err != nil {
					t.Errorf("%s: certificate for %v: %v", n.domain, eku, err)
				}
			}
			if _, err := leaf.Verify(x509.VerifyOptions{DNSName: peer.domain, Roots: roots}); err == nil {
				t.Errorf("%s: certificate also verifies for %s", n.domain, peer.domain)
			}
		}
		if fed.a.S2S() == fed.b.S2S() || fed.a.Addr() == fed.a.S2S() {
			t.Errorf("addresses collide: %s %s %s", fed.a.Addr(), fed.a.S2S(), fed.b.S2S())
		}
	}
}

// TestReportS2STable: bench.md and bench.json carry the s2s table, with
// "-" for a latency without samples.
func TestReportS2STable(t *testing.T) {
	r := newReport(options{window: 16}, 20000)
	r.S2S = &s2sResult{
		Settings: map[string]string{"archive": "on"},
		Runs:     []loadgen.ThroughputResult{tput(10, 0, 12345, 3.5), {Pairs: 100, MsgsPerSec: 0}},
		Errors:   []string{"s2s pairs 100: boom"},
	}
	dir := t.TempDir()
	var out strings.Builder
	if err := r.write(&out, dir); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, "bench.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"### s2s", "| pairs | msgs/s | p50 ms | p99 ms |", "| 10 | 12345 | 0.00 | 3.50 |", "| 100 | 0.00 | - | - |", "error: s2s pairs 100: boom"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("bench.md lacks %q:\n%s", want, md)
		}
	}
	if !strings.Contains(out.String(), "s2s: pairs across a Palisade-Palisade federation") {
		t.Errorf("text report lacks the s2s table:\n%s", out.String())
	}
	b, err := os.ReadFile(filepath.Join(dir, "bench.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.S2S == nil || len(back.S2S.Runs) != 2 || back.S2S.Runs[0].MsgsPerSec != 12345 {
		t.Errorf("bench.json s2s: %+v", back.S2S)
	}
}
