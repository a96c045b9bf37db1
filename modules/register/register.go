// Package register implements XEP-0077 In-Band Registration: account
// creation before authentication (off unless allowed), password changes,
// and account removal (only when registration is allowed).
//
// It registers the module "register". Passwords are stored only as SCRAM
// credentials (server/sasl.DeriveAll) and never logged, audited or echoed
// in error replies.
package register

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/password"
	"github.com/palisade-im/palisade/server/sasl"
	"github.com/palisade-im/palisade/server/stanza"
	"github.com/palisade-im/palisade/storage"
	"go.uber.org/zap"
	"mellium.im/xmpp/jid"
)

// Namespaces.
const (
	// NS is the XEP-0077 namespace.
	NS = "jabber:iq:register"
	// NSFeature is the in-band registration stream feature.
	NSFeature = "http://jabber.org/features/iq-register"
)

// Instructions is sent with the registration fields.
const Instructions = "Choose a username and password to register with this server."

// Config is the [modules.register] section.
type Config struct {
	// Allow turns on in-band account creation and removal.
	Allow bool `toml:"allow"`
	// MinPasswordLength is no longer used here: the password policy is
	// [auth] password_min_length and password_reject_common. A file that
	// still sets it is refused with a message saying so.
	MinPasswordLength int `toml:"min_password_length"`
}

// RegistrationOpen tells whether anyone may create an account in band
// (server.Posture warns of it).
func (c *Config) RegistrationOpen() bool { return c.Allow }

// DefaultConfig returns the defaults: registration off.
func DefaultConfig() *Config { return &Config{} }

// Validate refuses the old min_password_length key.
func (c *Config) Validate() error {
	if c.MinPasswordLength != 0 {
		return &config.FieldError{Key: "min_password_length", Msg: "moved: set [auth] password_min_length instead"}
	}
	return nil
}

func init() {
	module.RegisterConfigured("register", DefaultConfig, func(h *module.Host, c Config) (any, error) {
		iterations := 0
		policy := password.Policy{MinLength: config.Default().Auth.PasswordMinLength, RejectCommon: true}
		if h.Config != nil {
			iterations = h.Config.Auth.SCRAMIterations
			policy = password.Policy{MinLength: h.Config.Auth.PasswordMinLength, RejectCommon: h.Config.Auth.PasswordRejectCommon}
		}
		m, err := New(h.Router, h.Store, h.Log, h.Audit, c, iterations, policy)
		if m != nil {
			m.modules = h.Modules
		}
		return m, err
	})
}

// Module handles jabber:iq:register.
type Module struct {
	router     module.Router
	store      storage.Users
	log        *zap.Logger
	audit      *zap.Logger
	cfg        Config
	iterations int
	policy     password.Policy
	// modules lists the server's modules, among which the journal's
	// recorder of administrative acts (nil: none).
	modules func() []any
}

// actRecorder is the archive module's RecordAdminAct.
type actRecorder interface {
	RecordAdminAct(ctx context.Context, act, actor, target string, details map[string]string) error
}

// record journals an account change (kind admin) when the archive is on.
// The change is made already: a failure is logged and audited.
func (m *Module) record(ctx context.Context, act string, user jid.JID, remote string) {
	if m.modules == nil {
		return
	}
	for _, x := range m.modules() {
		if r, ok := x.(actRecorder); ok {
			if err := r.RecordAdminAct(ctx, act, "xep-0077:"+user.String(), user.String(), map[string]string{"remote": remote}); err != nil {
				m.log.Error("account change not journaled", zap.String("act", act), zap.Error(err))
				m.audit.Error("admin_act_not_journaled", zap.String("act", act), zap.String("target", user.String()), zap.Error(err))
			}
			return
		}
	}
}

var (
	_ module.IQHandlers       = (*Module)(nil)
	_ module.PreAuthIQHandler = (*Module)(nil)
	_ module.Features         = (*Module)(nil)
	_ module.StreamFeatures   = (*Module)(nil)
)

// New builds the module; iterations is the PBKDF2 count for new SCRAM
// credentials (0: sasl.DefaultIterations), policy the password policy
// ([auth] password_min_length, password_reject_common).
func New(r module.Router, store storage.Users, log, audit *zap.Logger, cfg Config, iterations int, policy password.Policy) (*Module, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("register: %w", err)
	}
	return &Module{router: r, store: store, log: log, audit: audit, cfg: cfg, iterations: iterations, policy: policy}, nil
}

// IQRoutes implements module.IQHandlers: requests from authenticated
// clients, to their server or with no 'to'.
func (m *Module) IQRoutes() []module.IQRoute {
	return []module.IQRoute{{Space: NS, Local: "query", Scope: module.ScopeServer | module.ScopeAccount, Handle: m.handle}}
}

// PreAuthSpace implements module.PreAuthIQHandler.
func (m *Module) PreAuthSpace() string { return NS }

