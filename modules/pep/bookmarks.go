package pep

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/storage"
	"go.uber.org/zap"
	"mellium.im/xmpp/jid"
)

// Bookmarks live in three places that clients of different ages use: the
// XEP-0049 private XML fragment <storage xmlns='storage:bookmarks'/>
// (poezio, Psi+), the XEP-0048 PEP node storage:bookmarks holding that same
// fragment as its one item "current" (XEP-0223), and the XEP-0402 PEP node
// urn:xmpp:bookmarks:1 with one <conference/> per item whose id is the
// room's JID (Converse, Dino, Gajim). XEP-0402 section 5.3 asks a server
// advertising #compat and #compat-pep to keep them in step: a write to one
// view is converted and written to the other two.
//
// A converted write goes straight to storage (and, for a PEP view, is
// notified to the owner's interested resources); it never passes through
// the publish or private-storage handlers, whose hooks start a
// conversion, so a conversion cannot trigger another one.
const (
	// NSBookmarks is the XEP-0402 namespace and node.
	NSBookmarks = "urn:xmpp:bookmarks:1"
	// NSLegacyBookmarks is the XEP-0048 namespace and PEP node.
	NSLegacyBookmarks = "storage:bookmarks"
	// FeatureBookmarksCompat says that private XML bookmarks are
	// converted (XEP-0402 section 5.3).
	FeatureBookmarksCompat = NSBookmarks + "#compat"
	// FeatureBookmarksCompatPEP says that XEP-0048 PEP bookmarks are
	// converted (XEP-0402 section 5.3).
	FeatureBookmarksCompatPEP = NSBookmarks + "#compat-pep"

	// privateBookmarksKey is the storage.Private key of the XEP-0049
	// fragment (modules/private keys fragments "NAMESPACE NAME").
	privateBookmarksKey = NSLegacyBookmarks + " storage"
	// legacyItemID is the XEP-0048 item id (XEP-0223 section 3).
	legacyItemID = "current"
)

// bookmarkFeatures are advertised on every account.
var bookmarkFeatures = []string{FeatureBookmarksCompat, FeatureBookmarksCompatPEP}

// bookmark is one room bookmark in the common form of the three views.
type bookmark struct {
	room     string // the room's bare JID, normalized
	name     string
	autojoin bool
	nick     string
	password string
	// ext are the elements of XEP-0402 <extensions/>, which a XEP-0048
	// <conference/> carries as foreign children.
	ext []*element.Element
}

// xsBool reads an XML Schema boolean as the bookmark specs use it.
func xsBool(s string) bool { return s == "true" || s == "1" }

// roomJID normalizes a room address; ok is false when it is not a bare
// JID.
func roomJID(s string) (string, bool) {
	j, err := jid.Parse(s)
	if err != nil || j.Resourcepart() != "" || s == "" {
		return "", false
	}
	return j.String(), true
}

// parseLegacy reads the conferences of a <storage xmlns='storage:bookmarks'/>
// (XEP-0048 section 3.2); conferences without a valid room JID are left
// out, as are <url/> bookmarks (XEP-0402 has none).
func parseLegacy(doc *element.Element) []bookmark {
	if doc == nil {
		return nil
	}
	var out []bookmark
	seen := map[string]bool{}
	for _, c := range doc.Elements() {
		if c.Space != NSLegacyBookmarks || c.Local != "conference" {
			continue
		}
		room, ok := roomJID(c.Attr("jid"))
		if !ok || seen[room] {
			continue
		}
		seen[room] = true
		b := bookmark{room: room, name: c.Attr("name"), autojoin: xsBool(c.Attr("autojoin"))}
		for _, k := range c.Elements() {
			switch {
			case k.Space == NSLegacyBookmarks && k.Local == "nick":
				b.nick = k.Text()
			case k.Space == NSLegacyBookmarks && k.Local == "password":
				b.password = k.Text()
			case k.Space != NSLegacyBookmarks:
				b.ext = append(b.ext, k.Copy())
			}
		}
		out = append(out, b)
	}
	return out
}

