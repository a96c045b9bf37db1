package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/palisade-im/palisade/conformance/ldaptest"
	ldapmod "github.com/palisade-im/palisade/modules/ldap"
	"github.com/palisade-im/palisade/server/config"
	"go.uber.org/zap/zaptest/observer"
	"mellium.im/xmpp/jid"
)

func boolp(b bool) *bool { return &b }

// authFrom runs STARTTLS and PLAIN from a source address and returns the
// SASL answer.
func authFrom(t *testing.T, e *env, local, user, pw string) *Node {
	t.Helper()
	c := dialFrom(t, e, modeStartTLS, local)
	c.secure()
	return c.authPlain(user, pw)
}

func wantFailure(t *testing.T, n *Node, cond, what string) {
	t.Helper()
	if !n.Is(nsSASL, "failure") || n.Child(nsSASL, cond) == nil {
		t.Fatalf("%s: got %s, want <failure><%s/>", what, n, cond)
	}
}

// TestAccessRules: [[access.rule]] by jid, first match wins, networks
// (127.0.0.2 outside 127.0.0.1/32), login = false, max_sessions, and the
// default.
func TestAccessRules(t *testing.T) {
	e := newEnv(t, func(c *config.Config) {
		c.Access.Default = config.Rights{Login: boolp(true), MaxSessions: 1}
		c.Access.Rules = []config.Rule{
			{JID: "alice@localhost", Rights: config.Rights{Networks: []string{"127.0.0.1/32"}, MaxSessions: 3}},
			{JID: "alice@localhost", Rights: config.Rights{Networks: []string{"127.0.0.2/32"}}}, // never reached
			{JID: "carol@localhost", Rights: config.Rights{Login: boolp(false)}},
		}
	})
	if n := authFrom(t, e, "127.0.0.1", "alice", users["alice"]); !n.Is(nsSASL, "success") {
		t.Fatalf("alice from 127.0.0.1: %s", n)
	}
	wantFailure(t, authFrom(t, e, "127.0.0.2", "alice", users["alice"]), "not-authorized", "alice from 127.0.0.2")
	wantFailure(t, authFrom(t, e, "127.0.0.1", "carol", users["carol"]), "not-authorized", "carol (login = false)")
	// A wrong password from an allowed network is still a wrong password.
	wantFailure(t, authFrom(t, e, "127.0.0.1", "alice", "nope"), "not-authorized", "wrong password")
	// bob gets the default: anywhere, one session.
	if n := authFrom(t, e, "127.0.0.2", "bob", users["bob"]); !n.Is(nsSASL, "success") {
		t.Fatalf("bob from 127.0.0.2: %s", n)
	}
	login(t, e, modeStartTLS, "bob", "one")
	c := dial(t, e, modeStartTLS)
	c.authed("bob")
	c.send("<iq type='set' id='b2'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>two</resource></bind></iq>")
	if n := c.expect(nsClient, "iq"); n.A("type") != "error" || !strings.Contains(n.String(), "resource-constraint") {
		t.Fatalf("bob's second session: %s", n)
	}
	// alice's rule allows three.
	for _, r := range []string{"a", "b", "c"} {
		login(t, e, modeStartTLS, "alice", r)
	}
}

// TestAccessGroups: a [[access.rule]] for a directory group ([groups]):
// staff may log in only from 127.0.0.1, everyone else is refused by the
// default; moving alice out of staff in slapd changes her rights at the
// next sync, without a new login.
func TestAccessGroups(t *testing.T) {
	dir := ldaptest.Start(t)
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte(ldaptest.ServicePassword), 0o600); err != nil {
		t.Fatal(err)
	}
	lc := ldapmod.DefaultConfig()
	lc.URL, lc.BindDN, lc.BindPasswordFile = dir.URL, ldaptest.ServiceDN, secret
	lc.BaseDN, lc.GroupBaseDN = ldaptest.PeopleDN, ldaptest.GroupsDN
	lc.SyncInterval = config.Duration(200 * time.Millisecond)
	e := newEnv(t, func(c *config.Config) {
		c.Auth.Providers = []string{"ldap", "internal"}
		c.Modules["ldap"] = config.Section{Name: "ldap", Value: lc, Line: 1}
		c.Groups = map[string]string{"staff": ldaptest.StaffDN, "interns": ldaptest.InternsDN}
		c.Access.Default = config.Rights{Login: boolp(false)}
		c.Access.Rules = []config.Rule{
			{Group: "staff", Rights: config.Rights{Networks: []string{"127.0.0.1/32"}}},
		}
	})
	c := dial(t, e, modeStartTLS)
	if m := mechanisms(c.secure()); !slices.Equal(m, []string{"PLAIN"}) {
		t.Errorf("directory domain offers %v, want PLAIN only", m)
	}
	if n := authFrom(t, e, "127.0.0.1", "alice", "alice-pw"); !n.Is(nsSASL, "success") {
		t.Fatalf("alice (staff) from 127.0.0.1: %s", n)
	}
	wantFailure(t, authFrom(t, e, "127.0.0.2", "alice", "alice-pw"), "not-authorized", "alice from 127.0.0.2")
	wantFailure(t, authFrom(t, e, "127.0.0.1", "carol", "carol-pw"), "not-authorized", "carol (interns: default)")

	// alice's group changes in the directory while she has a session:
	// her rights follow at the next sync, without a new login.
	desk := login(t, e, modeStartTLS, "alice", "desk")
	alice := jid.MustParse("alice@localhost")
	if _, rule := e.srv.Rights(alice); rule != 0 {
		t.Fatalf("alice's rule = %d, want 0 (staff)", rule)
	}
	dir.RemoveMember(t, ldaptest.StaffDN, "alice")
	dir.Modify(t, "dn: "+ldaptest.InternsDN+"\nchangetype: modify\nadd: member\nmember: "+ldaptest.UserDN("alice")+"\n")
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, rule := e.srv.Rights(alice); rule == -1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("alice's rights did not follow the directory")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The default (login = false) now applies: her session is closed.
	desk.expectStreamError("not-authorized")
	wantFailure(t, authFrom(t, e, "127.0.0.1", "alice", "alice-pw"), "not-authorized", "alice after leaving staff")
}

