// Package adhoc implements XEP-0050 Ad-Hoc Commands at the served domains
// and, on it, the XEP-0133 Service Administration command "End User
// Session" for the administrators named in [server] admins.
//
// It registers the module "adhoc". Commands are listed by disco#items on
// the node http://jabber.org/protocol/commands (disco.ServerNodes) to the
// administrators only; anyone else sees an empty list and gets forbidden
// on execution. A command runs in two stages: execute returns a data form
// (XEP-0004) under a new sessionid, the submitted form completes it.
// Sessions are bounded in number and end after session_timeout.
package adhoc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/palisade-im/palisade/modules/disco"
	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/stanza"
	"go.uber.org/zap"
	"mellium.im/xmpp/jid"
)

// Namespaces.
const (
	// NS is the XEP-0050 namespace, also the node that lists the commands.
	NS = "http://jabber.org/protocol/commands"
	// NSData is the XEP-0004 data forms namespace.
	NSData = "jabber:x:data"
	// NSAdmin is the XEP-0133 FORM_TYPE.
	NSAdmin = "http://jabber.org/protocol/admin"
)

// Command statuses (XEP-0050 section 3.4).
const (
	statusExecuting = "executing"
	statusCompleted = "completed"
	statusCanceled  = "canceled"
)

// perOwner is how many open sessions one requester (full JID) keeps; a
// new one beyond it replaces its oldest.
const perOwner = 8

// Config is the [modules.adhoc] section.
type Config struct {
	// SessionTimeout is how long a started command waits for its form.
	SessionTimeout config.Duration `toml:"session_timeout"`
	// MaxSessions is how many started commands the server keeps at once.
	MaxSessions int `toml:"max_sessions"`
}

// DefaultConfig returns the defaults: 5 minutes, 64 sessions.
func DefaultConfig() *Config {
	return &Config{SessionTimeout: config.Duration(5 * time.Minute), MaxSessions: 64}
}

// Validate checks the bounds.
func (c *Config) Validate() error {
	var errs []error
	if time.Duration(c.SessionTimeout) < time.Second || time.Duration(c.SessionTimeout) > 24*time.Hour {
		errs = append(errs, &config.FieldError{Key: "session_timeout", Msg: fmt.Sprintf("must be between 1s and 24h, got %s", c.SessionTimeout)})
	}
	if c.MaxSessions < 1 || c.MaxSessions > 10000 {
		errs = append(errs, &config.FieldError{Key: "max_sessions", Msg: fmt.Sprintf("must be between 1 and 10000, got %d", c.MaxSessions)})
	}
	return errors.Join(errs...)
}

func init() {
	module.RegisterConfigured("adhoc", DefaultConfig, func(h *module.Host, c Config) (any, error) {
		return New(h, c)
	})
}

// Command is one ad-hoc command: a form, and what its submission does.
type Command struct {
	// Node is the command's disco node.
	Node string
	// Name is its human-readable name.
	Name string
	// Form returns the form of the first stage (type 'form').
	Form func() *element.Element
	// Submit runs the command with the submitted fields for requester.
	// A *stanza.Error leaves the session open so that the form can be
	// corrected; notes are returned with status completed.
	Submit func(ctx context.Context, requester jid.JID, f Fields) ([]Note, error)
}

// Note is an XEP-0050 <note/>: type info, warn or error.
type Note struct {
	Type, Text string
}

// Module answers XEP-0050 commands.
type Module struct {
	admins   map[string]bool
	commands []Command
	timeout  time.Duration
	max      int
	log      *zap.Logger
	audit    *zap.Logger
	now      func() time.Time

	mu       sync.Mutex
	sessions map[string]*cmdSession
	expired  []string // ids of sessions that timed out, oldest first, at most max
}

// cmdSession is one started command.
type cmdSession struct {
	id, node string
	owner    jid.JID // the requester's full JID
	started  time.Time
}

var (
	_ module.IQHandlers      = (*Module)(nil)
	_ module.Features        = (*Module)(nil)
	_ module.SessionObserver = (*Module)(nil)
	_ disco.ServerNodes      = (*Module)(nil)
)

// New builds the module with the commands the host supports.
func New(h *module.Host, cfg Config) (*Module, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("adhoc: %w", err)
	}
	m := &Module{
		admins:   map[string]bool{},
		timeout:  time.Duration(cfg.SessionTimeout),
		max:      cfg.MaxSessions,
		log:      h.Log,
		audit:    h.Audit,
		now:      time.Now,
		sessions: map[string]*cmdSession{},
	}
	if m.log == nil {
		m.log = zap.NewNop()
	}
	if m.audit == nil {
		m.audit = zap.NewNop()
	}
	if h.Config != nil {
		for _, a := range h.Config.Server.Admins {
			m.admins[a] = true
		}
	}
	if h.Kick != nil {
		m.commands = append(m.commands, endUserSession(h.Router, h.Kick))
	}
	return m, nil
}

