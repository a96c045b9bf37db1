package extdisco

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/module/moduletest"
	"github.com/palisade-im/palisade/server/stanza"
)

const secret = "s3cret-shared-with-coturn"

func testConfig() Config {
	c := *DefaultConfig()
	c.Secret = secret
	c.TTL = config.Duration(2 * time.Hour)
	c.Services = []Service{
		{Type: "stun", Host: "stun.example.com", Port: 3478, Transport: "udp"},
		{Type: "turn", Host: "turn.example.com", Port: 3478, Transport: "udp", Restricted: true},
		{Type: "turns", Host: "turn.example.com", Port: 5349, Transport: "tcp", Restricted: true, Name: "TURN over TLS"},
	}
	return c
}

func newModule(t *testing.T, cfg Config, now time.Time) *Module {
	t.Helper()
	h, _ := moduletest.NewHost(t, nil)
	m, err := New(h, cfg)
	if err != nil {
		t.Fatal(err)
	}
	m.now = func() time.Time { return now }
	return m
}

// checkCredentials recomputes the coturn REST API password and checks
// the username's expiry and owner.
func checkCredentials(t *testing.T, s *element.Element, user string, wantExpiry time.Time) {
	t.Helper()
	name, pass := s.Attr("username"), s.Attr("password")
	exp, who, ok := strings.Cut(name, ":")
	if !ok || who != user {
		t.Fatalf("username %q: want EXPIRY:%s", name, user)
	}
	n, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || n != wantExpiry.Unix() {
		t.Errorf("username expiry %q, want %d", exp, wantExpiry.Unix())
	}
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(name))
	if want := base64.StdEncoding.EncodeToString(mac.Sum(nil)); pass != want {
		t.Errorf("password %q, want HMAC-SHA1 %q", pass, want)
	}
	if got, err := time.Parse(time.RFC3339, s.Attr("expires")); err != nil || !got.Equal(wantExpiry) {
		t.Errorf("expires %q, want %s", s.Attr("expires"), wantExpiry.UTC().Format(time.RFC3339))
	}
	if s.Attr("restricted") != "1" {
		t.Errorf("restricted %q", s.Attr("restricted"))
	}
}

func TestServices(t *testing.T) {
	now := time.Date(2026, 12, 7, 15, 0, 0, 0, time.UTC)
	m := newModule(t, testConfig(), now)
	if f := m.ServerFeatures(); len(f) != 1 || f[0] != NS {
		t.Errorf("features %v", f)
	}
	res, err := moduletest.Request(t, m, "alice@"+moduletest.Domain+"/dino", module.ScopeServer,
		`<iq type='get' to='example.com' id='s1'><services xmlns='urn:xmpp:extdisco:2'/></iq>`)
	if err != nil {
		t.Fatal(err)
	}
	list := res.Elements()
	if len(list) != 3 {
		t.Fatalf("services: %s", moduletest.String(res))
	}
	stun := list[0]
	if stun.Attr("type") != "stun" || stun.Attr("host") != "stun.example.com" || stun.Attr("port") != "3478" ||
		stun.Attr("transport") != "udp" || stun.HasAttr("username") || stun.HasAttr("password") {
		t.Errorf("stun: %s", moduletest.String(stun))
	}
	checkCredentials(t, list[1], "alice@"+moduletest.Domain, now.Add(2*time.Hour))
	if list[2].Attr("name") != "TURN over TLS" || list[2].Attr("transport") != "tcp" {
		t.Errorf("turns: %s", moduletest.String(list[2]))
	}

	// Type filter (XEP-0215 section 3.2).
	res, err = moduletest.Request(t, m, "bob@"+moduletest.Domain+"/x", module.ScopeServer,
		`<iq type='get' to='example.com' id='s2'><services xmlns='urn:xmpp:extdisco:2' type='turn'/></iq>`)
	if err != nil {
		t.Fatal(err)
	}
	if l := res.Elements(); len(l) != 1 || l[0].Attr("type") != "turn" {
		t.Fatalf("turn only: %s", moduletest.String(res))
	} else {
		checkCredentials(t, l[0], "bob@"+moduletest.Domain, now.Add(2*time.Hour))
	}
}

