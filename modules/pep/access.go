package pep

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/stanza"
	"github.com/palisade-im/palisade/storage"
	"mellium.im/xmpp/jid"
)

// pubsubErr is a stanza error with a pubsub#errors condition (XEP-0060
// section 14).
func pubsubErr(t stanza.ErrorType, c stanza.Condition, app string) *stanza.Error {
	e := stanza.Err(t, c, "")
	if app != "" {
		e.App = element.New(NSErrors, app)
	}
	return e
}

// unsupported is feature-not-implemented for a pubsub feature.
func unsupported(feature string) *stanza.Error {
	e := pubsubErr(stanza.Cancel, stanza.FeatureNotImplemented, "unsupported")
	e.App.SetAttr("feature", feature)
	return e
}

var (
	errForbidden    = stanza.Err(stanza.Auth, stanza.Forbidden, "only the account owner may do this")
	errNodeRequired = pubsubErr(stanza.Modify, stanza.BadRequest, "nodeid-required")
	errNoNode       = stanza.Err(stanza.Cancel, stanza.ItemNotFound, "")
)

// subscribed reports whether a roster item grants the contact the owner's
// presence (subscription from or both).
func subscribed(it storage.RosterItem) bool {
	return !it.Hidden && (it.Subscription == storage.SubFrom || it.Subscription == storage.SubBoth)
}

// mayRead decides whether requester (a bare JID) may retrieve items of an
// owner's node with cfg (XEP-0060 section 4.5). It returns nil when it may,
// or the error to answer with.
func (m *Module) mayRead(ctx context.Context, owner, requester jid.JID, cfg storage.NodeConfig) (*stanza.Error, error) {
	if requester.Equal(owner) {
		return nil, nil
	}
	switch cfg.AccessModel {
	case storage.AccessOpen:
		return nil, nil
	case storage.AccessWhitelist:
		// No affiliations are managed: the owner is the whole whitelist.
		return pubsubErr(stanza.Cancel, stanza.NotAllowed, "closed-node"), nil
	}
	it, err := m.store.Item(ctx, owner.String(), requester.String())
	found := err == nil
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("pep: roster item %s of %s: %w", requester, owner, err)
	}
	return contactAccess(cfg, it, found), nil
}

// contactAccess decides for a contact whose item in the owner's roster is
// it (found false: none) under the presence and roster access models.
func contactAccess(cfg storage.NodeConfig, it storage.RosterItem, found bool) *stanza.Error {
	switch cfg.AccessModel {
	case storage.AccessOpen:
		return nil
	case storage.AccessPresence:
		if found && subscribed(it) {
			return nil
		}
		return pubsubErr(stanza.Auth, stanza.NotAuthorized, "presence-subscription-required")
	case storage.AccessRoster:
		if found && !it.Hidden && slices.ContainsFunc(it.Groups, func(g string) bool {
			return slices.Contains(cfg.RosterGroupsAllowed, g)
		}) {
			return nil
		}
		return pubsubErr(stanza.Auth, stanza.NotAuthorized, "not-in-roster-group")
	}
	return pubsubErr(stanza.Cancel, stanza.NotAllowed, "closed-node")
}

// blocked reports whether the owner blocks to (XEP-0191 with the matching
// of XEP-0016 section 2.1): XEP-0163 section 4.3.3 sends such contacts no
// notification.
func blocked(list []string, to jid.JID) bool {
	for _, s := range list {
		b, err := jid.Parse(s)
		if err != nil {
			continue
		}
		switch {
		case b.Localpart() != "" && b.Resourcepart() != "":
			if b.Equal(to) {
				return true
			}
		case b.Localpart() != "":
			if b.Equal(to.Bare()) {
				return true
			}
		case b.Resourcepart() != "":
			if b.Domainpart() == to.Domainpart() && b.Resourcepart() == to.Resourcepart() {
				return true
			}
		default:
			if b.Domainpart() == to.Domainpart() {
				return true
			}
		}
	}
	return false
}