// ServerFeatures implements module.Features: password changes are always
// offered.
func (m *Module) ServerFeatures() []string { return []string{NS} }

// AccountFeatures implements module.Features.
func (m *Module) AccountFeatures() []string { return nil }

// StreamFeatures implements module.StreamFeatures: the registration
// feature before authentication when registration is allowed.
func (m *Module) StreamFeatures(authenticated bool) []*element.Element {
	if authenticated || !m.cfg.Allow {
		return nil
	}
	return []*element.Element{element.New(NSFeature, "register")}
}

// PreAuthIQ implements module.PreAuthIQHandler: registration of a new
// account on an unauthenticated stream (XEP-0077 section 3.1). An error
// answers with the request's <query/> and every field in it (section 3.1,
// examples "Username Conflict" and "Some Required Information Not
// Provided"), so that a client rebuilding its form from the answer keeps
// the password field; the password's value is not sent back.
func (m *Module) PreAuthIQ(ctx context.Context, domain string, iq *stanza.Stanza) (*element.Element, error) {
	res, err := m.preAuth(ctx, domain, iq)
	if err != nil {
		blankPasswords(iq)
	}
	return res, err
}

func (m *Module) preAuth(ctx context.Context, domain string, iq *stanza.Stanza) (*element.Element, error) {
	q := iq.Payload()
	if q == nil || q.Local != "query" {
		return nil, stanza.Err(stanza.Modify, stanza.BadRequest, "")
	}
	if !m.cfg.Allow {
		return nil, stanza.Err(stanza.Cancel, stanza.ServiceUnavailable, "in-band registration is not offered")
	}
	switch iq.Type {
	case "get":
		return element.New(NS, "query").Append(
			element.New(NS, "instructions").SetText(Instructions),
			element.New(NS, "username"),
			element.New(NS, "password"),
		), nil
	case "set":
	default:
		return nil, stanza.Err(stanza.Modify, stanza.BadRequest, "")
	}
	if q.Child(NS, "remove") != nil {
		return nil, stanza.Err(stanza.Cancel, stanza.UnexpectedRequest, "log in to cancel a registration")
	}
	username, pw := q.ChildText(NS, "username"), q.ChildText(NS, "password")
	if username == "" || pw == "" {
		return nil, stanza.Err(stanza.Modify, stanza.NotAcceptable, "a username and a password are required")
	}
	j, err := jid.New(username, domain, "")
	if err != nil {
		return nil, stanza.Err(stanza.Modify, stanza.NotAcceptable, "this username is not allowed")
	}
	if err := m.checkPassword(pw, j.Localpart(), j.Domainpart()); err != nil {
		return nil, err
	}
	if _, err := m.store.GetUser(ctx, j.Localpart(), j.Domainpart()); err == nil {
		return nil, stanza.Err(stanza.Cancel, stanza.Conflict, "this username is taken")
	} else if !errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("register: look up %s: %w", j, err)
	}
	creds, err := sasl.DeriveAll(pw, m.iterations)
	if err != nil {
		return nil, fmt.Errorf("register: derive credentials: %w", err)
	}
	err = m.store.CreateUser(ctx, storage.User{Localpart: j.Localpart(), Domain: j.Domainpart(), SCRAM: creds, Created: time.Now().UTC()})
	if errors.Is(err, storage.ErrExists) {
		return nil, stanza.Err(stanza.Cancel, stanza.Conflict, "this username is taken")
	}
	if err != nil {
		return nil, fmt.Errorf("register: create %s: %w", j, err)
	}
	m.audit.Info("account_created", zap.String("who", j.String()), zap.String("what", j.String()),
		zap.String("why", "in-band registration (XEP-0077)"))
	m.record(ctx, "user_add", j, "")
	return nil, nil
}

// handle serves authenticated clients: the registration's details, a
// password change (XEP-0077 section 3.3) and removal (section 3.2).
func (m *Module) handle(ctx context.Context, sess module.Session, iq *stanza.Stanza) (*element.Element, error) {
	res, err := m.authenticated(ctx, sess, iq)
	if err != nil && !errors.Is(err, module.ErrHandled) {
		if q := iq.Payload(); iq.Type == "set" && q != nil && q.Child(NS, "remove") == nil {
			// Section 3.3: the original XML of a password change is
			// not returned in its error.
			iq.El.RemoveChildren(NS, "")
		} else {
			scrub(iq)
		}
	}
	return res, err
}

