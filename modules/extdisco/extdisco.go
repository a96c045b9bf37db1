// Package extdisco implements XEP-0215 External Service Discovery
// (urn:xmpp:extdisco:2) on the server's domains: the STUN and TURN
// servers configured in [modules.extdisco], for the local accounts that
// ask (Dino does at every login, for calls).
//
// A restricted service gets temporary credentials in the form coturn's
// REST API expects (use-auth-secret / static-auth-secret): the username
// is "EXPIRY:bare-jid" with EXPIRY the Unix time at which it stops
// working, the password base64(HMAC-SHA1(secret, username)), and the
// service carries the expires attribute.
//
// It registers the module "extdisco". Without services nothing is
// advertised and requests get service-unavailable.
package extdisco

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/stanza"
	"go.uber.org/zap"
	"mellium.im/xmpp/jid"
)

// NS is the XEP-0215 namespace.
const NS = "urn:xmpp:extdisco:2"

// Service is one configured external service.
type Service struct {
	// Type is "stun", "turn" or "turns".
	Type string `toml:"type"`
	// Host is the service's host name or IP address.
	Host string `toml:"host"`
	// Port is its port.
	Port int `toml:"port"`
	// Transport is "udp" or "tcp"; "" leaves it unsaid.
	Transport string `toml:"transport"`
	// Restricted services need credentials, made from Config.Secret.
	Restricted bool `toml:"restricted"`
	// Name is a human-readable name; optional.
	Name string `toml:"name"`
}

// Config is the [modules.extdisco] section.
type Config struct {
	// Services are the external services offered; none turns the module
	// off.
	Services []Service `toml:"services"`
	// Secret is the TURN server's shared secret (coturn
	// static-auth-secret); required when a service is restricted.
	Secret string `toml:"secret"`
	// TTL is how long temporary credentials stay valid.
	TTL config.Duration `toml:"ttl"`
}

// DefaultConfig returns the defaults: no services, credentials valid
// for a day.
func DefaultConfig() *Config {
	return &Config{Services: []Service{}, TTL: config.Duration(24 * time.Hour)}
}

// Validate checks every service.
func (c *Config) Validate() error {
	var errs []error
	restricted := false
	for i, s := range c.Services {
		switch s.Type {
		case "stun", "turn", "turns":
		default:
			errs = append(errs, fmt.Errorf("services[%d]: type must be \"stun\", \"turn\" or \"turns\", not %q", i, s.Type))
		}
		if s.Host == "" {
			errs = append(errs, fmt.Errorf("services[%d]: host is required", i))
		} else if net.ParseIP(s.Host) == nil {
			if _, err := jid.New("", s.Host, ""); err != nil {
				errs = append(errs, fmt.Errorf("services[%d]: %q is not a host name or IP address", i, s.Host))
			}
		}
		if s.Port < 1 || s.Port > 65535 {
			errs = append(errs, fmt.Errorf("services[%d]: port must be between 1 and 65535", i))
		}
		switch s.Transport {
		case "", "udp", "tcp":
		default:
			errs = append(errs, fmt.Errorf("services[%d]: transport must be \"udp\" or \"tcp\", not %q", i, s.Transport))
		}
		restricted = restricted || s.Restricted
	}
	if restricted && c.Secret == "" {
		errs = append(errs, errors.New("secret is required when a service is restricted"))
	}
	if c.TTL < config.Duration(time.Minute) {
		errs = append(errs, errors.New("ttl must be at least 1m"))
	}
	return errors.Join(errs...)
}

func init() {
	module.RegisterConfigured("extdisco", DefaultConfig, func(h *module.Host, c Config) (any, error) {
		return New(h, c)
	})
}

// Module answers urn:xmpp:extdisco:2 requests.
type Module struct {
	router module.Router
	audit  *zap.Logger
	cfg    Config
	now    func() time.Time
}

var (
	_ module.IQHandlers = (*Module)(nil)
	_ module.Features   = (*Module)(nil)
)

// New builds the module.
func New(h *module.Host, cfg Config) (*Module, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("extdisco: %w", err)
	}
	if h == nil || h.Router == nil {
		return nil, errors.New("extdisco: the host needs a router")
	}
	audit := h.Audit
	if audit == nil {
		audit = zap.NewNop()
	}
	return &Module{router: h.Router, audit: audit, cfg: cfg, now: time.Now}, nil
}