// ServerFeatures implements module.Features.
func (m *Module) ServerFeatures() []string { return []string{NS} }

// AccountFeatures implements module.Features.
func (m *Module) AccountFeatures() []string { return nil }

// IQRoutes implements module.IQHandlers.
func (m *Module) IQRoutes() []module.IQRoute {
	return []module.IQRoute{{Space: NS, Local: "command", Scope: module.ScopeServer, Handle: m.handle}}
}

// SessionStarted implements module.SessionObserver.
func (m *Module) SessionStarted(context.Context, module.Session) {}

// SessionEnded implements module.SessionObserver: the commands the client
// started end with it.
func (m *Module) SessionEnded(_ context.Context, sess module.Session) {
	full := sess.JID()
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, s := range m.sessions {
		if s.owner.Equal(full) {
			delete(m.sessions, id)
		}
	}
}

// isAdmin reports whether a request comes from a local session of an
// administrator.
func (m *Module) isAdmin(sess module.Session, from jid.JID) bool {
	return sess != nil && m.admins[from.Bare().String()]
}

func (m *Module) command(node string) *Command {
	for i := range m.commands {
		if m.commands[i].Node == node {
			return &m.commands[i]
		}
	}
	return nil
}

// ServerNodeItems implements disco.ServerNodes: the commands node lists
// what the requester may run (nothing for non-administrators).
func (m *Module) ServerNodeItems(_ context.Context, server jid.JID, node string, requester jid.JID) ([]disco.Item, bool, error) {
	if node == NS {
		if !m.admins[requester.Bare().String()] {
			return nil, true, nil
		}
		items := make([]disco.Item, 0, len(m.commands))
		for _, c := range m.commands {
			items = append(items, disco.Item{JID: server.String(), Node: c.Node, Name: c.Name})
		}
		return items, true, nil
	}
	if m.command(node) != nil && m.admins[requester.Bare().String()] {
		return nil, true, nil // a command node has no items
	}
	return nil, false, nil
}

// ServerNodeInfo implements disco.ServerNodes (XEP-0050 section 2.3):
// the commands node, and each command node to those who may run it.
func (m *Module) ServerNodeInfo(_ context.Context, node string, requester jid.JID) (disco.Info, bool, error) {
	if node == NS {
		return disco.Info{
			Identities: []disco.Identity{{Category: "automation", Type: "command-list", Name: "Commands"}},
			Features:   []string{disco.NSItems},
		}, true, nil
	}
	c := m.command(node)
	if c == nil || !m.admins[requester.Bare().String()] {
		return disco.Info{}, false, nil
	}
	return disco.Info{
		Identities: []disco.Identity{{Category: "automation", Type: "command-node", Name: c.Name}},
		Features:   []string{NS, NSData},
	}, true, nil
}

// cmdErr is a stanza error with an XEP-0050 application condition.
func cmdErr(t stanza.ErrorType, c stanza.Condition, app, text string) *stanza.Error {
	e := stanza.Err(t, c, text)
	if app != "" {
		e.App = element.New(NS, app)
	}
	return e
}

// handle answers <command/> (XEP-0050 section 3).
func (m *Module) handle(ctx context.Context, sess module.Session, iq *stanza.Stanza) (*element.Element, error) {
	if iq.Type != "set" {
		return nil, stanza.Err(stanza.Modify, stanza.BadRequest, "commands are run with an iq set")
	}
	p := iq.Payload()
	node := p.Attr("node")
	c := m.command(node)
	if c == nil {
		return nil, stanza.Err(stanza.Cancel, stanza.ItemNotFound, "no such command")
	}
	if !m.isAdmin(sess, iq.From) {
		m.audit.Info("adhoc_forbidden", zap.String("jid", iq.From.String()), zap.String("node", node))
		return nil, stanza.Err(stanza.Auth, stanza.Forbidden, "only administrators ([server] admins) may run this command")
	}
	action := p.Attr("action")
	switch action {
	case "":
		action = "execute"
	case "execute", "cancel", "prev", "next", "complete":
	default:
		return nil, cmdErr(stanza.Modify, stanza.BadRequest, "malformed-action", fmt.Sprintf("unknown action %q", action))
	}
	id := p.Attr("sessionid")
	if id == "" {
		switch action {
		case "execute":
		case "cancel":
			return nil, cmdErr(stanza.Modify, stanza.BadRequest, "bad-sessionid", "cancel needs the sessionid of a started command")
		default:
			return nil, cmdErr(stanza.Modify, stanza.BadRequest, "bad-action", "action "+action+" before the command started")
		}
		if x := p.Child(NSData, "x"); x != nil {
			// The form submitted with the request: run it in one step,
			// under a sessionid that is never stored.
			id, err := newID()
			if err != nil {
				return nil, err
			}
			return m.submit(ctx, c, iq.From, id, false, x)
		}
		return m.start(c, iq.From)
	}
	s, serr := m.lookup(id, node, iq.From)
	if serr != nil {
		return nil, serr
	}
	switch action {
	case "cancel":
		m.drop(s.id)
		return reply(c.Node, s.id, statusCanceled), nil
	case "prev", "next":
		return nil, cmdErr(stanza.Modify, stanza.BadRequest, "bad-action", "this command has a single stage: complete or cancel it")
	}
	x := p.Child(NSData, "x")
	if x == nil {
		return nil, cmdErr(stanza.Modify, stanza.BadRequest, "bad-payload", "the submitted form (jabber:x:data, type submit) is missing")
	}
	return m.submit(ctx, c, iq.From, s.id, true, x)
}

