// Package disco implements XEP-0030 Service Discovery for the server's
// domains and its accounts, and advertises the server's XEP-0115 Entity
// Capabilities as a stream feature.
//
// It registers the module "disco". The server's features are collected
// from every module implementing module.Features.
package disco

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/stanza"
	"github.com/palisade-im/palisade/storage"
	"mellium.im/xmpp/jid"
)

// Namespaces.
const (
	NSInfo  = "http://jabber.org/protocol/disco#info"
	NSItems = "http://jabber.org/protocol/disco#items"
	NSCaps  = "http://jabber.org/protocol/caps"
)

// CapsNode is the XEP-0115 node that identifies Palisade.
const CapsNode = "https://palisade.im"

// ServerName is the name of the server identity.
const ServerName = "Palisade"

const nsXML = "http://www.w3.org/XML/1998/namespace"

// Item is a disco#items entry of the server's domains, e.g. a
// multi-user chat service.
type Item struct {
	JID  string `toml:"jid"`
	Name string `toml:"name"`
	Node string `toml:"node"`
}

// Config is the [modules.disco] section.
type Config struct {
	// Items are returned by disco#items queries to a served domain.
	Items []Item `toml:"items"`
}

// DefaultConfig returns the defaults (no items).
func DefaultConfig() *Config { return &Config{} }

// Validate checks that every item has a valid JID.
func (c *Config) Validate() error {
	for i, it := range c.Items {
		if it.JID == "" {
			return fmt.Errorf("items[%d]: jid is required", i)
		}
		if _, err := jid.Parse(it.JID); err != nil {
			return fmt.Errorf("items[%d]: invalid jid %q: %w", i, it.JID, err)
		}
	}
	return nil
}

func init() {
	module.RegisterConfigured("disco", DefaultConfig, func(h *module.Host, c Config) (any, error) {
		return New(h, c)
	})
}

// AccountIdentities is implemented by modules that add identities to the
// disco#info of every account (XEP-0163: pubsub/pep).
type AccountIdentities interface {
	AccountIdentities() []Identity
}

// AccountItems is implemented by modules that list disco#items of an
// account's bare JID for a requester (XEP-0163: the PEP nodes it may see).
type AccountItems interface {
	AccountItems(ctx context.Context, account, requester jid.JID) ([]Item, error)
}

// ServerNodes is implemented by modules that own disco nodes of the served
// domains (XEP-0050: the commands node and each command's node). ok is
// false when the module does not own node; a *stanza.Error is answered as
// is.
type ServerNodes interface {
	// ServerNodeInfo returns the disco#info of node for requester.
	ServerNodeInfo(ctx context.Context, node string, requester jid.JID) (info Info, ok bool, err error)
	// ServerNodeItems returns the disco#items of node of the served
	// domain server for requester.
	ServerNodeItems(ctx context.Context, server jid.JID, node string, requester jid.JID) (items []Item, ok bool, err error)
}

// Module answers disco#info and disco#items.
type Module struct {
	host  *module.Host
	items []Item

	once    sync.Once
	server  Info
	account Info
	ver     string
}

var (
	_ module.IQHandlers     = (*Module)(nil)
	_ module.Features       = (*Module)(nil)
	_ module.StreamFeatures = (*Module)(nil)
)

// New builds the module. Features are gathered from h.Modules() on first use.
func New(h *module.Host, cfg Config) (*Module, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("disco: %w", err)
	}
	items := make([]Item, len(cfg.Items))
	for i, it := range cfg.Items {
		j, _ := jid.Parse(it.JID)
		it.JID = j.String()
		items[i] = it
	}
	return &Module{host: h, items: items}, nil
}

// ServerFeatures implements module.Features.
func (m *Module) ServerFeatures() []string { return []string{NSInfo, NSItems} }

// AccountFeatures implements module.Features.
func (m *Module) AccountFeatures() []string { return []string{NSInfo, NSItems} }

// IQRoutes implements module.IQHandlers.
func (m *Module) IQRoutes() []module.IQRoute {
	return []module.IQRoute{
		{Space: NSInfo, Local: "query", Scope: module.ScopeServer, Handle: m.serverInfo},
		{Space: NSItems, Local: "query", Scope: module.ScopeServer, Handle: m.serverItems},
		{Space: NSInfo, Local: "query", Scope: module.ScopeAccount, Handle: m.accountInfo},
		{Space: NSItems, Local: "query", Scope: module.ScopeAccount, Handle: m.accountItems},
	}
}

