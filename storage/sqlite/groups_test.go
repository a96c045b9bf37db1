package sqlite

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/palisade-im/palisade/storage"
)

func TestGroupMembers(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	for _, u := range []string{"alice", "bob"} {
		if err := s.CreateUser(ctx, storage.User{Localpart: u, Domain: "example.com", SCRAM: creds(1)}); err != nil {
			t.Fatal(err)
		}
	}
	version := func() int64 {
		t.Helper()
		v, err := s.MembershipVersion(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	v0 := version()
	for _, m := range [][2]string{{"ops", "alice@example.com"}, {"staff", "alice@example.com"}, {"ops", "bob@example.com"}} {
		if err := s.AddMember(ctx, m[0], m[1]); err != nil {
			t.Fatalf("AddMember %v: %v", m, err)
		}
	}
	v1 := version()
	if v1 == v0 {
		t.Error("version unchanged by AddMember")
	}
	// Refusals change nothing, not even the version.
	if err := s.AddMember(ctx, "ops", "alice@example.com"); !errors.Is(err, storage.ErrExists) {
		t.Errorf("second AddMember = %v, want ErrExists", err)
	}
	for _, j := range []string{"carol@example.com", "alice@example.org", "nobody"} {
		if err := s.AddMember(ctx, "ops", j); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("AddMember %s = %v, want ErrNotFound", j, err)
		}
	}
	if err := s.RemoveMember(ctx, "staff", "bob@example.com"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("RemoveMember of a non-member = %v, want ErrNotFound", err)
	}
	if v := version(); v != v1 {
		t.Errorf("version %d after refused changes, want %d", v, v1)
	}

	if got, err := s.Members(ctx, "ops"); err != nil || !slices.Equal(got, []string{"alice@example.com", "bob@example.com"}) {
		t.Errorf("Members(ops) = %v, %v", got, err)
	}
	if got, err := s.Members(ctx, "nobody-here"); err != nil || len(got) != 0 {
		t.Errorf("Members(empty) = %v, %v", got, err)
	}
	if got, err := s.GroupsOf(ctx, "alice@example.com"); err != nil || !slices.Equal(got, []string{"ops", "staff"}) {
		t.Errorf("GroupsOf(alice) = %v, %v", got, err)
	}
	all, v, err := s.Memberships(ctx)
	if err != nil || v != v1 || len(all) != 2 || !slices.Equal(all["alice@example.com"], []string{"ops", "staff"}) ||
		!slices.Equal(all["bob@example.com"], []string{"ops"}) {
		t.Errorf("Memberships = %v, %d, %v", all, v, err)
	}

	if err := s.RemoveMember(ctx, "ops", "alice@example.com"); err != nil {
		t.Fatal(err)
	}
	v2 := version()
	if v2 == v1 {
		t.Error("version unchanged by RemoveMember")
	}
	if got, _ := s.GroupsOf(ctx, "alice@example.com"); !slices.Equal(got, []string{"staff"}) {
		t.Errorf("GroupsOf(alice) after removal = %v", got)
	}

	// Deleting an account removes its memberships, and only its.
	if err := s.DeleteUser(ctx, "alice", "example.com"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GroupsOf(ctx, "alice@example.com"); len(got) != 0 {
		t.Errorf("deleted alice still in %v", got)
	}
	if got, _ := s.Members(ctx, "ops"); !slices.Equal(got, []string{"bob@example.com"}) {
		t.Errorf("ops after deleting alice = %v", got)
	}
	v3 := version()
	if v3 == v2 {
		t.Error("version unchanged by deleting a member")
	}
	// A re-created alice starts in no group.
	if err := s.CreateUser(ctx, storage.User{Localpart: "alice", Domain: "example.com", SCRAM: creds(2)}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GroupsOf(ctx, "alice@example.com"); len(got) != 0 {
		t.Errorf("re-created alice in %v", got)
	}
	// Deleting an account in no group leaves the version alone.
	if err := s.DeleteUser(ctx, "alice", "example.com"); err != nil {
		t.Fatal(err)
	}
	if v := version(); v != v3 {
		t.Errorf("version %d after deleting a non-member, want %d", v, v3)
	}
}

// TestGroupMembersSeenByAnotherStore: a change written through one Store
// (the CLI's) is read by another open on the same file (the server's).
func TestGroupMembersSeenByAnotherStore(t *testing.T) {
	ctx := context.Background()
	server, path := openTest(t)
	cli, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if err := cli.CreateUser(ctx, storage.User{Localpart: "alice", Domain: "example.com", SCRAM: creds(1)}); err != nil {
		t.Fatal(err)
	}
	before, _ := server.MembershipVersion(ctx)
	if err := cli.AddMember(ctx, "ops", "alice@example.com"); err != nil {
		t.Fatal(err)
	}
	if v, _ := server.MembershipVersion(ctx); v == before {
		t.Error("the other store sees the old version")
	}
	if got, _ := server.GroupsOf(ctx, "alice@example.com"); !slices.Equal(got, []string{"ops"}) {
		t.Errorf("the other store sees %v", got)
	}
}

// BenchmarkGroupsOf is the read a rights check would cost without the
// in-memory copy of modules/groups; BenchmarkMembershipVersion is what
// that module pays once a second instead.
func BenchmarkGroupsOf(b *testing.B) {
	s, _ := openTest(b)
	benchMembers(b, s)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.GroupsOf(ctx, "u7@example.com"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMembershipVersion(b *testing.B) {
	s, _ := openTest(b)
	benchMembers(b, s)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.MembershipVersion(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

func benchMembers(b *testing.B, s *Store) {
	ctx := context.Background()
	for i := 0; i < 100; i++ {
		u := fmt.Sprintf("u%d", i)
		if err := s.CreateUser(ctx, storage.User{Localpart: u, Domain: "example.com", SCRAM: creds(1)}); err != nil {
			b.Fatal(err)
		}
		for _, g := range []string{"ops", "staff", "traders"} {
			if err := s.AddMember(ctx, g, u+"@example.com"); err != nil {
				b.Fatal(err)
			}
		}
	}
}