func (m *Module) authenticated(ctx context.Context, sess module.Session, iq *stanza.Stanza) (*element.Element, error) {
	user := iq.From.Bare()
	if sess == nil || !m.router.IsLocal(user.Domainpart()) {
		return nil, stanza.Err(stanza.Cancel, stanza.ServiceUnavailable, "")
	}
	if iq.To.Domainpart() != user.Domainpart() || (iq.To.Localpart() != "" && !iq.To.Bare().Equal(user)) {
		return nil, stanza.Err(stanza.Auth, stanza.Forbidden, "only one's own registration can be managed")
	}
	q := iq.Payload()
	switch iq.Type {
	case "get":
		return element.New(NS, "query").Append(
			element.New(NS, "registered"),
			element.New(NS, "username").SetText(user.Localpart()),
			element.New(NS, "password"),
		), nil
	case "set":
	default:
		return nil, stanza.Err(stanza.Modify, stanza.BadRequest, "")
	}
	if q.Child(NS, "remove") != nil {
		return m.remove(ctx, sess, iq)
	}
	return nil, m.changePassword(ctx, sess, user, q)
}

// changePassword sets new credentials (XEP-0077 section 3.3).
func (m *Module) changePassword(ctx context.Context, sess module.Session, user jid.JID, q *element.Element) error {
	un := q.Child(NS, "username")
	pw := q.ChildText(NS, "password")
	if un == nil || pw == "" {
		// An empty password never replaces the current one.
		return stanza.Err(stanza.Modify, stanza.BadRequest, "a username and a new password are required")
	}
	if j, err := jid.New(un.Text(), user.Domainpart(), ""); err != nil || j.Localpart() != user.Localpart() {
		return stanza.Err(stanza.Auth, stanza.Forbidden, "only one's own password can be changed")
	}
	if err := m.checkPassword(pw, user.Localpart(), user.Domainpart()); err != nil {
		return err
	}
	creds, err := sasl.DeriveAll(pw, m.iterations)
	if err != nil {
		return fmt.Errorf("register: derive credentials: %w", err)
	}
	if err := m.store.SetCredentials(ctx, user.Localpart(), user.Domainpart(), creds); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return stanza.Err(stanza.Auth, stanza.RegistrationRequired, "")
		}
		return fmt.Errorf("register: set credentials of %s: %w", user, err)
	}
	m.audit.Info("password_changed", zap.String("who", user.String()), zap.String("what", user.String()),
		zap.String("why", "password change (XEP-0077)"), zap.String("remote", sess.RemoteAddr()))
	m.record(ctx, "user_passwd", user, sess.RemoteAddr())
	// The account's other sessions rest on the old password: they end
	// (not-authorized, no resumption); the one that changed it stays.
	for _, s := range m.router.Sessions(user) {
		if !s.JID().Equal(sess.JID()) {
			s.Close("not-authorized", "the account's password was changed: log in again")
		}
	}
	return nil
}

// remove deletes the account (XEP-0077 section 3.2), answers, and ends
// every session of the account with a not-authorized stream error.
func (m *Module) remove(ctx context.Context, sess module.Session, iq *stanza.Stanza) (*element.Element, error) {
	if len(iq.Payload().Elements()) != 1 {
		return nil, stanza.Err(stanza.Modify, stanza.BadRequest, "<remove/> must be the only child")
	}
	if !m.cfg.Allow {
		return nil, stanza.Err(stanza.Cancel, stanza.NotAllowed, "accounts are not removed in-band on this server")
	}
	user := iq.From.Bare()
	if err := m.store.DeleteUser(ctx, user.Localpart(), user.Domainpart()); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, stanza.Err(stanza.Auth, stanza.RegistrationRequired, "")
		}
		return nil, fmt.Errorf("register: delete %s: %w", user, err)
	}
	m.audit.Info("account_removed", zap.String("who", user.String()), zap.String("what", user.String()),
		zap.String("why", "registration cancelled in-band (XEP-0077)"), zap.String("remote", sess.RemoteAddr()))
	m.record(ctx, "user_del", user, sess.RemoteAddr())
	m.router.Route(ctx, iq.Result(nil))
	for _, s := range m.router.Sessions(user) {
		s.Close("not-authorized", "the account was removed")
	}
	return nil, module.ErrHandled
}

// checkPassword applies the password policy (server/password): a refusal
// is not-acceptable with the reason as text (XEP-0077 section 3.1).
func (m *Module) checkPassword(pw, localpart, domain string) error {
	var weak *password.Weak
	if err := m.policy.Check(pw, localpart, domain); errors.As(err, &weak) {
		return stanza.Err(stanza.Modify, stanza.NotAcceptable, weak.Reason)
	} else if err != nil {
		return stanza.Err(stanza.Modify, stanza.NotAcceptable, "the password is not acceptable")
	}
	return nil
}

// blankPasswords empties the password fields of a request before an error
// reply copies its payload: the field stays, its value is not echoed.
func blankPasswords(iq *stanza.Stanza) {
	q := iq.Payload()
	if q == nil {
		return
	}
	for _, f := range q.Elements() {
		if f.Space == NS && f.Local == "password" {
			f.SetText("")
		}
	}
}

// scrub removes passwords from a request before an error reply copies its
// payload.
func scrub(iq *stanza.Stanza) {
	if q := iq.Payload(); q != nil {
		q.RemoveChildren(NS, "password")
	}
}
