package pep

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/rsm"
	"github.com/palisade-im/palisade/server/stanza"
	"github.com/palisade-im/palisade/storage"
	"go.uber.org/zap"
	"mellium.im/xmpp/jid"
)

// maxIDBytes bounds node names and item ids.
const maxIDBytes = 1023

// handlePubSub serves the http://jabber.org/protocol/pubsub namespace.
func (m *Module) handlePubSub(ctx context.Context, _ module.Session, iq *stanza.Stanza) (*element.Element, error) {
	owner := iq.To.Bare()
	kids := iq.Payload().Elements()
	if len(kids) == 0 {
		return nil, stanza.Err(stanza.Modify, stanza.BadRequest, "empty pubsub request")
	}
	first := kids[0]
	if first.Space != NSPubSub {
		return nil, stanza.Err(stanza.Modify, stanza.BadRequest, "unknown pubsub element")
	}
	switch iq.Type + " " + first.Local {
	case "get items":
		var set *element.Element
		for _, k := range kids[1:] {
			if k.Space != NSRSM || k.Local != "set" || set != nil {
				return nil, stanza.Err(stanza.Modify, stanza.BadRequest, "only an RSM <set/> may follow <items/>")
			}
			set = k
		}
		return m.items(ctx, iq, first, set)
	case "set publish":
		opts, err := follower(kids, "publish-options", "publish")
		if err != nil {
			return nil, err
		}
		return m.publish(ctx, owner, iq.From, first, opts)
	case "set retract":
		if len(kids) != 1 {
			return nil, stanza.Err(stanza.Modify, stanza.BadRequest, "one <retract/> per request")
		}
		return m.retract(ctx, owner, iq.From, first)
	case "set create":
		conf, err := follower(kids, "configure", "create")
		if err != nil {
			return nil, err
		}
		return m.create(ctx, owner, iq.From, first, conf)
	case "set subscribe":
		for _, k := range kids[1:] {
			if k.Space == NSPubSub && k.Local == "options" {
				return nil, unsupported("subscription-options")
			}
			return nil, stanza.Err(stanza.Modify, stanza.BadRequest, "only <options/> may follow <subscribe/>")
		}
		return m.subscribe(ctx, iq, first)
	case "set unsubscribe":
		if len(kids) != 1 {
			return nil, stanza.Err(stanza.Modify, stanza.BadRequest, "one <unsubscribe/> per request")
		}
		return m.unsubscribe(ctx, owner, iq.From, first)
	case "get subscriptions":
		return nil, unsupported("retrieve-subscriptions")
	case "get options", "set options":
		return nil, unsupported("subscription-options")
	case "get affiliations":
		return nil, unsupported("retrieve-affiliations")
	case "get default":
		return nil, unsupported("retrieve-default-sub")
	}
	return nil, stanza.Err(stanza.Modify, stanza.BadRequest, "unknown pubsub request")
}

// nodeName reads and checks the 'node' attribute.
func nodeName(el *element.Element) (string, *stanza.Error) {
	n := el.Attr("node")
	if n == "" {
		return "", errNodeRequired
	}
	if len(n) > maxIDBytes {
		return "", stanza.Err(stanza.Modify, stanza.NotAcceptable, "node name too long")
	}
	return n, nil
}

