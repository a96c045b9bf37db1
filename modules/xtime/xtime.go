// Package xtime implements XEP-0202 Entity Time for the server's domains.
// The server answers in UTC.
//
// It registers the module "time".
package xtime

import (
	"context"
	"time"

	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/stanza"
)

// NS is the XEP-0202 namespace.
const NS = "urn:xmpp:time"

func init() {
	module.Register(module.Info{
		Name: "time",
		New:  func(*module.Host, any) (any, error) { return New(time.Now), nil },
	})
}

// Module answers urn:xmpp:time.
type Module struct {
	now func() time.Time
}

var (
	_ module.IQHandlers = (*Module)(nil)
	_ module.Features   = (*Module)(nil)
)

// New builds the module with a clock.
func New(now func() time.Time) *Module { return &Module{now: now} }

// IQRoutes implements module.IQHandlers.
func (m *Module) IQRoutes() []module.IQRoute {
	return []module.IQRoute{{Space: NS, Local: "time", Scope: module.ScopeServer, Handle: m.handle}}
}

// ServerFeatures implements module.Features.
func (m *Module) ServerFeatures() []string { return []string{NS} }

// AccountFeatures implements module.Features.
func (m *Module) AccountFeatures() []string { return nil }

func (m *Module) handle(_ context.Context, _ module.Session, iq *stanza.Stanza) (*element.Element, error) {
	if iq.Type != "get" {
		return nil, stanza.Err(stanza.Modify, stanza.BadRequest, "entity time is queried with an iq get")
	}
	// XEP-0082 DateTime in UTC, whole seconds.
	utc := m.now().UTC().Format("2006-01-02T15:04:05Z")
	return element.New(NS, "time").Append(
		element.New(NS, "tzo").SetText("+00:00"),
		element.New(NS, "utc").SetText(utc),
	), nil
}
