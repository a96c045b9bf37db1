// Package contacts is the buddy-list-only contact policy: the access
// rights contacts, subscriptions and contacts_exempt ([[access.rule]],
// [access] default) say who may reach a local account and who may ask it
// for a presence subscription.
//
// It registers the module "contacts", a module.Policy listed in
// server/chain.go right after "blocking", so every stanza a client or a
// peer sends meets it before the journal: a refused stanza is delivered to
// no one and stored nowhere (offline, MAM). A refusal is the answer an
// account that does not exist draws (RFC 6121 8.5.1), and the rights are
// those of the addressed JID whether it exists or not, so a stranger
// cannot tell a closed account from a missing one.
package contacts

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"

	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/stanza"
	"github.com/palisade-im/palisade/storage"
	"mellium.im/xmpp/jid"
)

// NSFeature prefixes the disco#info feature that names the contacts
// policy of an account: NSFeature + "roster", "organisation", "partners"
// or "anyone".
const NSFeature = "urn:palisade:contacts:"

// Module is the contact policy.
type Module struct {
	router     module.Router
	rosters    storage.Rosters
	restricted bool // some rule has contacts or subscriptions other than "anyone"

	shared *module.SharedGroups

	notContact, noSubscriptions, failures atomic.Uint64
}

var (
	_ module.Policy   = (*Module)(nil)
	_ module.Features = (*Module)(nil)
)

func init() {
	module.Register(module.Info{Name: "contacts", New: func(h *module.Host, _ any) (any, error) {
		if h.Router == nil || h.Store == nil {
			return nil, errors.New("contacts: the host needs a router and a store")
		}
		var access config.Access
		if h.Config != nil {
			access = h.Config.Access
		}
		return New(h.Router, h.Store, access, h.Modules), nil
	}})
}

// New builds the policy. access is the configuration's [access]: only
// whether some rule restricts contacts is read from it, the rights
// themselves are asked of r at each stanza (a group change applies at
// once). rosters answers "roster"; modules lists the host's modules, where
// the SharedRoster is looked for on first use (nil: none).
func New(r module.Router, rosters storage.Rosters, access config.Access, modules func() []any) *Module {
	return &Module{router: r, rosters: rosters, restricted: Restricted(access), shared: module.NewSharedGroups(r, modules)}
}

// Restricted reports whether the default or any rule of access has
// contacts or subscriptions other than "anyone". Without one the policy
// looks nothing up.
func Restricted(a config.Access) bool {
	open := func(r config.Rights) bool {
		return r.ContactScope() == config.ContactsAnyone && r.SubscriptionScope() == config.ContactsAnyone
	}
	if !open(a.Default) {
		return true
	}
	for _, r := range a.Rules {
		if !open(r.Rights) {
			return true
		}
	}
	return false
}

// Counts are the policy's refusals since start, by reason (for the
// lead's /metrics: a counter labelled by policy and reason, never a JID).
type Counts struct {
	// NotContact counts stanzas refused by contacts.
	NotContact uint64
	// Subscriptions counts subscription requests refused by subscriptions.
	Subscriptions uint64
	// Failures counts stanzas refused because a roster could not be read.
	Failures uint64
}

// Counts returns the refusals counted so far.
func (m *Module) Counts() Counts {
	return Counts{NotContact: m.notContact.Load(), Subscriptions: m.noSubscriptions.Load(), Failures: m.failures.Load()}
}

// ServerFeatures implements module.Features.
func (m *Module) ServerFeatures() []string { return nil }

// AccountFeatures implements module.Features: the per-account feature is
// in AccountFeaturesFor.
func (m *Module) AccountFeatures() []string { return nil }

// AccountFeaturesFor returns the feature naming the contacts policy in
// effect for account (modules/disco adds it to the account's disco#info).
func (m *Module) AccountFeaturesFor(account jid.JID) []string {
	r, _ := module.AccountRule(m.router, account.Bare())
	return []string{NSFeature + r.ContactScope()}
}