// start opens a session and returns the command's form.
func (m *Module) start(c *Command, owner jid.JID) (*element.Element, error) {
	id, err := newID()
	if err != nil {
		return nil, err
	}
	now := m.now()
	m.mu.Lock()
	m.sweepLocked(now)
	var mine []*cmdSession
	for _, s := range m.sessions {
		if s.owner.Equal(owner) {
			mine = append(mine, s)
		}
	}
	if len(mine) >= perOwner {
		oldest := slices.MinFunc(mine, func(a, b *cmdSession) int { return a.started.Compare(b.started) })
		delete(m.sessions, oldest.id)
	}
	if len(m.sessions) >= m.max {
		m.mu.Unlock()
		return nil, stanza.Err(stanza.Wait, stanza.ResourceConstraint, "too many commands in progress; try again later")
	}
	m.sessions[id] = &cmdSession{id: id, node: c.Node, owner: owner, started: now}
	m.mu.Unlock()

	res := reply(c.Node, id, statusExecuting)
	res.Append(element.New(NS, "actions", element.A("execute", "complete")).Append(element.New(NS, "complete")))
	res.Append(c.Form())
	return res, nil
}

// submit reads the form x and runs the command; id is its session, stored
// unless the form came with the first request.
func (m *Module) submit(ctx context.Context, c *Command, requester jid.JID, id string, stored bool, x *element.Element) (*element.Element, error) {
	f, err := readForm(x)
	if err != nil {
		return nil, err
	}
	if f == nil { // <x type='cancel'/>
		if stored {
			m.drop(id)
		}
		return reply(c.Node, id, statusCanceled), nil
	}
	notes, err := c.Submit(ctx, requester, f)
	if err != nil {
		return nil, err // the session stays open: the form may be corrected
	}
	if stored {
		m.drop(id)
	}
	res := reply(c.Node, id, statusCompleted)
	for _, n := range notes {
		res.Append(element.New(NS, "note", element.A("type", n.Type)).SetText(n.Text))
	}
	return res, nil
}

func reply(node, id, status string) *element.Element {
	return element.New(NS, "command", element.A("node", node), element.A("sessionid", id), element.A("status", status))
}

// lookup returns the open session id of node started by owner.
func (m *Module) lookup(id, node string, owner jid.JID) (*cmdSession, *stanza.Error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweepLocked(now)
	s := m.sessions[id]
	switch {
	case s == nil && slices.Contains(m.expired, id):
		return nil, cmdErr(stanza.Cancel, stanza.NotAllowed, "session-expired", "the command timed out; execute it again")
	case s == nil || !s.owner.Equal(owner) || s.node != node:
		return nil, cmdErr(stanza.Modify, stanza.BadRequest, "bad-sessionid", "no such command session")
	}
	return s, nil
}

func (m *Module) drop(id string) {
	m.mu.Lock()
	delete(m.sessions, id)
	m.mu.Unlock()
}

// sweepLocked ends the sessions older than the timeout, remembering their
// ids (a bounded list) to answer session-expired.
func (m *Module) sweepLocked(now time.Time) {
	for id, s := range m.sessions {
		if now.Sub(s.started) < m.timeout {
			continue
		}
		delete(m.sessions, id)
		m.expired = append(m.expired, id)
	}
	if n := len(m.expired) - m.max; n > 0 {
		m.expired = slices.Delete(m.expired, 0, n)
	}
}

// Open returns how many command sessions are open (for tests and metrics).
func (m *Module) Open() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.sessions)
}

func newID() (string, error) {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("adhoc: session id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
