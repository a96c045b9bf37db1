package storage

import "context"

// Groups stores which internal accounts are in which Palisade groups
// ([groups] names). Directory accounts get their groups from the
// directory instead. Members are bare JIDs "local@domain" of accounts in
// the Users store.
type Groups interface {
	// AddMember puts an account in a group; ErrNotFound when there is no
	// such internal account, ErrExists when it is a member already.
	AddMember(ctx context.Context, group, bare string) error
	// RemoveMember takes an account out of a group; ErrNotFound when it
	// is not a member.
	RemoveMember(ctx context.Context, group, bare string) error
	// Members returns the members of a group, sorted.
	Members(ctx context.Context, group string) ([]string, error)
	// GroupsOf returns the groups of an account, sorted.
	GroupsOf(ctx context.Context, bare string) ([]string, error)
	// Memberships returns every account's groups (sorted), by bare JID,
	// together with the membership version they were read at.
	Memberships(ctx context.Context) (map[string][]string, int64, error)
	// MembershipVersion returns a number that changes with every change
	// of any membership (AddMember, RemoveMember, DeleteUser of a member),
	// so that a reader can tell cheaply whether to read them again.
	MembershipVersion(ctx context.Context) (int64, error)
}
