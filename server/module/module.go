// Package module is the seam between Palisade's core and its modules.
//
// A module is a package under modules/ that calls Register from init with a
// name, a constructor and (optionally) a typed config struct decoded strictly
// from [modules.NAME]. The constructed value implements only the hook
// interfaces it needs (IQHandlers, Policy, SessionObserver, ...); the host
// finds them by type assertion and wires them into the stanza path:
//
//	reader -> stamp from -> Policy chain -> (MessageArchiver) -> Journal -> router -> deliver
package module

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/stanza"
	"github.com/palisade-im/palisade/storage"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"mellium.im/xmpp/jid"
)

// Info describes a module for registration.
type Info struct {
	// Name is the module's name and its config section, [modules.NAME].
	Name string
	// Config returns a new config struct pointer with defaults set, or nil
	// when the module has no settings. It may implement Validate() error.
	Config func() any
	// New builds the module from its decoded config (nil without one).
	New func(h *Host, cfg any) (any, error)
}

var (
	regMu    sync.RWMutex
	registry = map[string]Info{}
)

// Register adds a module. It panics on a duplicate or empty name: both are
// programming errors found at start-up.
func Register(info Info) {
	regMu.Lock()
	defer regMu.Unlock()
	if info.Name == "" || info.New == nil {
		panic("module: Register needs a name and a constructor")
	}
	if _, dup := registry[info.Name]; dup {
		panic(fmt.Sprintf("module: %q registered twice", info.Name))
	}
	registry[info.Name] = info
}

// RegisterConfigured registers a module whose settings are a *C:
// defaults returns them with their defaults set (and may implement
// Validate() error), and build makes the module from the decoded ones (or
// the defaults, without a section).
func RegisterConfigured[C any](name string, defaults func() *C, build func(h *Host, c C) (any, error)) {
	Register(Info{
		Name:   name,
		Config: func() any { return defaults() },
		New: func(h *Host, cfg any) (any, error) {
			c, _ := cfg.(*C)
			if c == nil {
				c = defaults()
			}
			return build(h, *c)
		},
	})
}