// publish handles XEP-0060 section 7.1 with auto-create (7.1.4) and
// publish-options (7.1.5, XEP-0223).
func (m *Module) publish(ctx context.Context, owner, from jid.JID, pub, opts *element.Element) (*element.Element, error) {
	if !from.Bare().Equal(owner) {
		return nil, errForbidden
	}
	node, se := nodeName(pub)
	if se != nil {
		return nil, se
	}
	if se := m.e2eForbidden(owner, from, node); se != nil {
		return nil, se
	}
	var items []*element.Element
	for _, k := range pub.Elements() {
		if k.Space != NSPubSub || k.Local != "item" {
			return nil, pubsubErr(stanza.Modify, stanza.BadRequest, "invalid-payload")
		}
		items = append(items, k)
	}
	switch len(items) {
	case 0:
		return nil, pubsubErr(stanza.Modify, stanza.BadRequest, "item-required")
	case 1:
	default:
		return nil, pubsubErr(stanza.Modify, stanza.BadRequest, "invalid-payload")
	}
	payloads := items[0].Elements()
	switch len(payloads) {
	case 0:
		return nil, pubsubErr(stanza.Modify, stanza.BadRequest, "payload-required")
	case 1:
	default:
		return nil, pubsubErr(stanza.Modify, stanza.BadRequest, "invalid-payload")
	}
	id := items[0].Attr("id")
	if id == "" {
		id = newID()
	}
	if len(id) > maxIDBytes {
		return nil, stanza.Err(stanza.Modify, stanza.NotAcceptable, "item id too long")
	}
	data := payloads[0].AppendTo(nil, "")
	if limit := m.maxPayload(node, id); len(data) > limit {
		e := pubsubErr(stanza.Modify, stanza.NotAcceptable, "payload-too-big")
		e.Text = "the largest payload accepted is " + strconv.Itoa(limit) + " bytes"
		return nil, e
	}
	var options fields
	if opts != nil {
		if x := opts.Child(NSData, "x"); x != nil {
			f, se := readForm(x, NSPublishOption)
			if se != nil {
				return nil, se
			}
			options = f
		}
	}

	unlock := m.lock(owner.String())
	n, err := m.store.Node(ctx, owner.String(), node)
	var create *storage.NodeConfig
	cfg := n.Config
	switch {
	case errors.Is(err, storage.ErrNotFound):
		cfg = defaultConfig()
		if se := m.apply(&cfg, options); se != nil {
			unlock()
			return nil, se
		}
		create = &cfg
	case err != nil:
		unlock()
		return nil, fmt.Errorf("pep: node %s of %s: %w", node, owner, err)
	case !m.satisfies(cfg, options):
		unlock()
		e := pubsubErr(stanza.Cancel, stanza.Conflict, "precondition-not-met")
		e.Text = "the node's configuration differs from the publish options"
		return nil, e
	}
	if se := m.readOnly(owner, from, node, cfg); se != nil {
		unlock()
		return nil, se
	}
	item := storage.PubSubItem{ID: id, Publisher: from.String(), Published: time.Now(), Payload: data}
	_, err = m.store.PublishItem(ctx, owner.String(), node, item, create, m.quota())
	unlock()
	if se := m.quotaErr(err); se != nil {
		m.log.Debug("publish refused: quota", zap.String("owner", owner.String()), zap.String("node", node),
			zap.String("quota", se.Text))
		return nil, se
	}
	if err != nil {
		return nil, fmt.Errorf("pep: publish to %s of %s: %w", node, owner, err)
	}

	ev := element.New(NSEvent, "items", element.A("node", node))
	ev.Append(m.itemElement(NSEvent, item))
	m.broadcast(ctx, owner, node, cfg, ev)
	m.syncBookmarks(ctx, owner, node)

	res := element.New(NSPubSub, "pubsub")
	res.Append(element.New(NSPubSub, "publish", element.A("node", node)).
		Append(element.New(NSPubSub, "item", element.A("id", id))))
	return res, nil
}

// items handles item retrieval (XEP-0060 section 6.5): all, the newest
// max_items, or by id, paged with XEP-0059 RSM when set is not nil
// (section 6.5.4). Whatever is asked, the answer stays within the stanza
// limit: the server ends the page where the next item would pass it and
// adds an RSM <set/> so that the client can ask for the rest. Without a
// <set/> in the request that page is the newest items that fit (what
// max_items asks for), with one it is the page RSM asks for.
func (m *Module) items(ctx context.Context, iq *stanza.Stanza, req, set *element.Element) (*element.Element, error) {
	owner, from := iq.To.Bare(), iq.From
	node, se := nodeName(req)
	if se != nil {
		return nil, se
	}
	max := 0
	if v := req.Attr("max_items"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return nil, stanza.Err(stanza.Modify, stanza.BadRequest, "max_items must be a positive integer")
		}
		max = n
	}
	var ids []string
	for _, k := range req.Elements() {
		if k.Space != NSPubSub || k.Local != "item" || k.Attr("id") == "" {
			return nil, pubsubErr(stanza.Modify, stanza.BadRequest, "item-required")
		}
		ids = append(ids, k.Attr("id"))
	}
	if len(ids) > m.cfg.MaxItems {
		return nil, stanza.Err(stanza.Modify, stanza.NotAcceptable, "too many item ids")
	}
	q := rsm.None
	q.Last = true // without a <set/>: the newest items that fit
	if set != nil {
		var err error
		if q, err = rsm.Parse(set); err != nil {
			return nil, err
		}
	}
	if _, err := m.readableNode(ctx, owner, from, node); err != nil {
		return nil, err
	}
	list, err := m.store.ItemRefs(ctx, owner.String(), node)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, errNoNode
	}
	if err != nil {
		return nil, fmt.Errorf("pep: items of %s of %s: %w", node, owner, err)
	}
	if len(ids) > 0 {
		// The result set is the requested items, in the request's order.
		byID := make(map[string]storage.PubSubItemRef, len(list))
		for _, r := range list {
			byID[r.ID] = r
		}
		seen := map[string]bool{}
		list = list[:0:0]
		for _, id := range ids {
			if r, ok := byID[id]; ok && !seen[id] {
				seen[id] = true
				list = append(list, r)
			}
		}
		if len(list) == 0 {
			return nil, errNoNode
		}
		if set == nil {
			q = rsm.None
		}
	} else if max > 0 && len(list) > max {
		list = list[len(list)-max:]
	}
	skeleton := element.New(NSPubSub, "pubsub").Append(element.New(NSPubSub, "items", element.A("node", node)),
		element.New(NSRSM, "set").Append(element.New(NSRSM, "first", element.A("index", "2147483647")),
			element.New(NSRSM, "last"), element.New(NSRSM, "count").SetText("2147483647")))
	budget := m.stanzaLimit() - len(iq.Result(skeleton).Wire())
	p, err := choose(list, q, budget)
	if err != nil {
		return nil, err
	}
	return m.answerItems(ctx, iq, owner.String(), node, list, p, q.Backward(), set != nil)
}

