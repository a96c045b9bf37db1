package config

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
	"reflect"
	"strings"
	"testing"
	"time"
)

// writeCA writes a PEM file holding one self-signed CA certificate and
// returns its path.
func writeCA(t *testing.T, dir string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const pinA = "sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=" // SHA-256 of ""

// TestFederationValid checks that a complete, correct [federation] with
// partners is accepted and decoded.
func TestFederationValid(t *testing.T) {
	ca := writeCA(t, t.TempDir())
	doc := `[server]
domains = ["corp.example"]
[listen]
s2s = "127.0.0.1:5269"
s2s_direct_tls = "127.0.0.1:5270"
[federation]
dialback_secret = "0123456789abcdef"
connect_timeout = "5m"
idle_timeout = "10s"
retry_min = "1s"
retry_max = "1s"
queue_stanzas = 100000
queue_bytes = 1024
max_inbound_streams = 1
rate = 10.0
burst = 20
[[federation.partner]]
name = "partner-a"
domains = ["partner-a.example", "muc.partner-a.example"]
ca_file = "` + ca + `"
spki_pins = ["` + pinA + `"]
endpoints = ["xmpp.partner-a.example:5269", "[::1]:5270"]
direct_tls = true
kinds = ["message", "presence"]
rate = 1.5
[[federation.partner]]
name = "b.2_x"
domains = ["b.example"]
dialback = true
`
	cfg, err := Parse("f.toml", []byte(doc), nil)
	if err != nil {
		t.Fatal(err)
	}
	f := cfg.Federation
	if len(f.Partners) != 2 || f.Partner("muc.partner-a.example").Name != "partner-a" || f.Partner("b.example").Name != "b.2_x" ||
		f.Partner("corp.example") != nil || !f.Partners[0].Allows(PartnerPresence) || f.Partners[0].Allows(PartnerIQ) ||
		!f.Partners[1].Allows(PartnerIQ) || f.Partners[0].CAFile != ca || f.Rate != 10 || f.Burst != 20 {
		t.Errorf("federation = %+v", f)
	}
}

// TestFederationErrors checks every problem of [federation] and
// [[federation.partner]], each at its key's line.
func TestFederationErrors(t *testing.T) {
	dir := t.TempDir()
	ca := writeCA(t, dir)
	notPEM := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(notPEM, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badCert := filepath.Join(dir, "bad.pem")
	if err := os.WriteFile(badCert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("nope")}), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	tests := []struct {
		name string
		doc  string
		want []string
	}{
		{
			name: "federation section",
			doc: "[federation]\ndialback_secret = \"short\"\nconnect_timeout = \"500ms\"\nidle_timeout = \"9s\"\n" +
				"retry_min = \"10s\"\nretry_max = \"5s\"\nqueue_stanzas = 0\nqueue_bytes = 1023\nmax_inbound_streams = 100001\n" +
				"rate = -1.0\nburst = -1\n",
			want: []string{
				`f.toml:2:1: federation.dialback_secret: must be "" (generated) or at least 16 characters, got 5`,
				`f.toml:3:1: federation.connect_timeout: must be between 1s and 5m0s, got 500ms`,
				`f.toml:4:1: federation.idle_timeout: must be at least 10s, got 9s`,
				`f.toml:6:1: federation.retry_max: must be at least federation.retry_min (10s), got 5s`,
				`f.toml:7:1: federation.queue_stanzas: must be between 1 and 100000, got 0`,
				`f.toml:8:1: federation.queue_bytes: must be between 1024 and 67108864, got 1023`,
				`f.toml:9:1: federation.max_inbound_streams: must be between 1 and 100000, got 100001`,
				`f.toml:10:1: federation.rate: must be 0 (no limit) or more stanzas per second, got -1`,
				`f.toml:11:1: federation.burst: must be 0 or more, got -1`,
			},
		},
		{
			name: "upper bounds and zero durations",
			doc:  "[federation]\nconnect_timeout = \"6m\"\nretry_min = \"0s\"\nqueue_bytes = 67108865\nrate = 5.0\nqueue_stanzas = 100001\n",
			want: []string{
				`f.toml:1:2: federation.burst: must be at least 1 when rate is above 0, got 0`,
				`f.toml:2:1: federation.connect_timeout: must be between 1s and 5m0s, got 6m0s`,
				`f.toml:3:1: federation.retry_min: must be a positive duration, got 0s`,
				`f.toml:4:1: federation.queue_bytes: must be between 1024 and 67108864, got 67108865`,
				`f.toml:6:1: federation.queue_stanzas: must be between 1 and 100000, got 100001`,
			},
		},
		{
			name: "names",
			doc: "[[federation.partner]]\ndomains = [\"a.example\"]\n" +
				"[[federation.partner]]\nname = \"Partner A\"\ndomains = [\"b.example\"]\n" +
				"[[federation.partner]]\nname = \"p\"\ndomains = [\"c.example\"]\n" +
				"[[federation.partner]]\nname = \"p\"\ndomains = [\"d.example\"]\n",
			want: []string{
				`f.toml:1:3: federation.partner[0].name: every partner needs a name (access rules and audit events use it)`,
				`f.toml:4:1: federation.partner[1].name: "Partner A" may only hold a-z, 0-9, ".", "_" and "-"`,
				`f.toml:10:1: federation.partner[3].name: duplicate partner name "p"`,
			},
		},
		{
			name: "domains",
			doc: "[server]\ndomains = [\"corp.example\"]\n" +
				"[[federation.partner]]\nname = \"a\"\n" +
				"[[federation.partner]]\nname = \"b\"\ndomains = [\"B.example\", \"b.example\", \"b.example\", \"corp.example\", \"x..y\"]\n" +
				"[[federation.partner]]\nname = \"c\"\ndomains = [\"c.example\",\n  \"b.example\"]\n",
			want: []string{
				`f.toml:3:3: federation.partner[0].domains: must list at least one domain`,
				`f.toml:7:12: federation.partner[1].domains: "B.example" is not a normalized domain (write "b.example")`,
				`f.toml:7:38: federation.partner[1].domains: duplicate domain "b.example"`,
				`f.toml:7:51: federation.partner[1].domains: "corp.example" is served by this server (server.domains), it cannot be a partner's`,
				`f.toml:7:67: federation.partner[1].domains: "x..y" is not a valid domain: empty label`,
				`f.toml:11:3: federation.partner[2].domains: domain "b.example" is already federation.partner[1] ("b")`,
			},
		},
		{
			name: "authentication",
			doc: "[[federation.partner]]\nname = \"a\"\ndomains = [\"a.example\"]\nca_file = \"" + missing + "\"\n" +
				"spki_pins = [\"" + pinA + "\", \"sha1/AAAA\", \"sha256/AAAA\", \"" + pinA + "\"]\n" +
				"[[federation.partner]]\nname = \"b\"\ndomains = [\"b.example\"]\nca_file = \"" + notPEM + "\"\n" +
				"[[federation.partner]]\nname = \"c\"\ndomains = [\"c.example\"]\nca_file = \"" + badCert + "\"\n" +
				"[[federation.partner]]\nname = \"d\"\ndomains = [\"d.example\"]\nca_file = \"" + ca + "\"\n",
			want: []string{
				`f.toml:4:1: federation.partner[0].ca_file: cannot read "` + missing + `": no such file or directory`,
				`f.toml:5:69: federation.partner[0].spki_pins: "sha1/AAAA" does not start with "sha256/"`,
				`f.toml:5:82: federation.partner[0].spki_pins: "sha256/AAAA" is not "sha256/" and the base64 of 32 bytes (the SHA-256 of a SubjectPublicKeyInfo)`,
				`f.toml:5:97: federation.partner[0].spki_pins: duplicate pin "` + pinA + `"`,
				`f.toml:9:1: federation.partner[1].ca_file: "` + notPEM + `" holds no PEM certificate`,
				`f.toml:13:1: federation.partner[2].ca_file: "` + badCert + `": certificate 1 does not parse: x509: malformed certificate`,
			},
		},
		{
			name: "endpoints and kinds",
			doc: "[[federation.partner]]\nname = \"a\"\ndomains = [\"a.example\"]\n" +
				"endpoints = [\"h.example:5269\", \"h.example\", \"h.example:0\", \":5269\", \"h.example:5269\"]\n" +
				"kinds = [\"message\", \"files\", \"message\"]\n" +
				"[[federation.partner]]\nname = \"b\"\ndomains = [\"b.example\"]\ndirect_tls = true\nkinds = []\n",
			want: []string{
				`f.toml:4:32: federation.partner[0].endpoints: "h.example" is not a valid host:port address: address h.example: missing port in address`,
				`f.toml:4:45: federation.partner[0].endpoints: "h.example:0": port must be a number between 1 and 65535`,
				`f.toml:4:60: federation.partner[0].endpoints: ":5269" names no host`,
				`f.toml:4:69: federation.partner[0].endpoints: duplicate endpoint "h.example:5269"`,
				`f.toml:5:21: federation.partner[0].kinds: unknown kind "files" (known: message, presence, iq)`,
				`f.toml:5:30: federation.partner[0].kinds: duplicate kind "message"`,
				`f.toml:9:1: federation.partner[1].direct_tls: only applies with endpoints (without them, _xmpps-server SRV records say where direct TLS is)`,
				`f.toml:10:1: federation.partner[1].kinds: must list at least one of message, presence, iq (leave it out for all)`,
			},
		},
		{
			name: "partner rates",
			doc: "[[federation.partner]]\nname = \"a\"\ndomains = [\"a.example\"]\nrate = 2.0\n" +
				"[[federation.partner]]\nname = \"b\"\ndomains = [\"b.example\"]\nrate = -0.5\nburst = -2\n" +
				"[[federation.partner]]\nname = \"c\"\ndomains = [\"c.example\"]\nrate = inf\n",
			want: []string{
				`f.toml:1:3: federation.partner[0].burst: must be at least 1 when rate is above 0, got 0`,
				`f.toml:8:1: federation.partner[1].rate: must be 0 (no limit) or more stanzas per second, got -0.5`,
				`f.toml:9:1: federation.partner[1].burst: must be 0 or more, got -2`,
				`f.toml:13:1: federation.partner[2].rate: must be a finite number of stanzas per second, got +Inf`,
			},
		},
		{
			name: "s2s listeners",
			doc:  "[listen]\nadmin = \"127.0.0.1:5281\"\ns2s = \"127.0.0.1:5281\"\ns2s_direct_tls = \"127.0.0.1:99999\"\n",
			want: []string{
				`f.toml:3:1: listen.s2s: address "127.0.0.1:5281" is already used by listen.admin`,
				`f.toml:4:1: listen.s2s_direct_tls: "127.0.0.1:99999": port must be a number between 1 and 65535`,
			},
		},
		{
			name: "s2s listeners share",
			doc:  "[listen]\ns2s = \"127.0.0.1:5269\"\ns2s_direct_tls = \"127.0.0.1:5269\"\n",
			want: []string{`f.toml:3:1: listen.s2s_direct_tls: address "127.0.0.1:5269" is already used by listen.s2s`},
		},
		{
			name: "wrong types",
			doc:  "[[federation.partner]]\nname = \"a\"\ndomains = \"a.example\"\nbogus = 1\n",
			want: []string{
				`f.toml:3:11: federation.partner[0].domains: expected an array, got string`,
				`f.toml:4:1: federation.partner[0].bogus: unknown key`,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("f.toml", []byte(tc.doc), nil)
			if err == nil {
				t.Fatal("accepted")
			}
			got := strings.Split(err.Error(), "\n")
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// TestFederateRight checks access federate: true, false or a list of
// declared partner names, in [access] default and [[access.rule]]; any
// other value is an error at the key.
func TestFederateRight(t *testing.T) {
	partners := "[[federation.partner]]\nname = \"partner-a\"\ndomains = [\"a.example\"]\n" +
		"[[federation.partner]]\nname = \"partner-b\"\ndomains = [\"b.example\"]\n"
	doc := partners + "[groups]\nsales = \"\"\nstaff = \"\"\nops = \"\"\n" +
		"[access]\ndefault = { federate = [\"partner-b\"] }\n" +
		"[[access.rule]]\ngroup = \"sales\"\nfederate = [\"partner-a\",\n  \"partner-b\"]\n" +
		"[[access.rule]]\ngroup = \"staff\"\nfederate = false\n" +
		"[[access.rule]]\ngroup = \"ops\"\nfederate = true\n" +
		"[[access.rule]]\njid = \"x@corp.example\"\n"
	cfg, err := Parse("f.toml", []byte(doc), nil)
	if err != nil {
		t.Fatal(err)
	}
	d, rs := cfg.Access.Default, cfg.Access.Rules
	for _, c := range []struct {
		name        string
		r           Rights
		may, a, b   bool
		describe    string
		writtenForm string
	}{
		{"default", d, true, false, true, "login, federation with partner-b", `["partner-b"]`},
		{"sales", rs[0].Rights, true, true, true, "login, federation with partner-a, partner-b", `["partner-a", "partner-b"]`},
		{"staff", rs[1].Rights, false, false, false, "login, no federation", "false"},
		{"ops", rs[2].Rights, true, true, true, "login", "true"},
		{"unset", rs[3].Rights, true, true, true, "login", "true"},
	} {
		if c.r.MayFederate() != c.may || c.r.MayFederateWith("partner-a") != c.a || c.r.MayFederateWith("partner-b") != c.b ||
			c.r.Describe() != c.describe || c.r.Federate.String() != c.writtenForm {
			t.Errorf("%s: MayFederate %v, with a %v, with b %v, Describe %q, String %s; want %v %v %v %q %s", c.name,
				c.r.MayFederate(), c.r.MayFederateWith("partner-a"), c.r.MayFederateWith("partner-b"), c.r.Describe(), c.r.Federate,
				c.may, c.a, c.b, c.describe, c.writtenForm)
		}
	}
	if !reflect.DeepEqual(rs[2].Federate, FederateAll()) || !reflect.DeepEqual(rs[1].Federate, FederateNone()) ||
		!reflect.DeepEqual(rs[0].Federate, FederateWith("partner-a", "partner-b")) {
		t.Errorf("federate values = %#v %#v %#v", rs[0].Federate, rs[1].Federate, rs[2].Federate)
	}

	bad := partners + "[groups]\nsales = \"\"\n" +
		"[access]\ndefault = { login = true, federate = \"partner-a\" }\n" + // line 10
		"[[access.rule]]\ngroup = \"sales\"\nfederate = [\"partner-a\", \"partner-c\", \"partner-a\"]\n" + // line 13
		"[[access.rule]]\ngroup = \"sales\"\nfederate = 1\n" + // line 16
		"[[access.rule]]\ngroup = \"sales\"\nfederate = [\"partner-a\", 2]\n" + // line 19
		"[[access.rule]]\ngroup = \"sales\"\nfederate = { partner = \"a\" }\n" // line 22
	_, err = Parse("f.toml", []byte(bad), nil)
	if err == nil {
		t.Fatal("accepted")
	}
	want := []string{
		`f.toml:10:27: access.default.federate: expected true, false or an array of partner names, got string`,
		`f.toml:13:26: access.rule[0].federate: unknown partner "partner-c" (declare it in [[federation.partner]])`,
		`f.toml:13:39: access.rule[0].federate: duplicate partner "partner-a"`,
		`f.toml:16:1: access.rule[1].federate: expected true, false or an array of partner names, got integer`,
		`f.toml:19:1: access.rule[2].federate: expected true, false or an array of partner names, got integer at element 1`,
		`f.toml:22:1: access.rule[3].federate: expected true, false or an array of partner names, got table`,
	}
	if got := err.Error(); got != strings.Join(want, "\n") {
		t.Errorf("errors:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
	// A table is no federate value either.
	_, err = Parse("f.toml", []byte("[access]\n[access.default.federate]\npartner = \"a\"\n"), nil)
	if err == nil || err.Error() != `f.toml:2:17: access.default.federate: expected true, false or an array of partner names, got table` {
		t.Errorf("err = %v", err)
	}
	// Without any partner, a name is unknown.
	_, err = Parse("f.toml", []byte("[access]\ndefault = { federate = [\"partner-a\"] }\n"), nil)
	if err == nil || err.Error() != `f.toml:2:25: access.default.federate: unknown partner "partner-a" (declare it in [[federation.partner]])` {
		t.Errorf("err = %v", err)
	}
}
