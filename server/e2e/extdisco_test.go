package e2e

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/palisade-im/palisade/modules/extdisco"
	"github.com/palisade-im/palisade/server/config"
)

const nsExtdisco = "urn:xmpp:extdisco:2"

func hasServerFeature(c *pc, f string) bool {
	c.t.Helper()
	r := c.ok("get", domain, "<query xmlns='"+nsDiscoI+"'/>")
	for _, n := range r.Child(nsDiscoI, "query").Nodes {
		if n.Is(nsDiscoI, "feature") && n.A("var") == f {
			return true
		}
	}
	return false
}

// Dino asks for external services at every login: without configuration
// it gets service-unavailable and no feature is advertised.
func TestExtdiscoUnconfigured(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	alice := pepLogin(t, e, "alice", "dino")
	if hasServerFeature(alice, nsExtdisco) {
		t.Error("extdisco advertised without services")
	}
	alice.fails("get", domain, "<services xmlns='"+nsExtdisco+"'/>", "service-unavailable", "")
}

func TestExtdiscoConfigured(t *testing.T) {
	t.Parallel()
	const secret = "coturn-secret"
	e := newEnv(t, func(c *config.Config) {
		cfg := extdisco.DefaultConfig()
		cfg.Secret = secret
		cfg.Services = []extdisco.Service{
			{Type: "stun", Host: "127.0.0.1", Port: 3478, Transport: "udp"},
			{Type: "turn", Host: "turn.localhost", Port: 3478, Transport: "udp", Restricted: true},
		}
		c.Modules["extdisco"] = config.Section{Name: "extdisco", Value: cfg}
	})
	alice := pepLogin(t, e, "alice", "dino")
	if !hasServerFeature(alice, nsExtdisco) {
		t.Error("extdisco not advertised")
	}
	r := alice.ok("get", domain, "<services xmlns='"+nsExtdisco+"' type='turn'/>")
	s := r.Child(nsExtdisco, "services").Child(nsExtdisco, "service")
	if s == nil || s.A("host") != "turn.localhost" || s.A("restricted") != "1" {
		t.Fatalf("services: %s", r)
	}
	user := s.A("username")
	if !strings.HasSuffix(user, ":alice@localhost") || s.A("expires") == "" {
		t.Errorf("username %q expires %q", user, s.A("expires"))
	}
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(user))
	if s.A("password") != base64.StdEncoding.EncodeToString(mac.Sum(nil)) {
		t.Errorf("password %q is not the coturn REST API HMAC", s.A("password"))
	}
}