// parseNative reads one XEP-0402 item: its id is the room, its payload a
// <conference xmlns='urn:xmpp:bookmarks:1'/>.
func parseNative(id string, payload *element.Element) (bookmark, bool) {
	room, ok := roomJID(id)
	if !ok || payload == nil || payload.Space != NSBookmarks || payload.Local != "conference" {
		return bookmark{}, false
	}
	b := bookmark{room: room, name: payload.Attr("name"), autojoin: xsBool(payload.Attr("autojoin"))}
	b.nick = payload.ChildText(NSBookmarks, "nick")
	b.password = payload.ChildText(NSBookmarks, "password")
	if x := payload.Child(NSBookmarks, "extensions"); x != nil {
		for _, k := range x.Elements() {
			b.ext = append(b.ext, k.Copy())
		}
	}
	return b, true
}

// native renders b as a XEP-0402 <conference/>.
func (b bookmark) native() *element.Element {
	c := element.New(NSBookmarks, "conference")
	if b.autojoin {
		c.SetAttr("autojoin", "true")
	}
	if b.name != "" {
		c.SetAttr("name", b.name)
	}
	if b.nick != "" {
		c.Append(element.New(NSBookmarks, "nick").SetText(b.nick))
	}
	if b.password != "" {
		c.Append(element.New(NSBookmarks, "password").SetText(b.password))
	}
	if len(b.ext) > 0 {
		x := element.New(NSBookmarks, "extensions")
		for _, e := range b.ext {
			x.Append(e.Copy())
		}
		c.Append(x)
	}
	return c
}

// legacy renders b as a XEP-0048 <conference/>.
func (b bookmark) legacy() *element.Element {
	c := element.New(NSLegacyBookmarks, "conference", element.A("jid", b.room))
	if b.autojoin {
		c.SetAttr("autojoin", "true")
	}
	if b.name != "" {
		c.SetAttr("name", b.name)
	}
	if b.nick != "" {
		c.Append(element.New(NSLegacyBookmarks, "nick").SetText(b.nick))
	}
	if b.password != "" {
		c.Append(element.New(NSLegacyBookmarks, "password").SetText(b.password))
	}
	for _, e := range b.ext {
		c.Append(e.Copy())
	}
	return c
}

// legacyDoc renders the bookmarks as a <storage xmlns='storage:bookmarks'/>,
// keeping the <url/> bookmarks of the document it replaces (old), which
// XEP-0402 cannot hold.
func legacyDoc(bms []bookmark, old *element.Element) *element.Element {
	doc := element.New(NSLegacyBookmarks, "storage")
	for _, b := range bms {
		doc.Append(b.legacy())
	}
	if old != nil {
		for _, k := range old.Elements() {
			if k.Space == NSLegacyBookmarks && k.Local == "url" {
				doc.Append(k.Copy())
			}
		}
	}
	return doc
}

// nativeNodeConfig is the XEP-0402 node configuration (section 3.2 and 5.2).
func (m *Module) nativeNodeConfig() storage.NodeConfig {
	return storage.NodeConfig{AccessModel: storage.AccessWhitelist, MaxItems: m.cfg.MaxItems, PersistItems: true,
		SendLastPublished: storage.SendLastNever, NotifyRetract: true}
}

// legacyNodeConfig is the XEP-0048 node configuration (XEP-0223).
func legacyNodeConfig() storage.NodeConfig {
	return storage.NodeConfig{AccessModel: storage.AccessWhitelist, MaxItems: 1, PersistItems: true,
		SendLastPublished: storage.SendLastOnSubAndPresence, NotifyRetract: true}
}

// syncBookmarks is the hook of the PEP write paths: after a publish, a
// retraction or a node deletion on owner's node stored and notified, a
// write to one of the bookmark nodes is converted to the other views.
func (m *Module) syncBookmarks(ctx context.Context, owner jid.JID, node string) {
	switch node {
	case NSBookmarks, NSLegacyBookmarks:
	default:
		return
	}
	unlock := m.lock(owner.String())
	var events []pendingEvent
	var err error
	if node == NSBookmarks {
		events, err = m.fromNative(ctx, owner)
	} else {
		var doc *element.Element
		doc, err = m.latestLegacy(ctx, owner)
		if err == nil {
			events, err = m.fromLegacy(ctx, owner, doc, true, false)
		}
	}
	unlock()
	m.flush(ctx, owner, events)
	if err != nil {
		m.log.Error("bookmarks: conversion failed", zap.String("owner", owner.String()), zap.String("from", node), zap.Error(err))
	}
}