// StreamFeatures implements module.StreamFeatures: the server's entity
// capabilities (XEP-0115 section 6.3), before and after authentication.
func (m *Module) StreamFeatures(bool) []*element.Element {
	return []*element.Element{m.CapsElement()}
}

// CapsElement returns <c xmlns='http://jabber.org/protocol/caps'/> for the server.
func (m *Module) CapsElement() *element.Element {
	m.load()
	return element.New(NSCaps, "c",
		element.A("hash", "sha-1"), element.A("node", CapsNode), element.A("ver", m.ver))
}

// ServerInfo returns the disco#info of the served domains.
func (m *Module) ServerInfo() Info {
	m.load()
	return m.server
}

// AccountInfo returns the disco#info of an account's bare JID.
func (m *Module) AccountInfo() Info {
	m.load()
	return m.account
}

// Ver returns the server's XEP-0115 verification string.
func (m *Module) Ver() string {
	m.load()
	return m.ver
}

// load gathers features once: every module is constructed by the time a
// stanza or stream needs them.
func (m *Module) load() {
	m.once.Do(func() {
		var server, account []string
		ids := []Identity{{Category: "account", Type: "registered"}}
		for _, x := range m.host.Modules() {
			if f, ok := x.(module.Features); ok {
				server = append(server, f.ServerFeatures()...)
				account = append(account, f.AccountFeatures()...)
			}
			if a, ok := x.(AccountIdentities); ok {
				ids = append(ids, a.AccountIdentities()...)
			}
		}
		if !slices.Contains(server, NSInfo) {
			// Modules() may not list this module (tests, partial hosts).
			server = append(server, m.ServerFeatures()...)
			account = append(account, m.AccountFeatures()...)
		}
		m.server = Info{
			Identities: []Identity{{Category: "server", Type: "im", Name: ServerName}},
			Features:   uniq(server),
		}
		if m.host.Config != nil {
			if f, ok := ContactForm(m.host.Config.Server.Contacts); ok { // XEP-0157
				m.server.Forms = append(m.server.Forms, f)
			}
		}
		m.account = Info{
			Identities: ids,
			Features:   uniq(account),
		}
		m.ver = Ver(m.server)
	})
}

func uniq(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	out = slices.Compact(out)
	return slices.DeleteFunc(out, func(x string) bool { return x == "" })
}

// Element renders info as a disco#info <query/>, with node when not empty.
func (info Info) Element(node string) *element.Element {
	q := element.New(NSInfo, "query")
	if node != "" {
		q.SetAttr("node", node)
	}
	for _, id := range info.Identities {
		el := element.New(NSInfo, "identity", element.A("category", id.Category), element.A("type", id.Type))
		if id.Lang != "" {
			el.Attrs = append(el.Attrs, element.Attr{Space: nsXML, Local: "lang", Value: id.Lang})
		}
		if id.Name != "" {
			el.SetAttr("name", id.Name)
		}
		q.Append(el)
	}
	for _, f := range info.Features {
		q.Append(element.New(NSInfo, "feature", element.A("var", f)))
	}
	for _, f := range info.Forms {
		q.Append(f.element())
	}
	return q
}

var errGetOnly = stanza.Err(stanza.Modify, stanza.BadRequest, "service discovery requests are of type get")

// serverInfo answers disco#info to a served domain, with or without the
// caps node (XEP-0115 section 6.2: node#ver returns the same info); other
// nodes are asked of the modules implementing ServerNodes.
func (m *Module) serverInfo(ctx context.Context, _ module.Session, iq *stanza.Stanza) (*element.Element, error) {
	if iq.Type != "get" {
		return nil, errGetOnly
	}
	m.load()
	node := iq.Payload().Attr("node")
	if node == "" || node == CapsNode+"#"+m.ver {
		return m.server.Element(node), nil
	}
	for _, x := range m.host.Modules() {
		if n, ok := x.(ServerNodes); ok {
			info, owned, err := n.ServerNodeInfo(ctx, node, iq.From)
			if err != nil {
				return nil, err
			}
			if owned {
				return info.Element(node), nil
			}
		}
	}
	return nil, stanza.Err(stanza.Cancel, stanza.ItemNotFound, "")
}

