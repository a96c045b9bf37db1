package private

import (
	"context"

	"github.com/palisade-im/palisade/server/element"
	"mellium.im/xmpp/jid"
)

// bookmarksKey is the key of the XEP-0048 bookmarks fragment,
// <storage xmlns='storage:bookmarks'/>.
const bookmarksKey = "storage:bookmarks storage"

// BookmarkSync is implemented by the module that keeps the PEP views of
// an account's bookmarks in step with its private XML (modules/pep,
// XEP-0402 section 5.3). It is told of every stored bookmarks fragment;
// doc is nil when the fragment was removed. Its own writes go straight to
// storage, so they never come back through this module.
type BookmarkSync interface {
	PrivateBookmarksStored(ctx context.Context, owner jid.JID, doc *element.Element)
}

// bookmarksStored is the hook of a successful set: a stored bookmarks
// fragment is handed to every BookmarkSync among the host's modules.
func (m *Module) bookmarksStored(ctx context.Context, user string, children []*element.Element) {
	if m.peers == nil {
		return
	}
	var doc *element.Element
	found := false
	for _, c := range children {
		if Key(c) == bookmarksKey {
			found = true
			doc = nil
			if len(c.Nodes) > 0 || len(c.Attrs) > 0 {
				doc = c
			}
		}
	}
	if !found {
		return
	}
	owner, err := jid.Parse(user)
	if err != nil {
		return
	}
	for _, x := range m.peers() {
		if s, ok := x.(BookmarkSync); ok {
			s.PrivateBookmarksStored(ctx, owner, doc)
		}
	}
}