// Registered returns every registered module sorted by name.
func Registered() []Info {
	regMu.RLock()
	defer regMu.RUnlock()
	out := make([]Info, 0, len(registry))
	for _, i := range registry {
		out = append(out, i)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	return out
}

// ConfigRegistry implements config.Registry over the registered modules.
type ConfigRegistry struct{}

// ModuleConfig returns a fresh config for the named module.
func (ConfigRegistry) ModuleConfig(name string) (any, bool) {
	regMu.RLock()
	info, ok := registry[name]
	regMu.RUnlock()
	if !ok {
		return nil, false
	}
	if info.Config == nil {
		return &struct{}{}, true
	}
	return info.Config(), true
}

// Session is a bound client resource as modules see it.
type Session interface {
	// JID is the session's full JID.
	JID() jid.JID
	// Send queues a stanza for this session. It never blocks; a session
	// whose queue overflows is closed and keeps what it did not acknowledge.
	Send(st *stanza.Stanza)
	// Presence is the last available presence the client broadcast, or nil
	// when it has not sent one (or went unavailable).
	Presence() *stanza.Stanza
	// Priority is the priority of the current presence (0 when none).
	Priority() int
	// Available reports whether the client has sent available presence.
	Available() bool
	// RosterRequested reports whether the client fetched its roster (RFC 6121 2.1.6: interested resource).
	RosterRequested() bool
	SetRosterRequested()
	// Carbons reports whether XEP-0280 carbons are enabled.
	Carbons() bool
	SetCarbons(on bool)
	// RemoteAddr is the client's network address.
	RemoteAddr() string
	// Close ends the session with a stream error condition (RFC 6120 4.9.3).
	Close(condition, text string)
}

// Router is the core routing service that modules call.
type Router interface {
	// Process runs a stanza through the policy chain, the journal and the
	// router, as for a stanza a client sent. It returns the denial or error
	// that stopped it, already answered to the sender when appropriate.
	Process(ctx context.Context, st *stanza.Stanza) error
	// Admit runs a stanza through the policy chain and the journal only,
	// answering a denial or a journal failure to the sender. A module
	// whose state changes on the stanza admits it first, changes its
	// state, then calls Route: nothing changes that is not recorded.
	Admit(ctx context.Context, st *stanza.Stanza) error
	// Route delivers a server-generated stanza without policy or journal
	// (roster pushes, IQ results, presence the server already vetted).
	Route(ctx context.Context, st *stanza.Stanza)
	// Sessions returns the bound sessions of a bare JID.
	Sessions(bare jid.JID) []Session
	// Session returns the session bound to a full JID, or nil.
	Session(full jid.JID) Session
	// IsLocal reports whether the domain is served here.
	IsLocal(domain string) bool
	// UserExists reports whether a local account exists.
	UserExists(ctx context.Context, bare jid.JID) (bool, error)
	// Groups returns the Palisade groups ([groups] names) of the account
	// bare, as every GroupSource knows them now.
	Groups(bare jid.JID) []string
	// GroupMembers returns the members of a Palisade group as the
	// GroupListers know them, united and sorted; an error when none knows
	// the group or one failed.
	GroupMembers(ctx context.Context, group string) ([]jid.JID, error)
	// AccountRights returns the access rights ([[access.rule]], else
	// [access] default) of a local account, evaluated now from its current
	// groups. Modules read the rights the core does not enforce itself,
	// such as FileTransferScope; the core already applies login,
	// networks, sessions, send, federate and encryption_required.
	AccountRights(bare jid.JID) config.Rights
}

// ruleNamer is implemented by the core's router: an account's rights and
// the name of the rule they come from.
type ruleNamer interface {
	AccountRule(bare jid.JID) (config.Rights, string)
}

// AccountRule returns the access rights of a local account, as
// r.AccountRights does, and the name of the rule they come from
// ("access.rule 2", "access.default") for audit reasons; "access" when r
// cannot name it (a test router).
func AccountRule(r Router, bare jid.JID) (config.Rights, string) {
	if n, ok := r.(ruleNamer); ok {
		return n.AccountRule(bare)
	}
	return r.AccountRights(bare), "access"
}

// partnerLister is implemented by the core's router: the live partner
// entry of a domain.
type partnerLister interface {
	Partner(domain string) *config.Partner
}

// PartnerOf returns the live [[federation.partner]] entry that names
// domain, nil when none does or r cannot tell (a test router): modules
// read the sharing settings (files, rooms) from it.
func PartnerOf(r Router, domain string) *config.Partner {
	if p, ok := r.(partnerLister); ok {
		return p.Partner(domain)
	}
	return nil
}

// Host is what a module's constructor receives.
type Host struct {
	Router Router
	Store  storage.Store
	Log    *zap.Logger
	Audit  *zap.Logger
	Config *config.Config
	// SetHealth records a failing component for /healthz; problem ""
	// clears it.
	SetHealth func(component, problem string)
	// Metrics is where a module registers its Prometheus collectors,
	// served with the core's at GET /metrics on the admin listener. Names
	// start with "palisade_", every collector has a HELP text, and no
	// label value holds a JID, a domain of a user or a resource (bounded
	// sets only). Nil in hosts without metrics: register nothing then.
	Metrics prometheus.Registerer
	// AuthorizeLogin applies the access rules ([[access.rule]]) to an
	// account connecting from remote (host:port), as at login; a non-nil
	// error says why it may not. Nil in hosts without access rules.
	AuthorizeLogin func(ctx context.Context, bare jid.JID, remote string) error
	// Kick ends every session of a local bare JID (or the one of a full
	// JID) with a policy-violation stream error, refusing resumption, and
	// writes one session_kicked audit event with actor and reason. It
	// returns how many sessions it closed. Nil in hosts without sessions.
	Kick    func(j jid.JID, actor, reason string) int
	modules func() []any
}

// NewHost builds a host; modules returns the constructed module instances.
func NewHost(r Router, st storage.Store, log, audit *zap.Logger, cfg *config.Config, modules func() []any) *Host {
	return &Host{Router: r, Store: st, Log: log, Audit: audit, Config: cfg, modules: modules}
}

// Modules returns every constructed module instance (for discovery).
func (h *Host) Modules() []any {
	if h.modules == nil {
		return nil
	}
	return h.modules()
}

// Scope says which IQ addresses a handler serves.
type Scope uint8

// Scopes for IQ handlers.
const (
	// ScopeServer: IQs addressed to a served domain.
	ScopeServer Scope = 1 << iota
	// ScopeAccount: IQs addressed to a local bare JID, or with no 'to'
	// (RFC 6120 10.3.3: handled on behalf of the sender's account).
	ScopeAccount
)

// IQFunc handles an iq get or set. It returns the result payload (nil for
// an empty result) or an error; a *stanza.Error is sent as is, any other
// error becomes internal-server-error. sess is the requesting local session
// (nil for requests from elsewhere). Returning ErrHandled means the
// handler already replied.
type IQFunc func(ctx context.Context, sess Session, iq *stanza.Stanza) (*element.Element, error)

// ErrHandled tells the host an IQ handler sent its own reply.
var ErrHandled = fmt.Errorf("module: iq handled")

// IQRoute binds a payload (namespace and element name) to a handler.
type IQRoute struct {
	Space, Local string
	Scope        Scope
	Handle       IQFunc
}

// IQHandlers is implemented by modules that answer IQs.
type IQHandlers interface {
	IQRoutes() []IQRoute
}

// PreAuthIQHandler answers IQs on a stream before authentication (XEP-0077
// in-band registration). domain is the stream's domain.
type PreAuthIQHandler interface {
	PreAuthIQ(ctx context.Context, domain string, iq *stanza.Stanza) (*element.Element, error)
	PreAuthSpace() string
}

// Features is implemented by modules that advertise disco#info features.
type Features interface {
	// ServerFeatures are features of the server's domain.
	ServerFeatures() []string
	// AccountFeatures are features of each account's bare JID.
	AccountFeatures() []string
}

// StreamFeatures is implemented by modules that add stream features.
type StreamFeatures interface {
	// StreamFeatures returns features for a stream; authenticated says
	// whether SASL has completed.
	StreamFeatures(authenticated bool) []*element.Element
}

// Denial stops a stanza in the policy chain.
type Denial struct {
	// Err is returned to the sender; nil drops the stanza silently.
	Err *stanza.Error
	// Reason is the audit reason.
	Reason string
}

// Policy is one link of the policy chain.
type Policy interface {
	// Check inspects a stamped stanza; it returns nil to pass.
	Check(ctx context.Context, st *stanza.Stanza) *Denial
}

// Journal records a stanza before it is delivered. An error stops delivery.
type Journal interface {
	Append(ctx context.Context, st *stanza.Stanza) error
}

// PipelinedJournal is a Journal that takes a stanza now and confirms it
// later, so that the stanzas a session sends together share one durable
// commit while each is still delivered only after it is recorded.
type PipelinedJournal interface {
	Journal
	// Submit queues st; wait returns once it is durable, with Append's
	// error. wait must be called exactly once.
	Submit(ctx context.Context, st *stanza.Stanza) (wait func() error)
}

// PresenceHandler implements RFC 6121 presence semantics (one module).
type PresenceHandler interface {
	// OutboundPresence handles presence sent by a local client (after the
	// policy chain): broadcasts, directed presence, subscription requests.
	OutboundPresence(ctx context.Context, sess Session, st *stanza.Stanza)
	// InboundPresence handles presence addressed to a local account.
	InboundPresence(ctx context.Context, st *stanza.Stanza)
}

// SessionObserver is told when sessions start (after bind) and end (after
// the connection is gone and no resumption is possible).
type SessionObserver interface {
	SessionStarted(ctx context.Context, sess Session)
	SessionEnded(ctx context.Context, sess Session)
}

// SubscriptionObserver is told when an account grants a subscription to its
// presence (RFC 6121 3.1.5, or a pre-approval 3.4.2), once the roster
// change is stored and the owner's presence was sent: PEP sends the new
// subscriber the owner's last items (XEP-0163 section 4.3.3).
type SubscriptionObserver interface {
	SubscriptionApproved(ctx context.Context, owner, subscriber jid.JID)
}

// PresenceObserver is told after a session's initial available presence
// was handled (offline delivery hooks on this).
type PresenceObserver interface {
	InitialPresence(ctx context.Context, sess Session)
}

// BroadcastObserver is told of every available or unavailable presence a
// local session broadcast (no 'to'), after the presence handler routed it
// (XEP-0163 uses it to learn contacts' entity capabilities).
type BroadcastObserver interface {
	PresenceBroadcast(ctx context.Context, sess Session, st *stanza.Stanza)
}

// Requester sends IQ requests on behalf of the server and waits for their
// replies. The Router the core hands to modules implements it.
type Requester interface {
	// Request routes iq (a get or set; 'from' defaults to the domain of
	// 'to') under a fresh id and returns the reply, of type result or
	// error, that comes from the JID the request went to. It fails when
	// ctx ends, after a bounded timeout, or when the addressed local
	// session goes away first.
	Request(ctx context.Context, iq *stanza.Stanza) (*stanza.Stanza, error)
}

// MessageObserver sees messages after routing (carbons hook on this).
type MessageObserver interface {
	// MessageSent: a local client sent st (already routed).
	MessageSent(ctx context.Context, from Session, st *stanza.Stanza)
	// MessageDelivered: st, addressed to a local account, was delivered to
	// the sessions in to. bare is true when st was addressed to the bare JID.
	MessageDelivered(ctx context.Context, st *stanza.Stanza, to []Session, bare bool)
}

// MessageArchiver keeps the users' own message history (XEP-0313). The core
// calls ArchiveMessage on every message it admits, after the policy chain
// and before the journal, so that what it adds to st (an XEP-0359
// stanza-id for the recipient) is journaled and delivered with it. commit,
// when not nil, runs once the journal took st, before st is routed; it is
// not run for a stanza the journal refused.
type MessageArchiver interface {
	ArchiveMessage(ctx context.Context, st *stanza.Stanza) (commit func())
}

// OfflineStore keeps messages for accounts with no available resource.
type OfflineStore interface {
	// StoreOffline stores st. It returns a *stanza.Error to bounce it.
	StoreOffline(ctx context.Context, st *stanza.Stanza) error
}

// Starter and Stopper are optional life-cycle steps.
type Starter interface {
	Start(ctx context.Context) error
}

// Stopper is called on shutdown, in reverse start order.
type Stopper interface {
	Stop(ctx context.Context) error
}

// ModuleNames lists the registered modules (config.ModuleLister), so that
// modules absent from the file still get a section with their defaults.
func (ConfigRegistry) ModuleNames() []string {
	var out []string
	for _, i := range Registered() {
		out = append(out, i.Name)
	}
	return out
}

// Authenticator verifies passwords for one entry of [auth] providers
// (SASL PLAIN; the core offers PLAIN only, over TLS, on a domain that an
// Authenticator serves). The core tries the providers in their configured
// order for each login.
type Authenticator interface {
	// Provider is the name used in auth.providers, e.g. "ldap".
	Provider() string
	// ServesDomain reports whether accounts of domain may come from this
	// provider.
	ServesDomain(domain string) bool
	// CheckPassword verifies a password for username (a prepared
	// localpart) on domain. It returns nil on success; ErrUnknownUser
	// when the provider has no such account (the next provider is
	// tried); a *LoginRefused for a known account that may not log in
	// (wrong password, disabled, not allowed); any other error for a
	// back-end failure, which the client sees as temporary-auth-failure.
	CheckPassword(ctx context.Context, domain, username, password string) error
}

// ErrUnknownUser tells the core an Authenticator has no such account.
var ErrUnknownUser = errors.New("module: unknown user")

// LoginRefused is an Authenticator's refusal of a known account.
type LoginRefused struct {
	// Condition is the RFC 6120 6.5 SASL condition: "not-authorized" or
	// "account-disabled".
	Condition string
	// Reason is for the audit log, never sent to the client.
	Reason string
}

// Error describes the refusal.
func (e *LoginRefused) Error() string { return "login refused: " + e.Condition + ": " + e.Reason }

// GroupSource tells which Palisade groups ([groups] names) an account is
// in: the directory's (modules/ldap) and internal memberships
// (modules/groups). The core unites the answers of every GroupSource for
// access rules and Router.Groups.
type GroupSource interface {
	// Groups returns the account's groups as last learned (the directory:
	// at login, then at each sync; internal: within a second of a change);
	// it must not block on the network or the disk.
	Groups(bare jid.JID) []string
}

// GroupLister is a GroupSource that can also list a group's members
// (shared rosters need the members who are offline too).
type GroupLister interface {
	// Members returns the accounts in the Palisade group; ok is false
	// when the source does not know the group. It may ask the directory.
	Members(ctx context.Context, group string) (members []jid.JID, ok bool, err error)
}