// serverItems answers disco#items to a served domain with the configured
// items, and for a node with what the module owning it lists.
func (m *Module) serverItems(ctx context.Context, _ module.Session, iq *stanza.Stanza) (*element.Element, error) {
	if iq.Type != "get" {
		return nil, errGetOnly
	}
	if node := iq.Payload().Attr("node"); node != "" {
		return m.nodeItems(ctx, iq.To, node, iq.From)
	}
	q := element.New(NSItems, "query")
	for _, it := range m.items {
		el := element.New(NSItems, "item", element.A("jid", it.JID))
		if it.Name != "" {
			el.SetAttr("name", it.Name)
		}
		if it.Node != "" {
			el.SetAttr("node", it.Node)
		}
		q.Append(el)
	}
	return q, nil
}

// nodeItems asks the modules implementing ServerNodes for node's items.
func (m *Module) nodeItems(ctx context.Context, server jid.JID, node string, requester jid.JID) (*element.Element, error) {
	for _, x := range m.host.Modules() {
		n, ok := x.(ServerNodes)
		if !ok {
			continue
		}
		items, owned, err := n.ServerNodeItems(ctx, server, node, requester)
		if err != nil {
			return nil, err
		}
		if !owned {
			continue
		}
		q := element.New(NSItems, "query", element.A("node", node))
		for _, it := range items {
			q.Append(itemElement(it))
		}
		return q, nil
	}
	return nil, stanza.Err(stanza.Cancel, stanza.ItemNotFound, "")
}

// itemElement renders one disco#items item.
func itemElement(it Item) *element.Element {
	el := element.New(NSItems, "item", element.A("jid", it.JID))
	if it.Node != "" {
		el.SetAttr("node", it.Node)
	}
	if it.Name != "" {
		el.SetAttr("name", it.Name)
	}
	return el
}

// accountInfo answers disco#info to a bare JID on behalf of the account.
// Following XEP-0030 section 10 (directory harvesting), an entity other
// than the account's owner gets service-unavailable unless the account
// exists and the requester may see its presence (subscription "from" or
// "both"): a missing account and a private one look the same.
func (m *Module) accountInfo(ctx context.Context, _ module.Session, iq *stanza.Stanza) (*element.Element, error) {
	if iq.Type != "get" {
		return nil, errGetOnly
	}
	ok, err := m.authorized(ctx, iq.From, iq.To.Bare())
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, stanza.Err(stanza.Cancel, stanza.ServiceUnavailable, "")
	}
	if iq.Payload().Attr("node") != "" {
		return nil, stanza.Err(stanza.Cancel, stanza.ItemNotFound, "")
	}
	m.load()
	info := m.account
	for _, x := range m.host.Modules() {
		if a, ok := x.(AccountFeaturer); ok {
			info.Features = uniq(append(slices.Clone(info.Features), a.AccountFeaturesFor(iq.To.Bare())...))
		}
	}
	return info.Element(""), nil
}

// AccountFeaturer is implemented by modules whose account features depend
// on the account (the contacts policy in effect for it).
type AccountFeaturer interface {
	AccountFeaturesFor(account jid.JID) []string
}

// accountItems answers disco#items to a bare JID with what the modules
// implementing AccountItems let the requester see (XEP-0163 section 6: PEP
// nodes); never the available resources (XEP-0030 section 10).
func (m *Module) accountItems(ctx context.Context, _ module.Session, iq *stanza.Stanza) (*element.Element, error) {
	if iq.Type != "get" {
		return nil, errGetOnly
	}
	q := element.New(NSItems, "query")
	if n := iq.Payload().Attr("node"); n != "" {
		q.SetAttr("node", n)
		return q, nil
	}
	account := iq.To.Bare()
	for _, x := range m.host.Modules() {
		a, ok := x.(AccountItems)
		if !ok {
			continue
		}
		items, err := a.AccountItems(ctx, account, iq.From)
		if err != nil {
			return nil, fmt.Errorf("disco: items of %s: %w", account, err)
		}
		for _, it := range items {
			q.Append(itemElement(it))
		}
	}
	return q, nil
}

// authorized reports whether from may see the account's info: it is the
// account itself, or the account exists and from has a presence
// subscription to it.
func (m *Module) authorized(ctx context.Context, from, account jid.JID) (bool, error) {
	if from.Bare().Equal(account) {
		return true, nil
	}
	exists, err := m.host.Router.UserExists(ctx, account)
	if err != nil {
		return false, fmt.Errorf("disco: look up %s: %w", account, err)
	}
	if !exists || m.host.Store == nil {
		return false, nil
	}
	it, err := m.host.Store.Item(ctx, account.String(), from.Bare().String())
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("disco: roster item of %s: %w", account, err)
	}
	return it.Subscription == storage.SubFrom || it.Subscription == storage.SubBoth, nil
}