func TestCredentials(t *testing.T) {
	now := time.Date(2026, 12, 7, 15, 0, 0, 0, time.UTC)
	m := newModule(t, testConfig(), now)
	res, err := moduletest.Request(t, m, "alice@"+moduletest.Domain+"/dino", module.ScopeServer,
		`<iq type='get' to='example.com' id='c1'><credentials xmlns='urn:xmpp:extdisco:2'><service type='turns' host='turn.example.com'/></credentials></iq>`)
	if err != nil {
		t.Fatal(err)
	}
	s := res.Child(NS, "service")
	if res.Local != "credentials" || s == nil || s.Attr("port") != "5349" {
		t.Fatalf("credentials: %s", moduletest.String(res))
	}
	checkCredentials(t, s, "alice@"+moduletest.Domain, now.Add(2*time.Hour))

	// Later requests get later expiries: credentials are temporary.
	m.now = func() time.Time { return now.Add(time.Hour) }
	res, err = moduletest.Request(t, m, "alice@"+moduletest.Domain+"/dino", module.ScopeServer,
		`<iq type='get' to='example.com' id='c2'><credentials xmlns='urn:xmpp:extdisco:2'><service type='turn' host='turn.example.com' port='3478'/></credentials></iq>`)
	if err != nil {
		t.Fatal(err)
	}
	checkCredentials(t, res.Child(NS, "service"), "alice@"+moduletest.Domain, now.Add(3*time.Hour))

	for iq, cond := range map[string]stanza.Condition{
		`<iq type='get' to='example.com' id='c3'><credentials xmlns='urn:xmpp:extdisco:2'><service type='turn' host='other.example.com'/></credentials></iq>`: stanza.ItemNotFound,
		`<iq type='get' to='example.com' id='c4'><credentials xmlns='urn:xmpp:extdisco:2'/></iq>`:                                                             stanza.BadRequest,
		`<iq type='set' to='example.com' id='c5'><credentials xmlns='urn:xmpp:extdisco:2'><service type='turn' host='turn.example.com'/></credentials></iq>`:  stanza.BadRequest,
	} {
		_, err := moduletest.Request(t, m, "alice@"+moduletest.Domain+"/dino", module.ScopeServer, iq)
		if got := moduletest.Condition(err); got != cond {
			t.Errorf("%s: got %v (%v), want %s", iq, got, err, cond)
		}
	}
}

func TestRemoteRequesterRefused(t *testing.T) {
	m := newModule(t, testConfig(), time.Now())
	for _, from := range []string{"mallory@elsewhere.example/x", "elsewhere.example"} {
		_, err := moduletest.Request(t, m, from, module.ScopeServer,
			`<iq type='get' to='example.com' id='r1'><services xmlns='urn:xmpp:extdisco:2'/></iq>`)
		if got := moduletest.Condition(err); got != stanza.Forbidden {
			t.Errorf("%s: got %v, want forbidden", from, err)
		}
	}
}

func TestUnconfigured(t *testing.T) {
	m := newModule(t, *DefaultConfig(), time.Now())
	if len(m.IQRoutes()) != 0 || len(m.ServerFeatures()) != 0 {
		t.Errorf("unconfigured module offers %v %v", m.IQRoutes(), m.ServerFeatures())
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) { c.Services[0].Type = "xmpp" }, "type must be"},
		{func(c *Config) { c.Services[0].Host = "" }, "host is required"},
		{func(c *Config) { c.Services[0].Host = "bad host" }, "not a host name"},
		{func(c *Config) { c.Services[0].Port = 0 }, "port must be"},
		{func(c *Config) { c.Services[0].Transport = "sctp" }, "transport must be"},
		{func(c *Config) { c.Secret = "" }, "secret is required"},
		{func(c *Config) { c.TTL = config.Duration(time.Second) }, "ttl must be"},
	} {
		c := testConfig()
		c.Services = append([]Service(nil), c.Services...)
		tc.mod(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want %q", err, tc.want)
		}
	}
	if c := testConfig(); c.Validate() != nil {
		err := c.Validate()
		t.Errorf("valid config: %v", err)
	}
}