// PrivateBookmarksStored converts the XEP-0049 bookmarks an owner just
// stored (doc nil: removed) to the two PEP views, with notifications.
// modules/private calls it after the fragment is stored.
func (m *Module) PrivateBookmarksStored(ctx context.Context, owner jid.JID, doc *element.Element) {
	owner = owner.Bare()
	unlock := m.lock(owner.String())
	events, err := m.fromLegacy(ctx, owner, doc, false, true)
	unlock()
	m.flush(ctx, owner, events)
	if err != nil {
		m.log.Error("bookmarks: conversion of private XML failed", zap.String("owner", owner.String()), zap.Error(err))
	}
}

// pendingEvent is a notification to send once the owner's lock is released.
type pendingEvent struct {
	node string
	cfg  storage.NodeConfig
	ev   *element.Element
}

func (m *Module) flush(ctx context.Context, owner jid.JID, events []pendingEvent) {
	for _, e := range events {
		m.broadcast(ctx, owner, e.node, e.cfg, e.ev)
	}
}

// latestLegacy returns the XEP-0048 PEP document, nil when there is none.
func (m *Module) latestLegacy(ctx context.Context, owner jid.JID) (*element.Element, error) {
	items, err := m.store.Items(ctx, owner.String(), NSLegacyBookmarks, 1, nil)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && len(items) == 0) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", NSLegacyBookmarks, err)
	}
	doc, err := element.Parse(items[0].Payload, "")
	if err != nil || doc.Space != NSLegacyBookmarks || doc.Local != "storage" {
		return nil, nil // another payload: no bookmarks in it
	}
	return doc, nil
}

// privateStore is the XEP-0049 store, when the module's store has one.
func (m *Module) privateStore() storage.Private {
	p, _ := m.store.(storage.Private)
	return p
}

// privateDoc returns the XEP-0049 document, nil when there is none.
func (m *Module) privateDoc(ctx context.Context, owner jid.JID) (*element.Element, error) {
	p := m.privateStore()
	if p == nil {
		return nil, nil
	}
	data, err := p.GetPrivate(ctx, owner.String(), privateBookmarksKey)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read private bookmarks: %w", err)
	}
	doc, err := element.Parse(data, "")
	if err != nil {
		return nil, fmt.Errorf("parse private bookmarks: %w", err)
	}
	return doc, nil
}

// fromNative writes the XEP-0402 items to the XEP-0048 views.
func (m *Module) fromNative(ctx context.Context, owner jid.JID) ([]pendingEvent, error) {
	items, err := m.store.Items(ctx, owner.String(), NSBookmarks, 0, nil)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("read %s: %w", NSBookmarks, err)
	}
	var bms []bookmark
	// Items come newest first: keep the order clients created them in.
	for i := len(items) - 1; i >= 0; i-- {
		p, err := element.Parse(items[i].Payload, "")
		if err != nil {
			continue
		}
		if b, ok := parseNative(items[i].ID, p); ok {
			bms = append(bms, b)
		}
	}
	var events []pendingEvent
	errP := m.writePrivate(ctx, owner, bms)
	ev, errL := m.writeLegacyPEP(ctx, owner, bms)
	if ev != nil {
		events = append(events, *ev)
	}
	return events, errors.Join(errP, errL)
}