// retract handles XEP-0060 section 7.2, notifying when 'notify' asks for
// it or, without the attribute, when the node's notify_retract is on.
func (m *Module) retract(ctx context.Context, owner, from jid.JID, req *element.Element) (*element.Element, error) {
	if !from.Bare().Equal(owner) {
		return nil, errForbidden
	}
	node, se := nodeName(req)
	if se != nil {
		return nil, se
	}
	kids := req.Elements()
	if len(kids) != 1 || kids[0].Space != NSPubSub || kids[0].Local != "item" || kids[0].Attr("id") == "" {
		return nil, pubsubErr(stanza.Modify, stanza.BadRequest, "item-required")
	}
	id := kids[0].Attr("id")
	var notify *bool
	if v := req.Attr("notify"); v != "" {
		b, ok := parseBool([]string{v})
		if !ok {
			return nil, stanza.Err(stanza.Modify, stanza.BadRequest, "notify must be a boolean")
		}
		notify = &b
	}
	unlock := m.lock(owner.String())
	n, err := m.store.Node(ctx, owner.String(), node)
	if err == nil {
		err = m.store.RetractItem(ctx, owner.String(), node, id)
	}
	unlock()
	if errors.Is(err, storage.ErrNotFound) {
		return nil, errNoNode
	}
	if err != nil {
		return nil, fmt.Errorf("pep: retract from %s of %s: %w", node, owner, err)
	}
	if (notify == nil && n.Config.NotifyRetract) || (notify != nil && *notify) {
		ev := element.New(NSEvent, "items", element.A("node", node))
		ev.Append(element.New(NSEvent, "retract", element.A("id", id)))
		m.broadcast(ctx, owner, node, n.Config, ev)
	}
	m.syncBookmarks(ctx, owner, node)
	return nil, nil
}

// create handles node creation (XEP-0060 section 8.1), with a
// configuration when <configure/> carries a form (8.1.3).
func (m *Module) create(ctx context.Context, owner, from jid.JID, req, conf *element.Element) (*element.Element, error) {
	if !from.Bare().Equal(owner) {
		return nil, errForbidden
	}
	if req.Attr("node") == "" {
		return nil, pubsubErr(stanza.Modify, stanza.NotAcceptable, "nodeid-required") // no instant nodes
	}
	node, se := nodeName(req)
	if se != nil {
		return nil, se
	}
	cfg := defaultConfig()
	if conf != nil {
		if x := conf.Child(NSData, "x"); x != nil {
			f, se := readForm(x, NSNodeConfig)
			if se != nil {
				return nil, se
			}
			if se := m.apply(&cfg, f); se != nil {
				return nil, se
			}
		}
	}
	err := m.store.CreateNode(ctx, storage.PubSubNode{Owner: owner.String(), Name: node, Config: cfg, Created: time.Now()}, m.quota().MaxNodes)
	switch {
	case errors.Is(err, storage.ErrExists):
		return nil, stanza.Err(stanza.Cancel, stanza.Conflict, "the node exists")
	case errors.Is(err, storage.ErrQuota):
		return nil, m.quotaErr(err)
	case err != nil:
		return nil, fmt.Errorf("pep: create %s of %s: %w", node, owner, err)
	}
	m.log.Debug("node created", zap.String("owner", owner.String()), zap.String("node", node))
	return nil, nil
}

// maxSubscriptions bounds the explicit subscriptions one account holds.
const maxSubscriptions = 1000