// IQRoutes serves <services/> and <credentials/> on the served domains;
// none without services, so the core answers service-unavailable.
func (m *Module) IQRoutes() []module.IQRoute {
	if len(m.cfg.Services) == 0 {
		return nil
	}
	return []module.IQRoute{
		{Space: NS, Local: "services", Scope: module.ScopeServer, Handle: m.handleServices},
		{Space: NS, Local: "credentials", Scope: module.ScopeServer, Handle: m.handleCredentials},
	}
}

// ServerFeatures advertises XEP-0215 when services are configured.
func (m *Module) ServerFeatures() []string {
	if len(m.cfg.Services) == 0 {
		return nil
	}
	return []string{NS}
}

// AccountFeatures returns none.
func (m *Module) AccountFeatures() []string { return nil }

// allowed checks that the requester is a local account: services and
// credentials are for the server's own users. A refusal is audited.
func (m *Module) allowed(iq *stanza.Stanza) error {
	if iq.Type != "get" {
		return stanza.Err(stanza.Modify, stanza.BadRequest, "external services are queried with an iq get")
	}
	from := iq.From
	if from.Localpart() != "" && m.router.IsLocal(from.Domainpart()) {
		return nil
	}
	m.audit.Info("extdisco_denied", zap.String("jid", from.String()), zap.String("reason", "not a local account"))
	return stanza.Err(stanza.Auth, stanza.Forbidden, "external services are offered to this server's accounts only")
}

// handleServices answers a service list, optionally of one type
// (XEP-0215 section 3.1 and 3.2).
func (m *Module) handleServices(_ context.Context, _ module.Session, iq *stanza.Stanza) (*element.Element, error) {
	if err := m.allowed(iq); err != nil {
		return nil, err
	}
	typ := iq.Payload().Attr("type")
	out := element.New(NS, "services")
	if typ != "" {
		out.SetAttr("type", typ)
	}
	now := m.now()
	for _, s := range m.cfg.Services {
		if typ == "" || s.Type == typ {
			out.Append(m.serviceElement(s, iq.From.Bare(), now))
		}
	}
	return out, nil
}

// handleCredentials answers the credentials of one service named by
// host and type, and port when given (XEP-0215 section 3.3).
func (m *Module) handleCredentials(_ context.Context, _ module.Session, iq *stanza.Stanza) (*element.Element, error) {
	if err := m.allowed(iq); err != nil {
		return nil, err
	}
	req := iq.Payload().Child(NS, "service")
	if req == nil || req.Attr("host") == "" {
		return nil, stanza.Err(stanza.Modify, stanza.BadRequest, "name the service with <service host='...' type='...'/>")
	}
	port := 0
	if v := req.Attr("port"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return nil, stanza.Err(stanza.Modify, stanza.BadRequest, "port must be a number")
		}
		port = n
	}
	now := m.now()
	for _, s := range m.cfg.Services {
		if s.Host != req.Attr("host") || (req.Attr("type") != "" && s.Type != req.Attr("type")) || (port != 0 && s.Port != port) {
			continue
		}
		return element.New(NS, "credentials").Append(m.serviceElement(s, iq.From.Bare(), now)), nil
	}
	return nil, stanza.Err(stanza.Cancel, stanza.ItemNotFound, "no such external service")
}

// serviceElement renders s for user, with temporary credentials when
// it is restricted.
func (m *Module) serviceElement(s Service, user jid.JID, now time.Time) *element.Element {
	el := element.New(NS, "service", element.A("type", s.Type), element.A("host", s.Host),
		element.A("port", strconv.Itoa(s.Port)))
	if s.Transport != "" {
		el.SetAttr("transport", s.Transport)
	}
	if s.Name != "" {
		el.SetAttr("name", s.Name)
	}
	if s.Restricted {
		expires := now.Add(time.Duration(m.cfg.TTL)).Truncate(time.Second)
		user, pass := Credentials(m.cfg.Secret, user, expires)
		el.SetAttr("restricted", "1")
		el.SetAttr("username", user)
		el.SetAttr("password", pass)
		el.SetAttr("expires", expires.UTC().Format(time.RFC3339))
	}
	return el
}

// Credentials returns the temporary TURN credentials of user valid until
// expires, as coturn's REST API (use-auth-secret) checks them.
func Credentials(secret string, user jid.JID, expires time.Time) (username, password string) {
	username = strconv.FormatInt(expires.Unix(), 10) + ":" + user.Bare().String()
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(username))
	return username, base64.StdEncoding.EncodeToString(mac.Sum(nil))
}