// fromLegacy writes the bookmarks of a XEP-0048 document (nil: none) to
// the XEP-0402 node and to the other XEP-0048 view: the private XML when
// toPrivate, the PEP node when toPEP.
func (m *Module) fromLegacy(ctx context.Context, owner jid.JID, doc *element.Element, toPrivate, toPEP bool) ([]pendingEvent, error) {
	bms := parseLegacy(doc)
	events, err := m.writeNative(ctx, owner, bms)
	if toPrivate {
		err = errors.Join(err, m.writePrivate(ctx, owner, bms))
	}
	if toPEP {
		ev, e := m.writeLegacyPEP(ctx, owner, bms)
		if ev != nil {
			events = append(events, *ev)
		}
		err = errors.Join(err, e)
	}
	return events, err
}

// notPrivate is the error of a conversion refused because the target
// node's owner let others read it: bookmarks (room passwords among them)
// saved in a private view must not reach the owner's contacts. XEP-0402
// and XEP-0048 both ask for the whitelist model.
func notPrivate(node string, cfg storage.NodeConfig) error {
	return fmt.Errorf("node %s has access model %q, not whitelist: bookmarks not copied into it", node, cfg.AccessModel)
}

// writePrivate replaces the XEP-0049 document (keeping its <url/>s).
func (m *Module) writePrivate(ctx context.Context, owner jid.JID, bms []bookmark) error {
	p := m.privateStore()
	if p == nil {
		return nil
	}
	old, err := m.privateDoc(ctx, owner)
	if err != nil {
		return err
	}
	if old == nil && len(bms) == 0 {
		return nil
	}
	doc := legacyDoc(bms, old)
	if old != nil && bytes.Equal(old.AppendTo(nil, ""), doc.AppendTo(nil, "")) {
		return nil
	}
	if err := p.SetPrivate(ctx, owner.String(), privateBookmarksKey, []byte(doc.String())); err != nil {
		return fmt.Errorf("write private bookmarks: %w", err)
	}
	return nil
}

// writeLegacyPEP replaces the XEP-0048 PEP item, returning its
// notification.
func (m *Module) writeLegacyPEP(ctx context.Context, owner jid.JID, bms []bookmark) (*pendingEvent, error) {
	n, err := m.store.Node(ctx, owner.String(), NSLegacyBookmarks)
	var create *storage.NodeConfig
	cfg := n.Config
	switch {
	case errors.Is(err, storage.ErrNotFound):
		if len(bms) == 0 {
			return nil, nil
		}
		cfg = legacyNodeConfig()
		create = &cfg
	case err != nil:
		return nil, fmt.Errorf("read %s: %w", NSLegacyBookmarks, err)
	case cfg.AccessModel != storage.AccessWhitelist:
		return nil, notPrivate(NSLegacyBookmarks, cfg)
	}
	old, err := m.latestLegacy(ctx, owner)
	if err != nil {
		return nil, err
	}
	doc := legacyDoc(bms, old)
	data := doc.AppendTo(nil, "")
	if old != nil && bytes.Equal(old.AppendTo(nil, ""), data) {
		return nil, nil
	}
	item := storage.PubSubItem{ID: legacyItemID, Publisher: owner.String(), Published: time.Now(), Payload: data}
	if _, err := m.store.PublishItem(ctx, owner.String(), NSLegacyBookmarks, item, create, m.quota()); err != nil {
		return nil, fmt.Errorf("write %s: %w", NSLegacyBookmarks, err)
	}
	ev := element.New(NSEvent, "items", element.A("node", NSLegacyBookmarks))
	ev.Append(m.itemElement(NSEvent, item))
	return &pendingEvent{node: NSLegacyBookmarks, cfg: cfg, ev: ev}, nil
}