// Check implements module.Policy: a stanza to a local account passes when
// its sender may reach the account (contacts), or for a subscription
// request may ask for one (subscriptions).
//
// Always passing: stanzas that are not addressed to a local account's JID,
// from a domain JID (a server), between an account's own resources,
// errors, IQ results, presence other than available and subscribe (the
// core handles unavailable and probes; subscribed, unsubscribe and
// unsubscribed only answer or undo), and senders in a contacts_exempt
// group.
//
// The refusal is the one a missing account draws (server/route.go,
// modules/roster): service-unavailable (cancel, no text) for messages
// other than headlines and for IQ requests; headlines and presence are
// dropped silently. The core audits each refusal (policy "contacts").
func (m *Module) Check(ctx context.Context, st *stanza.Stanza) *module.Denial {
	if !m.restricted {
		return nil
	}
	from, to := st.From, st.To
	if to.Localpart() == "" || !m.router.IsLocal(to.Domainpart()) {
		return nil
	}
	if from.Localpart() == "" || from.Bare().Equal(to.Bare()) {
		return nil // a server, or the account itself
	}
	subscribe := false
	switch st.Kind {
	case stanza.Message:
		if st.Type == "error" {
			return nil
		}
	case stanza.IQ:
		if !st.IsRequest() {
			return nil
		}
	case stanza.Presence:
		switch st.Type {
		case "":
		case "subscribe":
			subscribe = true
		default:
			return nil
		}
	default:
		return nil
	}
	r, rule := module.AccountRule(m.router, to.Bare())
	key, scope := "contacts", r.ContactScope()
	if subscribe {
		key, scope = "subscriptions", r.SubscriptionScope()
	}
	if scope == config.ContactsAnyone {
		return nil
	}
	if len(r.ContactsExempt) > 0 && m.router.IsLocal(from.Domainpart()) {
		groups := m.router.Groups(from.Bare())
		for _, g := range r.ContactsExempt {
			if slices.Contains(groups, g) {
				return nil
			}
		}
	}
	reason := rule + ": " + key + " = " + scope
	if scope == config.ContactsNone {
		m.noSubscriptions.Add(1)
		return refuse(st, reason+": subscription requests refused")
	}
	if scope == config.ContactsOrganisation || scope == config.ContactsPartners {
		if m.router.IsLocal(from.Domainpart()) {
			return nil
		}
		if scope == config.ContactsPartners && module.PartnerOf(m.router, from.Domainpart()) != nil {
			return nil
		}
	}
	ok, err := m.onRoster(ctx, to.Bare(), from.Bare())
	if err != nil {
		m.failures.Add(1)
		var e *stanza.Error
		if replyable(st) {
			e = stanza.Err(stanza.Wait, stanza.InternalServerError, "")
		}
		return &module.Denial{Err: e, Reason: reason + ": roster unavailable: " + err.Error()}
	}
	if ok {
		return nil
	}
	if subscribe {
		m.noSubscriptions.Add(1)
	} else {
		m.notContact.Add(1)
	}
	return refuse(st, reason+": not a contact")
}

// refuse is the denial of st with the answer a missing account draws.
func refuse(st *stanza.Stanza, reason string) *module.Denial {
	var e *stanza.Error
	if replyable(st) {
		e = stanza.Err(stanza.Cancel, stanza.ServiceUnavailable, "")
	}
	return &module.Denial{Err: e, Reason: reason}
}

// replyable reports whether a refused stanza is answered, as RFC 6121
// 8.5.1 answers it for an account that does not exist: IQ requests and
// messages other than headlines (errors never reach here).
func replyable(st *stanza.Stanza) bool {
	switch st.Kind {
	case stanza.Message:
		return st.Type != "headline"
	case stanza.IQ:
		return st.IsRequest()
	}
	return false
}

// onRoster reports whether peer is a contact of account for "roster": an
// item in account's roster with a subscription either way or a request
// account sent (a request peer sent does not count), or a shared-roster
// group both are in.
func (m *Module) onRoster(ctx context.Context, account, peer jid.JID) (bool, error) {
	it, err := m.rosters.Item(ctx, account.String(), peer.String())
	switch {
	case err == nil && (it.Ask || (it.Subscription != storage.SubNone && it.Subscription != "")):
		return true, nil
	case err != nil && !errors.Is(err, storage.ErrNotFound):
		return false, err
	}
	return m.shared.Share(account, peer), nil
}
