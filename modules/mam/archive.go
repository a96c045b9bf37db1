package mam

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"strings"
	"time"

	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/stanza"
	"github.com/palisade-im/palisade/storage"
	"go.uber.org/zap"
	"mellium.im/xmpp/jid"
)

// archivable lists payloads that make a message without a body worth
// keeping (XEP-0313 section 5.1.1: content, not state changes).
var archivable = map[[2]string]bool{
	{"eu.siacs.conversations.axolotl", "encrypted"}: true, // OMEMO (XEP-0384 0.3)
	{"urn:xmpp:omemo:2", "encrypted"}:               true, // OMEMO 2
	{"urn:xmpp:openpgp:0", "openpgp"}:               true, // XEP-0373
	{"jabber:x:encrypted", "x"}:                     true, // XEP-0027
	{"jabber:x:oob", "x"}:                           true, // XEP-0066
	{"urn:xmpp:reactions:0", "reactions"}:           true, // XEP-0444
	{"urn:xmpp:message-retract:1", "retract"}:       true, // XEP-0424
	{"urn:xmpp:message-retract:0", "retract"}:       true,
	{"urn:xmpp:sfs:0", "file-sharing"}:              true, // XEP-0447
	{"urn:xmpp:chat-markers:0", "displayed"}:        true, // XEP-0333: read state across devices
}

// Archivable reports whether a message belongs in the users' history: of
// type normal or chat; without an XEP-0334 <no-store/> or
// <no-permanent-store/> hint; with a <body/>, a <store/> hint, or an
// archivable payload (end-to-end encrypted content, reactions,
// retractions, files, displayed markers). Chat states, receipts and other
// state changes alone are not kept.
func Archivable(st *stanza.Stanza) bool {
	if st.Kind != stanza.Message {
		return false
	}
	switch st.Type {
	case "", "normal", "chat":
	default:
		return false
	}
	el := st.El
	if el.Child(NSHints, "no-store") != nil || el.Child(NSHints, "no-permanent-store") != nil {
		return false
	}
	if el.Child(stanza.NSClient, "body") != nil || el.Child(NSHints, "store") != nil {
		return true
	}
	for _, c := range el.Elements() {
		if archivable[[2]string{c.Space, c.Local}] {
			return true
		}
	}
	return false
}

// newMessageID returns a fresh id for a result message: 128 random bits,
// base32.
func newMessageID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("mam: no randomness: " + err.Error())
	}
	return idEncoding.EncodeToString(b[:])
}

// idEncoding is base32 in lower case, unpadded (26 characters).
var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// removeForged deletes every stanza-id whose 'by' is one of our domains or
// an address at one (XEP-0359 section 4: only the archive sets them).
func (m *Module) removeForged(el *element.Element) {
	forged := false
	for _, c := range el.Elements() {
		if c.Space == NSStanzaID && c.Local == "stanza-id" && m.ours(c.Attr("by")) {
			forged = true
			break
		}
	}
	if !forged {
		return
	}
	out := el.Nodes[:0]
	for _, n := range el.Nodes {
		if n.El != nil && n.El.Space == NSStanzaID && n.El.Local == "stanza-id" && m.ours(n.El.Attr("by")) {
			continue
		}
		out = append(out, n)
	}
	for i := len(out); i < len(el.Nodes); i++ {
		el.Nodes[i] = element.Node{}
	}
	el.Nodes = out
}

func (m *Module) ours(by string) bool {
	j, err := jid.Parse(by)
	if err != nil {
		// Unparsable: it cannot name anyone else either.
		return by != ""
	}
	return m.router.IsLocal(j.Domainpart())
}