// auditEvents returns the audit events with the message msg whose field
// key is value.
func auditEvents(logs *observer.ObservedLogs, msg, key, value string) []observer.LoggedEntry {
	var out []observer.LoggedEntry
	for _, e := range logs.FilterMessage(msg).All() {
		if e.ContextMap()[key] == value {
			out = append(out, e)
		}
	}
	return out
}

// waitAudit waits until an audit event msg with key=value was logged.
func waitAudit(t *testing.T, logs *observer.ObservedLogs, msg, key, value string) observer.LoggedEntry {
	t.Helper()
	deadline := time.Now().Add(short)
	for {
		if ev := auditEvents(logs, msg, key, value); len(ev) > 0 {
			return ev[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no audit event %s with %s=%s", msg, key, value)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMaxSessionDuration: alice's rule ends her sessions after
// max_session_duration with a policy-violation stream error; neither the
// attached nor the detached one can be resumed, the end is audited with
// its reason, a new login works, and bob (no limit) is not affected.
func TestMaxSessionDuration(t *testing.T) {
	t.Parallel()
	const maxDur = 2 * time.Second
	e, logs := newEnvObserved(t, func(c *config.Config) {
		c.Access.Rules = []config.Rule{{JID: "alice@localhost", Rights: config.Rights{MaxSessionDuration: config.Duration(maxDur)}}}
	})
	bob := login(t, e, modeStartTLS, "bob", "b")
	alice := login(t, e, modeStartTLS, "alice", "a")
	id := alice.enable()
	// A second session loses its connection at once: it waits detached
	// for a resumption (resume_timeout is a minute) when its time is up.
	gone := login(t, e, modeStartTLS, "alice", "gone")
	goneID := gone.enable()
	_ = gone.raw.Close()
	start := time.Now()

	n := alice.next()
	if !n.Is(nsStream, "error") || n.Child(nsStreams, "policy-violation") == nil ||
		n.Child(nsStreams, "text") == nil || !strings.Contains(n.Child(nsStreams, "text").Text, "maximum session duration") {
		t.Fatalf("alice: got %s, want a policy-violation stream error naming the maximum session duration", n)
	}
	alice.expectClosed()
	if time.Since(start) < maxDur/2 {
		t.Errorf("alice's session ended after %s, before its maximum duration %s", time.Since(start), maxDur)
	}
	ev := waitAudit(t, logs, "session_expired", "jid", "alice@localhost/a")
	if ev.ContextMap()["reason"] != "max_session_duration" {
		t.Errorf("audit event %v lacks reason max_session_duration", ev.ContextMap())
	}
	waitAudit(t, logs, "session_expired", "jid", "alice@localhost/gone")
	waitAudit(t, logs, "session_end", "jid", "alice@localhost/gone")

	for _, r := range []struct{ res, id string }{{"a", id}, {"gone", goneID}} {
		_, n := resumeLogin(t, e, modeStartTLS, "alice", r.id, 0)
		if !n.Is(nsSM, "failed") || n.Child(nsStanzas, "item-not-found") == nil {
			t.Fatalf("resuming alice/%s after its maximum duration: got %s, want <failed><item-not-found/>", r.res, n)
		}
	}

	// A new login works, and bob's session (no limit) goes on.
	again := login(t, e, modeStartTLS, "alice", "again")
	bob.send("<message to='alice@localhost/again' type='chat' id='still'><body>still here</body></message>")
	if m := again.expect(nsClient, "message"); m.A("id") != "still" {
		t.Fatalf("alice/again got %s", m)
	}
	if got := auditEvents(logs, "session_expired", "jid", "bob@localhost/b"); len(got) != 0 {
		t.Errorf("bob's session expired: %v", got)
	}
}
