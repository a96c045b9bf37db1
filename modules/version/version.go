// Package version implements XEP-0092 Software Version for the server's
// domains: name "Palisade" and the build's version; the operating system is
// never disclosed.
//
// It registers the module "version". With hide = true the feature is not
// advertised and requests get service-unavailable.
package version

import (
	"context"

	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/stanza"
)

// NS is the XEP-0092 namespace.
const NS = "jabber:iq:version"

// Name is the software name reported.
const Name = "Palisade"

// Version is the build's version, set with
// -ldflags "-X github.com/palisade-im/palisade/modules/version.Version=...".
var Version = "dev"

// Config is the [modules.version] section.
type Config struct {
	// Hide stops advertising and answering jabber:iq:version.
	Hide bool `toml:"hide"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() *Config { return &Config{} }

func init() {
	module.RegisterConfigured("version", DefaultConfig, func(_ *module.Host, c Config) (any, error) {
		return New(c, Version), nil
	})
}

// Module answers jabber:iq:version.
type Module struct {
	hide    bool
	version string
}

var (
	_ module.IQHandlers = (*Module)(nil)
	_ module.Features   = (*Module)(nil)
)

// New builds the module reporting version.
func New(cfg Config, version string) *Module {
	return &Module{hide: cfg.Hide, version: version}
}

// IQRoutes implements module.IQHandlers. When hidden there is no route, so
// the core answers service-unavailable as for any unsupported namespace.
func (m *Module) IQRoutes() []module.IQRoute {
	if m.hide {
		return nil
	}
	return []module.IQRoute{{Space: NS, Local: "query", Scope: module.ScopeServer, Handle: m.handle}}
}

// ServerFeatures implements module.Features.
func (m *Module) ServerFeatures() []string {
	if m.hide {
		return nil
	}
	return []string{NS}
}

// AccountFeatures implements module.Features.
func (m *Module) AccountFeatures() []string { return nil }

func (m *Module) handle(_ context.Context, _ module.Session, iq *stanza.Stanza) (*element.Element, error) {
	if iq.Type != "get" {
		return nil, stanza.Err(stanza.Modify, stanza.BadRequest, "software version is queried with an iq get")
	}
	return element.New(NS, "query").Append(
		element.New(NS, "name").SetText(Name),
		element.New(NS, "version").SetText(m.version),
	), nil
}