// subscriber reads the 'jid' of a subscribe or unsubscribe request: the
// requester's bare JID or its own full JID (XEP-0060 section 6.1.3.1).
func subscriber(req *element.Element, from jid.JID) (jid.JID, *stanza.Error) {
	v := req.Attr("jid")
	if v == "" {
		return jid.JID{}, pubsubErr(stanza.Modify, stanza.BadRequest, "jid-required")
	}
	j, err := jid.Parse(v)
	if err != nil || !j.Bare().Equal(from.Bare()) || (j.Resourcepart() != "" && !j.Equal(from)) {
		return jid.JID{}, pubsubErr(stanza.Modify, stanza.BadRequest, "invalid-jid")
	}
	return j, nil
}

// subscribe handles an explicit subscription (XEP-0060 section 6.1): the
// subscribed JID gets notifications whether or not it shares presence,
// as long as the access model lets it read the node. The last item
// follows the result (6.1.7).
func (m *Module) subscribe(ctx context.Context, iq *stanza.Stanza, req *element.Element) (*element.Element, error) {
	owner, from := iq.To.Bare(), iq.From
	node, se := nodeName(req)
	if se != nil {
		return nil, se
	}
	j, se := subscriber(req, from)
	if se != nil {
		return nil, se
	}
	n, err := m.readableNode(ctx, owner, from, node)
	if err != nil {
		return nil, err
	}
	err = m.store.Subscribe(ctx, owner.String(), node, j.String(), j.Bare().String(), maxSubscriptions)
	switch {
	case errors.Is(err, storage.ErrQuota):
		return nil, pubsubErr(stanza.Cancel, stanza.PolicyViolation, "too-many-subscriptions")
	case errors.Is(err, storage.ErrNotFound):
		return nil, errNoNode
	case err != nil:
		return nil, fmt.Errorf("pep: subscribe %s to %s of %s: %w", j, node, owner, err)
	}
	res := element.New(NSPubSub, "pubsub").Append(element.New(NSPubSub, "subscription",
		element.A("node", node), element.A("jid", j.String()), element.A("subscription", "subscribed")))
	m.router.Route(ctx, iq.Result(res))
	if n.Config.SendLastPublished != storage.SendLastNever {
		if last, err := m.store.Items(ctx, owner.String(), node, 1, nil); err == nil && len(last) > 0 {
			for _, s := range m.sessionsOf(j) {
				m.sendLast(ctx, owner, node, last[0], s)
			}
		}
	}
	return nil, module.ErrHandled
}

// unsubscribe handles XEP-0060 section 6.2.
func (m *Module) unsubscribe(ctx context.Context, owner, from jid.JID, req *element.Element) (*element.Element, error) {
	node, se := nodeName(req)
	if se != nil {
		return nil, se
	}
	j, se := subscriber(req, from)
	if se != nil {
		return nil, se
	}
	if _, err := m.store.Node(ctx, owner.String(), node); errors.Is(err, storage.ErrNotFound) {
		return nil, errNoNode
	} else if err != nil {
		return nil, fmt.Errorf("pep: node %s of %s: %w", node, owner, err)
	}
	err := m.store.Unsubscribe(ctx, owner.String(), node, j.String())
	if errors.Is(err, storage.ErrNotFound) {
		return nil, pubsubErr(stanza.Cancel, stanza.UnexpectedRequest, "not-subscribed")
	}
	if err != nil {
		return nil, fmt.Errorf("pep: unsubscribe %s from %s of %s: %w", j, node, owner, err)
	}
	return nil, nil
}

// follower returns the optional pubsub element named local that may follow
// kids[0] (named after), or bad-request for anything else or a second one.
func follower(kids []*element.Element, local, after string) (*element.Element, error) {
	var f *element.Element
	for _, k := range kids[1:] {
		if k.Space != NSPubSub || k.Local != local || f != nil {
			return nil, stanza.Err(stanza.Modify, stanza.BadRequest, "only <"+local+"/> may follow <"+after+"/>")
		}
		f = k
	}
	return f, nil
}

// readableNode loads an owner's node that from may read: errNoNode when
// it does not exist, the access model's error when from may not read it.
func (m *Module) readableNode(ctx context.Context, owner, from jid.JID, node string) (storage.PubSubNode, error) {
	n, err := m.store.Node(ctx, owner.String(), node)
	if errors.Is(err, storage.ErrNotFound) {
		return n, errNoNode
	}
	if err != nil {
		return n, fmt.Errorf("pep: node %s of %s: %w", node, owner, err)
	}
	denied, err := m.mayRead(ctx, owner, from.Bare(), n.Config)
	if err != nil {
		return n, err
	}
	if denied != nil {
		return n, denied
	}
	return n, nil
}
