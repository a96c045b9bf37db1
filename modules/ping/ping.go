// Package ping implements XEP-0199 XMPP Ping for the server's domains and,
// on behalf of an account, for its owner (a ping to one's own bare JID or
// with no 'to' is a ping of the server, XEP-0199 section 4.2).
//
// It registers the module "ping".
package ping

import (
	"context"

	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/stanza"
)

// NS is the XEP-0199 namespace.
const NS = "urn:xmpp:ping"

func init() {
	module.Register(module.Info{
		Name: "ping",
		New:  func(*module.Host, any) (any, error) { return New(), nil },
	})
}

// Module answers pings.
type Module struct{}

var (
	_ module.IQHandlers = (*Module)(nil)
	_ module.Features   = (*Module)(nil)
)

// New builds the module.
func New() *Module { return &Module{} }

// IQRoutes implements module.IQHandlers.
func (m *Module) IQRoutes() []module.IQRoute {
	return []module.IQRoute{
		{Space: NS, Local: "ping", Scope: module.ScopeServer, Handle: m.server},
		{Space: NS, Local: "ping", Scope: module.ScopeAccount, Handle: m.account},
	}
}

// ServerFeatures implements module.Features.
func (m *Module) ServerFeatures() []string { return []string{NS} }

// AccountFeatures implements module.Features: an account does not answer
// pings from others, so none is advertised.
func (m *Module) AccountFeatures() []string { return nil }

func (m *Module) server(_ context.Context, _ module.Session, iq *stanza.Stanza) (*element.Element, error) {
	if iq.Type != "get" {
		return nil, stanza.Err(stanza.Modify, stanza.BadRequest, "a ping is an iq get")
	}
	return nil, nil
}

// account answers the owner's ping to its own bare JID. Anyone else gets
// service-unavailable, the same answer as for an account that does not
// exist, so that pings neither harvest accounts nor leak presence
// (XEP-0199 section 7).
func (m *Module) account(ctx context.Context, sess module.Session, iq *stanza.Stanza) (*element.Element, error) {
	if !iq.From.Bare().Equal(iq.To.Bare()) {
		return nil, stanza.Err(stanza.Cancel, stanza.ServiceUnavailable, "")
	}
	return m.server(ctx, sess, iq)
}
