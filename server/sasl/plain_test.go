package sasl

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func plainCheck(users map[string]string) PasswordCheck {
	return func(_ context.Context, u, p string) (bool, error) {
		want, ok := users[u]
		return ok && want == p, nil
	}
}

func TestPlain(t *testing.T) {
	m := Plain(plainCheck(map[string]string{"alice": "secret pass"}))
	if m.Name() != "PLAIN" {
		t.Errorf("Name() = %q", m.Name())
	}
	for _, tc := range []struct {
		name, msg     string
		want          string // condition, "" for success
		user, authzid string
	}{
		{"ok", "\x00alice\x00secret pass", "", "alice", ""},
		{"case-mapped", "\x00Alice\x00secret pass", "", "alice", ""},
		{"authzid", "admin@example.org\x00alice\x00secret pass", "", "alice", "admin@example.org"},
		{"opaque-string", "\x00alice\x00secret\u00a0pass", "", "alice", ""},
		{"wrong-password", "\x00alice\x00wrong", NotAuthorized, "", ""},
		{"unknown-user", "\x00bob\x00secret pass", NotAuthorized, "", ""},
		{"invalid-username", "\x00\u0007\x00secret pass", NotAuthorized, "", ""},
		{"invalid-password", "\x00alice\x00\u0007", NotAuthorized, "", ""},
		{"no-nul", "alice", MalformedRequest, "", ""},
		{"one-nul", "alice\x00secret", MalformedRequest, "", ""},
		{"extra-nul", "\x00alice\x00secret\x00pass", MalformedRequest, "", ""},
		{"empty-authcid", "\x00\x00secret", MalformedRequest, "", ""},
		{"empty-password", "\x00alice\x00", MalformedRequest, "", ""},
		{"bad-utf8", "\x00al\xffice\x00secret", MalformedRequest, "", ""},
		{"too-long", "\x00alice\x00" + strings.Repeat("x", 2000), MalformedRequest, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ex := m.Start(Binding{})
			out, done, err := ex.Step(context.Background(), []byte(tc.msg))
			if condition(err) != tc.want || done != (tc.want == "") || out != nil {
				t.Fatalf("out=%q done=%v err=%v, want %q", out, done, err, tc.want)
			}
			if ex.Identity() != tc.user || ex.Authzid() != tc.authzid {
				t.Errorf("Identity %q Authzid %q", ex.Identity(), ex.Authzid())
			}
			if _, _, err := ex.Step(context.Background(), []byte(tc.msg)); condition(err) != MalformedRequest {
				t.Errorf("Step after finish: %v", err)
			}
		})
	}
}

func TestPlainEmptyInitialResponse(t *testing.T) {
	m := Plain(plainCheck(map[string]string{"alice": "secret"}))
	ex := m.Start(Binding{})
	out, done, err := ex.Step(context.Background(), nil)
	if err != nil || done || out == nil || len(out) != 0 {
		t.Fatalf("out=%q done=%v err=%v", out, done, err)
	}
	if _, done, err := ex.Step(context.Background(), []byte("\x00alice\x00secret")); !done || err != nil {
		t.Fatalf("done=%v err=%v", done, err)
	}
	ex = m.Start(Binding{})
	ex.Step(context.Background(), nil)
	if _, _, err := ex.Step(context.Background(), nil); condition(err) != MalformedRequest {
		t.Errorf("second empty response: %v", err)
	}
}

func TestPlainBackendFailure(t *testing.T) {
	backend := errors.New("database is locked")
	m := Plain(func(context.Context, string, string) (bool, error) { return false, backend })
	_, _, err := m.Start(Binding{}).Step(context.Background(), []byte("\x00alice\x00secret"))
	if condition(err) != TemporaryAuthFailure || !errors.Is(err, backend) {
		t.Errorf("err = %v", err)
	}
	_, _, err = Plain(nil).Start(Binding{}).Step(context.Background(), []byte("\x00alice\x00secret"))
	if condition(err) != TemporaryAuthFailure {
		t.Errorf("nil check: %v", err)
	}
}

func TestPlainWithCredentials(t *testing.T) {
	store := newTestStore(t, map[string]string{"alice": "secret"})
	m := Plain(CheckWithCredentials(SHA256, store.lookup))
	for msg, want := range map[string]string{
		"\x00Alice\x00secret": "",
		"\x00alice\x00wrong":  NotAuthorized,
		"\x00bob\x00secret":   NotAuthorized,
	} {
		_, _, err := m.Start(Binding{}).Step(context.Background(), []byte(msg))
		if condition(err) != want {
			t.Errorf("%q: err = %v, want %q", msg, err, want)
		}
	}
	store.err = errors.New("down")
	if _, _, err := m.Start(Binding{}).Step(context.Background(), []byte("\x00alice\x00secret")); condition(err) != TemporaryAuthFailure {
		t.Errorf("backend down: %v", err)
	}
}

func FuzzPlain(f *testing.F) {
	for _, s := range []string{
		"\x00alice\x00secret",
		"admin\x00alice\x00secret",
		"\x00Alice\x00secret",
		"\x00\x00",
		"\x00alice\x00secret\x00",
		"\xff\x00\xfe\x00\xfd",
		"",
	} {
		f.Add([]byte(s))
	}
	m := Plain(plainCheck(map[string]string{"alice": "secret"}))
	f.Fuzz(func(t *testing.T, in []byte) {
		ex := m.Start(Binding{})
		out, done, err := ex.Step(context.Background(), in)
		switch {
		case err != nil:
			if condition(err) == "" {
				t.Fatalf("error is not a *Failure: %v", err)
			}
			if done || ex.Identity() != "" {
				t.Fatal("failed exchange reports success")
			}
		case done:
			if ex.Identity() != "alice" {
				t.Fatalf("success as %q", ex.Identity())
			}
		default:
			if len(in) != 0 || len(out) != 0 {
				t.Fatalf("challenge %q for %q", out, in)
			}
		}
	})
}
