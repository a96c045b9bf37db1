package config

import (
	"fmt"
	"net/url"
	"strings"
)

// ContactRole is one XEP-0157 role: its key in [server.contacts], the
// field of the serverinfo form that carries it, and its addresses.
type ContactRole struct {
	Key, Field string
	URIs       []string
}

// Roles returns the roles in the order of XEP-0157's registry.
func (c Contacts) Roles() []ContactRole {
	return []ContactRole{
		{"abuse", "abuse-addresses", c.Abuse},
		{"admin", "admin-addresses", c.Admin},
		{"feedback", "feedback-addresses", c.Feedback},
		{"sales", "sales-addresses", c.Sales},
		{"security", "security-addresses", c.Security},
		{"support", "support-addresses", c.Support},
	}
}

// checkContactURI accepts mailto:, xmpp: and https: URIs (XEP-0157
// section 3 names mailto: and xmpp:; https: points to a web form).
func checkContactURI(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q is not a URI: %v", s, err)
	}
	switch u.Scheme {
	case "mailto", "xmpp":
		if u.Opaque == "" && u.Path == "" {
			return fmt.Errorf("%q has no address after %s:", s, u.Scheme)
		}
		if u.Scheme == "mailto" && !strings.Contains(u.Opaque+u.Path, "@") {
			return fmt.Errorf("%q is not a mail address", s)
		}
	case "https":
		if u.Host == "" {
			return fmt.Errorf("%q has no host", s)
		}
	default:
		return fmt.Errorf("%q must be a mailto:, xmpp: or https: URI", s)
	}
	return nil
}

// validateDiscovery checks [server.contacts] and listen.websocket_url.
func (l *loader) validateDiscovery(c *Config) {
	for _, r := range c.Server.Contacts.Roles() {
		for i, u := range r.URIs {
			if err := checkContactURI(u); err != nil {
				l.invalid("server.contacts."+r.Key, i, "%v", err)
			}
		}
	}
	if v := c.Listen.WebSocketURL; v != "" {
		u, err := url.Parse(v)
		switch {
		case err != nil:
			l.invalid("listen.websocket_url", -1, "%q is not a URL: %v", v, err)
		case u.Scheme != "ws" && u.Scheme != "wss":
			l.invalid("listen.websocket_url", -1, "%q must be a ws:// or wss:// URL", v)
		case u.Host == "":
			l.invalid("listen.websocket_url", -1, "%q has no host", v)
		case c.Listen.WebSocket == "":
			l.invalid("listen.websocket_url", -1, "needs listen.websocket (the listener that serves /.well-known/host-meta)")
		}
	}
}