// ArchiveMessage implements module.MessageArchiver. It removes forged
// stanza-ids; for an archivable message it adds the recipient's
// stanza-id when the recipient is a local account whose preferences
// archive the sender, and returns the commit that queues the sender's and
// the recipient's history items.
func (m *Module) ArchiveMessage(ctx context.Context, st *stanza.Stanza) func() {
	m.removeForged(st.El)
	st.Changed()
	if !Archivable(st) {
		return nil
	}
	from, to := st.From, st.To
	fromBare, toBare := from.Bare(), to.Bare()
	self := fromBare.Equal(toBare)
	// Preferences first: with "never" and no lists (a cached look-up) the
	// account checks are not needed.
	sender := !self && m.wants(ctx, fromBare, to) && m.isLocalUser(ctx, from)
	recipient := m.wants(ctx, toBare, from) && m.isLocalUser(ctx, to)
	if !sender && !recipient {
		return nil
	}
	t := m.now().UTC().Truncate(time.Microsecond) // as precise as the stamps it is shown with
	// Both items hold the message as the sender sent it; the recipient's
	// stanza-id is in the result's id, and is not shown to the sender.
	data := []byte(st.El.String())
	var items []storage.HistoryItem
	if sender {
		items = append(items, storage.HistoryItem{Owner: fromBare.String(), ID: m.store.NewHistoryID(), Time: t, With: to.String(), Stanza: data})
	}
	if recipient {
		id := m.store.NewHistoryID()
		st.El.Append(element.New(NSStanzaID, "stanza-id", element.A("by", toBare.String()), element.A("id", id)))
		st.Changed()
		items = append(items, storage.HistoryItem{Owner: toBare.String(), ID: id, Time: t, With: from.String(), Stanza: data})
	}
	return func() { m.enqueue(items) }
}

// isLocalUser reports whether j is at a local account that exists (a
// bound session proves it; otherwise the store is asked).
func (m *Module) isLocalUser(ctx context.Context, j jid.JID) bool {
	if j.Localpart() == "" || !m.router.IsLocal(j.Domainpart()) {
		return false
	}
	if len(m.router.Sessions(j.Bare())) > 0 {
		return true
	}
	ok, err := m.router.UserExists(ctx, j.Bare())
	if err != nil {
		m.log.Warn("mam: account look-up failed", zap.String("jid", j.Bare().String()), zap.Error(err))
	}
	return ok
}

// wants applies owner's XEP-0441 preferences to the other party.
func (m *Module) wants(ctx context.Context, owner, other jid.JID) bool {
	if owner.Localpart() == "" || !m.router.IsLocal(owner.Domainpart()) {
		return false
	}
	p := m.prefsOf(ctx, owner.String())
	if p.Default == "never" && len(p.Always) == 0 {
		return false
	}
	otherFull, otherBare := other.String(), other.Bare().String()
	match := func(list []string) bool {
		for _, j := range list {
			if j == otherBare || (strings.Contains(j, "/") && j == otherFull) {
				return true
			}
		}
		return false
	}
	if match(p.Never) {
		return false
	}
	if match(p.Always) {
		return true
	}
	switch p.Default {
	case "always":
		return true
	case "roster":
		it, err := m.store.Item(ctx, owner.String(), otherBare)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			m.log.Warn("mam: roster look-up failed", zap.String("owner", owner.String()), zap.Error(err))
		}
		return err == nil && !it.Hidden
	}
	return false
}

// prefsOf returns owner's preferences (the configured default when none
// were set), cached.
func (m *Module) prefsOf(ctx context.Context, owner string) storage.HistoryPrefs {
	m.prefsMu.Lock()
	p, ok := m.prefs[owner]
	m.prefsMu.Unlock()
	if ok {
		return p
	}
	p, err := m.store.HistoryPrefs(ctx, owner)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		p = storage.HistoryPrefs{Default: m.cfg.DefaultPref}
	case err != nil:
		m.log.Warn("mam: preferences unavailable", zap.String("owner", owner), zap.Error(err))
		return storage.HistoryPrefs{Default: m.cfg.DefaultPref} // not cached: try again next time
	}
	m.prefsMu.Lock()
	m.prefs[owner] = p
	m.prefsMu.Unlock()
	return p
}