// writeNative makes the XEP-0402 node hold exactly bms: changed and new
// bookmarks are published, missing ones retracted, each notified.
func (m *Module) writeNative(ctx context.Context, owner jid.JID, bms []bookmark) ([]pendingEvent, error) {
	n, err := m.store.Node(ctx, owner.String(), NSBookmarks)
	var create *storage.NodeConfig
	cfg := n.Config
	have := map[string][]byte{}
	switch {
	case errors.Is(err, storage.ErrNotFound):
		if len(bms) == 0 {
			return nil, nil
		}
		cfg = m.nativeNodeConfig()
		create = &cfg
	case err != nil:
		return nil, fmt.Errorf("read %s: %w", NSBookmarks, err)
	case cfg.AccessModel != storage.AccessWhitelist:
		return nil, notPrivate(NSBookmarks, cfg)
	default:
		items, err := m.store.Items(ctx, owner.String(), NSBookmarks, 0, nil)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", NSBookmarks, err)
		}
		for _, it := range items {
			have[it.ID] = it.Payload
		}
	}
	var events []pendingEvent
	var errs []error
	keep := map[string]bool{}
	for _, b := range bms {
		keep[b.room] = true
		data := b.native().AppendTo(nil, "")
		if old, ok := have[b.room]; ok && bytes.Equal(old, data) {
			continue
		}
		item := storage.PubSubItem{ID: b.room, Publisher: owner.String(), Published: time.Now(), Payload: data}
		if _, err := m.store.PublishItem(ctx, owner.String(), NSBookmarks, item, create, m.quota()); err != nil {
			errs = append(errs, fmt.Errorf("write %s item %s: %w", NSBookmarks, b.room, err))
			continue
		}
		create = nil
		ev := element.New(NSEvent, "items", element.A("node", NSBookmarks))
		ev.Append(m.itemElement(NSEvent, item))
		events = append(events, pendingEvent{node: NSBookmarks, cfg: cfg, ev: ev})
	}
	for id := range have {
		if keep[id] {
			continue
		}
		if err := m.store.RetractItem(ctx, owner.String(), NSBookmarks, id); err != nil && !errors.Is(err, storage.ErrNotFound) {
			errs = append(errs, fmt.Errorf("retract %s item %s: %w", NSBookmarks, id, err))
			continue
		}
		if cfg.NotifyRetract {
			ev := element.New(NSEvent, "items", element.A("node", NSBookmarks))
			ev.Append(element.New(NSEvent, "retract", element.A("id", id)))
			events = append(events, pendingEvent{node: NSBookmarks, cfg: cfg, ev: ev})
		}
	}
	return events, errors.Join(errs...)
}

// migrateBookmarks fills the views of owner's bookmarks that are missing
// from the ones that exist, for accounts whose bookmarks were saved before
// the views were kept in step: the XEP-0402 node, when it exists, is the
// source; otherwise the private XML, otherwise the XEP-0048 PEP node. It
// is the hook of session start, once per account and run: from then on
// every write keeps the views in step, so a later login reads nothing.
func (m *Module) migrateBookmarks(ctx context.Context, owner jid.JID) {
	owner = owner.Bare()
	key := owner.String()
	if _, done := m.bookmarksChecked.LoadOrStore(key, struct{}{}); done {
		return
	}
	unlock := m.lock(key)
	events, err := m.migrate(ctx, owner)
	unlock()
	m.flush(ctx, owner, events)
	if err != nil {
		m.bookmarksChecked.Delete(key) // try again at the next login
		m.log.Error("bookmarks: migration failed", zap.String("owner", key), zap.Error(err))
	}
}

func (m *Module) migrate(ctx context.Context, owner jid.JID) ([]pendingEvent, error) {
	exists := func(node string) (bool, error) {
		_, err := m.store.Node(ctx, owner.String(), node)
		if errors.Is(err, storage.ErrNotFound) {
			return false, nil
		}
		return err == nil, err
	}
	native, err := exists(NSBookmarks)
	if err != nil {
		return nil, err
	}
	legacy, err := exists(NSLegacyBookmarks)
	if err != nil {
		return nil, err
	}
	priv, err := m.privateDoc(ctx, owner)
	if err != nil {
		return nil, err
	}
	hasPriv := priv != nil || m.privateStore() == nil
	switch {
	case native && legacy && hasPriv:
		return nil, nil
	case native:
		return m.fromNative(ctx, owner)
	case priv != nil:
		return m.fromLegacy(ctx, owner, priv, false, !legacy)
	case legacy:
		doc, err := m.latestLegacy(ctx, owner)
		if err != nil {
			return nil, err
		}
		return m.fromLegacy(ctx, owner, doc, true, false)
	}
	return nil, nil
}
