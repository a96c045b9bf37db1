package pep

import (
	"context"
	"errors"
	"fmt"

	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/stanza"
	"github.com/palisade-im/palisade/storage"
	"mellium.im/xmpp/jid"
)

// handleOwner serves http://jabber.org/protocol/pubsub#owner (XEP-0060
// section 8): node configuration, default configuration and deletion.
func (m *Module) handleOwner(ctx context.Context, _ module.Session, iq *stanza.Stanza) (*element.Element, error) {
	owner := iq.To.Bare()
	kids := iq.Payload().Elements()
	if len(kids) != 1 || kids[0].Space != NSOwner {
		return nil, stanza.Err(stanza.Modify, stanza.BadRequest, "one pubsub#owner element per request")
	}
	req := kids[0]
	if !iq.From.Bare().Equal(owner) {
		return nil, errForbidden
	}
	switch iq.Type + " " + req.Local {
	case "get configure":
		return m.getConfig(ctx, owner, req)
	case "set configure":
		return m.setConfig(ctx, owner, req)
	case "get default":
		return element.New(NSOwner, "pubsub").Append(
			element.New(NSOwner, "default").Append(configForm(defaultConfig()))), nil
	case "set delete":
		return m.deleteNode(ctx, owner, req)
	case "set purge":
		return nil, unsupported("purge-nodes")
	case "get affiliations", "set affiliations":
		return nil, unsupported("modify-affiliations")
	case "get subscriptions", "set subscriptions":
		return nil, unsupported("manage-subscriptions")
	}
	return nil, stanza.Err(stanza.Modify, stanza.BadRequest, "unknown pubsub#owner request")
}

func (m *Module) node(ctx context.Context, owner jid.JID, req *element.Element) (storage.PubSubNode, error) {
	name, se := nodeName(req)
	if se != nil {
		return storage.PubSubNode{}, se
	}
	n, err := m.store.Node(ctx, owner.String(), name)
	if errors.Is(err, storage.ErrNotFound) {
		return n, errNoNode
	}
	if err != nil {
		return n, fmt.Errorf("pep: node %s of %s: %w", name, owner, err)
	}
	return n, nil
}

func (m *Module) getConfig(ctx context.Context, owner jid.JID, req *element.Element) (*element.Element, error) {
	n, err := m.node(ctx, owner, req)
	if err != nil {
		return nil, err
	}
	return element.New(NSOwner, "pubsub").Append(
		element.New(NSOwner, "configure", element.A("node", n.Name)).Append(configForm(n.Config))), nil
}

func (m *Module) setConfig(ctx context.Context, owner jid.JID, req *element.Element) (*element.Element, error) {
	f, se := readForm(req.Child(NSData, "x"), NSNodeConfig)
	if se != nil {
		return nil, se
	}
	unlock := m.lock(owner.String())
	defer unlock()
	n, err := m.node(ctx, owner, req)
	if err != nil {
		return nil, err
	}
	if f == nil {
		return nil, nil // cancelled (XEP-0060 section 8.2.5)
	}
	cfg := n.Config
	if se := m.apply(&cfg, f); se != nil {
		return nil, se
	}
	if err := m.store.ConfigureNode(ctx, owner.String(), n.Name, cfg); err != nil {
		return nil, fmt.Errorf("pep: configure %s of %s: %w", n.Name, owner, err)
	}
	return nil, nil
}

// deleteNode handles XEP-0060 section 8.4 and notifies the node's
// recipients (as they were before: subscriptions go with the node).
func (m *Module) deleteNode(ctx context.Context, owner jid.JID, req *element.Element) (*element.Element, error) {
	unlock := m.lock(owner.String())
	n, err := m.node(ctx, owner, req)
	var to []module.Session
	if err == nil {
		to = m.recipients(ctx, owner, n.Name, n.Config)
		err = m.store.DeleteNode(ctx, owner.String(), n.Name)
		if errors.Is(err, storage.ErrNotFound) {
			err = errNoNode
		}
	}
	unlock()
	if err != nil {
		return nil, err
	}
	m.send(ctx, owner, to, element.New(NSEvent, "delete", element.A("node", n.Name)))
	m.syncBookmarks(ctx, owner, n.Name)
	return nil, nil
}
