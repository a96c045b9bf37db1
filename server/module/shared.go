package module

import (
	"slices"
	"sync"

	"mellium.im/xmpp/jid"
)

// SharedRoster is implemented by the roster module: the [groups] names
// whose members all see each other (shared_groups).
type SharedRoster interface {
	SharedGroups() []string
}

// SharedGroups tells whether two local accounts share a shared-roster
// group, for the policies that count such members as contacts. It finds
// the SharedRoster among the host's modules on first use (they are all
// built by then).
type SharedGroups struct {
	router  Router
	modules func() []any
	once    sync.Once
	shared  SharedRoster
}

// NewSharedGroups looks for the SharedRoster in modules (nil: none).
func NewSharedGroups(r Router, modules func() []any) *SharedGroups {
	return &SharedGroups{router: r, modules: modules}
}

// Share reports whether account and peer (local) are members of one
// shared-roster group; a peer of another domain never is.
func (s *SharedGroups) Share(account, peer jid.JID) bool {
	if !s.router.IsLocal(peer.Domainpart()) {
		return false
	}
	s.once.Do(func() {
		if s.modules == nil {
			return
		}
		for _, x := range s.modules() {
			if sr, ok := x.(SharedRoster); ok {
				s.shared = sr
				return
			}
		}
	})
	if s.shared == nil {
		return false
	}
	groups := s.shared.SharedGroups()
	if len(groups) == 0 {
		return false
	}
	mine, theirs := s.router.Groups(account), s.router.Groups(peer)
	for _, g := range groups {
		if slices.Contains(mine, g) && slices.Contains(theirs, g) {
			return true
		}
	}
	return false
}
