package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
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
	dir, e := newDirectoryEnv(t, func(c *config.Config) {
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

// TestMaxSessionDuration: alice's rule ends her sessions (TCP, WebSocket)
// after max_session_duration with a policy-violation stream error; neither
// an attached nor a detached one can be resumed, the end is audited with
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
	ws := login(t, e, modeWS, "alice", "ws")
	start := time.Now()

	for _, c := range []*client{alice, ws} {
		n := c.next()
		if !n.Is(nsStream, "error") || n.Child(nsStreams, "policy-violation") == nil ||
			n.Child(nsStreams, "text") == nil || !strings.Contains(n.Child(nsStreams, "text").Text, "maximum session duration") {
			t.Fatalf("%s: got %s, want a policy-violation stream error naming the maximum session duration", c.name(), n)
		}
		c.expectClosed()
	}
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

// wantRefused checks that n is the error answer to the stanza id with
// <policy-violation/> of the error type typ.
func wantRefused(t *testing.T, n *Node, id, typ, what string) {
	t.Helper()
	if n.A("id") != id || n.stanzaError() != "policy-violation" || n.Child(nsClient, "error").A("type") != typ {
		t.Fatalf("%s: got %s, want a %s policy-violation error to %s", what, n, typ, id)
	}
}

// journaledFrom returns the journal rows of kind message sent by user
// (bare JID) that are not errors.
func journaledFrom(t *testing.T, e *env, user string) []journalRow {
	t.Helper()
	var out []journalRow
	for _, r := range journalRows(t, e) {
		if bare(r.from) == user && r.typ != "error" {
			out = append(out, r)
		}
	}
	return out
}

// TestAccessReadOnly: carol's rule has send = false: every message she
// sends is refused with a cancel policy-violation, delivered to no one and
// journaled only as the error she got back; she still receives messages
// and directed presence, sends presence and IQs, and the refusals are
// audited.
func TestAccessReadOnly(t *testing.T) {
	t.Parallel()
	e, logs := newEnvObserved(t, func(c *config.Config) {
		c.Access.Rules = []config.Rule{{JID: "carol@localhost", Rights: config.Rights{Send: boolp(false), FileTransfer: "none"}}}
	})
	alice := login(t, e, modeStartTLS, "alice", "a")
	carol := login(t, e, modeStartTLS, "carol", "c")

	carol.send("<message to='alice@localhost/a' type='chat' id='r1'><body>read-only secret</body></message>")
	wantRefused(t, carol.expect(nsClient, "message"), "r1", "cancel", "carol's message")
	carol.send("<message to='alice@localhost' type='chat' id='r2'><active xmlns='http://jabber.org/protocol/chatstates'/></message>")
	wantRefused(t, carol.expect(nsClient, "message"), "r2", "cancel", "carol's chat state")
	carol.send("<message to='carol@localhost' type='chat' id='r3'><body>note to self</body></message>")
	wantRefused(t, carol.expect(nsClient, "message"), "r3", "cancel", "carol's message to herself")
	alice.nothing(quiet)

	// She still receives, sends presence and IQs.
	alice.send("<message to='carol@localhost/c' type='chat' id='in1'><body>for carol</body></message>")
	if m := carol.expect(nsClient, "message"); m.A("id") != "in1" {
		t.Fatalf("carol got %s", m)
	}
	carol.send("<presence to='alice@localhost/a' id='p1'/>")
	if p := alice.expect(nsClient, "presence"); p.A("id") != "p1" || p.A("type") != "" {
		t.Fatalf("alice got %s", p)
	}
	carol.sync()
	alice.sync()

	// Her directed presence is journaled; her refused messages are not.
	if rows := journaledFrom(t, e, "carol@localhost"); len(rows) != 1 || rows[0].kind != "presence" {
		t.Errorf("carol's records (want only her directed presence): %+v", rows)
	}
	if findRow(journalRows(t, e), "for carol") == nil {
		t.Error("the message to carol is not journaled")
	}
	denials := auditEvents(logs, "policy_denied", "from", "carol@localhost/c")
	if len(denials) != 3 || denials[0].ContextMap()["policy"] != "access" ||
		denials[0].ContextMap()["reason"] != "access.rule 1: send = false" {
		t.Errorf("audit: %v", denials)
	}
	// Modules read the rights the core does not apply itself.
	if r := e.srv.AccountRights(jid.MustParse("carol@localhost/c")); r.MaySend() || r.FileTransferScope() != config.FileTransferNone {
		t.Errorf("AccountRights(carol) = %+v", r)
	}
	if r := e.srv.AccountRights(jid.MustParse("alice@localhost")); !r.MaySend() || r.FileTransferScope() != config.FileTransferAll {
		t.Errorf("AccountRights(alice) = %+v", r)
	}
}

// TestAccessNoFederation: bob's rule has federate = false: his messages,
// presence and IQs to another domain are refused with a cancel
// policy-violation before the journal; alice's (default) are journaled
// and meet remote-server-not-found, as the partner cannot be reached.
func TestAccessNoFederation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *config.Config) {
		c.Access.Rules = []config.Rule{{JID: "bob@localhost", Rights: config.Rights{Federate: config.FederateNone()}}}
		// A partner that cannot be reached: alice's stanzas pass the gate.
		c.Federation.Partners = []config.Partner{{Name: "remote", Domains: []string{"remote.example"}, Endpoints: []string{"127.0.0.1:1"}}}
	})
	alice := login(t, e, modeStartTLS, "alice", "a")
	bob := login(t, e, modeStartTLS, "bob", "b")

	bob.send("<message to='someone@remote.example' type='chat' id='f1'><body>outside</body></message>")
	wantRefused(t, bob.expect(nsClient, "message"), "f1", "cancel", "bob's message to another domain")
	bob.send("<presence to='someone@remote.example/x' id='f2'/>")
	wantRefused(t, bob.expect(nsClient, "presence"), "f2", "cancel", "bob's presence to another domain")
	bob.send("<iq type='get' to='remote.example' id='f3'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
	wantRefused(t, bob.expect(nsClient, "iq"), "f3", "cancel", "bob's iq to another domain")

	// Local communication is not federation.
	bob.send("<message to='alice@localhost/a' type='chat' id='f4'><body>inside</body></message>")
	if m := alice.expect(nsClient, "message"); m.A("id") != "f4" {
		t.Fatalf("alice got %s", m)
	}
	alice.send("<message to='someone@remote.example' type='chat' id='f5'><body>alice outside</body></message>")
	if r := alice.expect(nsClient, "message"); r.A("id") != "f5" || r.stanzaError() != "remote-server-not-found" {
		t.Fatalf("alice's message to another domain: got %s", r)
	}
	for _, r := range journaledFrom(t, e, "bob@localhost") {
		if strings.Contains(r.to, "remote.example") {
			t.Errorf("bob's refused stanza is journaled: %+v", r)
		}
	}
	if r := findRow(journalRows(t, e), "alice outside"); r == nil || r.typ != "chat" {
		t.Errorf("alice's message to another domain is not journaled: %+v", r)
	}
}

// TestAccessEncryptionRequired: alice's rule has encryption_required: her
// messages with a body and no OMEMO, OpenPGP or legacy PGP payload are
// refused (modify policy-violation), as are such messages to her; the
// encrypted ones, and chat states and receipts without a body, pass.
func TestAccessEncryptionRequired(t *testing.T) {
	t.Parallel()
	e, logs := newEnvObserved(t, func(c *config.Config) {
		c.Access.Rules = []config.Rule{{JID: "alice@localhost", Rights: config.Rights{EncryptionRequired: true}}}
	})
	alice := login(t, e, modeStartTLS, "alice", "a")
	bob := login(t, e, modeStartTLS, "bob", "b")
	carol := login(t, e, modeStartTLS, "carol", "c")

	alice.send("<message to='bob@localhost/b' type='chat' id='e1'><body>plain text</body></message>")
	n := alice.expect(nsClient, "message")
	wantRefused(t, n, "e1", "modify", "alice's plaintext message")
	if !strings.Contains(n.String(), "encrypt") {
		t.Errorf("the error does not say why: %s", n)
	}
	bob.send("<message to='alice@localhost/a' type='chat' id='e2'><body>plain to alice</body></message>")
	n = bob.expect(nsClient, "message")
	wantRefused(t, n, "e2", "modify", "bob's plaintext message to alice")
	if !strings.Contains(n.String(), "recipient") {
		t.Errorf("the error does not say why: %s", n)
	}
	bob.nothing(quiet)
	alice.nothing(quiet)

	pass := []string{
		// OpenPGP payloads are checked by TestEncryptionRequiredOpenPGP
		// (encryption_test.go): they must parse.
		"<encrypted xmlns='urn:xmpp:omemo:2'><header sid='1'><keys jid='bob@localhost'><key rid='2'>a2V5</key></keys></header><payload>cGF5</payload></encrypted>" +
			"<body>I sent you an OMEMO encrypted message.</body><fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:omemo:2'/>",
		"<encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='1'><key rid='2'>a2V5</key><iv>aXY=</iv></header><payload>cGF5</payload></encrypted>" +
			"<body>[This message is OMEMO encrypted]</body>",
		"<active xmlns='http://jabber.org/protocol/chatstates'/>",
		"<received xmlns='urn:xmpp:receipts' id='e0'/>",
	}
	for i, p := range pass {
		id := "ok" + strconv.Itoa(i)
		alice.send("<message to='bob@localhost/b' type='chat' id='%s'>%s</message>", id, p)
		if m := bob.expect(nsClient, "message"); m.A("id") != id {
			t.Fatalf("bob got %s, want %s", m, id)
		}
		bob.send("<message to='alice@localhost/a' type='chat' id='%s'>%s</message>", id, p)
		if m := alice.expect(nsClient, "message"); m.A("id") != id {
			t.Fatalf("alice got %s, want %s", m, id)
		}
	}
	// Between accounts without the rule, plain text passes.
	bob.send("<message to='carol@localhost/c' type='chat' id='e3'><body>plain to carol</body></message>")
	if m := carol.expect(nsClient, "message"); m.A("id") != "e3" {
		t.Fatalf("carol got %s", m)
	}
	rows := journalRows(t, e)
	for _, text := range []string{"plain text", "plain to alice"} {
		if r := findRow(rows, text); r != nil && r.typ != "error" {
			t.Errorf("refused message %q is journaled: %+v", text, r)
		}
	}
	if got := auditEvents(logs, "policy_denied", "reason", "access.rule 1: encryption_required (sender): the message has a body but no end-to-end encrypted payload"); len(got) != 1 {
		t.Errorf("sender denials audited: %v", got)
	}
	if got := auditEvents(logs, "policy_denied", "reason", "access.rule 1: encryption_required (recipient): the message has a body but no end-to-end encrypted payload"); len(got) != 1 {
		t.Errorf("recipient denials audited: %v", got)
	}
}

// TestAccessRightsFollowGroups: interns are read-only. alice (staff) sends;
// once slapd makes her an intern, the next sync makes her session
// read-only at once, without a new login, and leaving interns gives the
// right back.
func TestAccessRightsFollowGroups(t *testing.T) {
	dir, e := newDirectoryEnv(t, func(c *config.Config) {
		c.Access.Rules = []config.Rule{{Group: "interns", Rights: config.Rights{Send: boolp(false)}}}
	})
	alice := login(t, e, modeStartTLS, "alice", "a")
	bob := login(t, e, modeStartTLS, "bob", "b")
	carol := login(t, e, modeStartTLS, "carol", "c")
	aliceJID := jid.MustParse("alice@localhost")

	carol.send("<message to='bob@localhost/b' type='chat' id='g0'><body>intern</body></message>")
	wantRefused(t, carol.expect(nsClient, "message"), "g0", "cancel", "carol (interns)")
	alice.send("<message to='bob@localhost/b' type='chat' id='g1'><body>staff</body></message>")
	if m := bob.expect(nsClient, "message"); m.A("id") != "g1" {
		t.Fatalf("bob got %s", m)
	}

	waitSend := func(want bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for e.srv.AccountRights(aliceJID).MaySend() != want {
			if time.Now().After(deadline) {
				t.Fatalf("alice's send right did not become %v", want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	dir.Modify(t, "dn: "+ldaptest.InternsDN+"\nchangetype: modify\nadd: member\nmember: "+ldaptest.UserDN("alice")+"\n")
	waitSend(false)
	alice.send("<message to='bob@localhost/b' type='chat' id='g2'><body>now an intern</body></message>")
	wantRefused(t, alice.expect(nsClient, "message"), "g2", "cancel", "alice after joining interns")
	bob.nothing(quiet)

	dir.RemoveMember(t, ldaptest.InternsDN, "alice")
	waitSend(true)
	alice.send("<message to='bob@localhost/b' type='chat' id='g3'><body>staff again</body></message>")
	if m := bob.expect(nsClient, "message"); m.A("id") != "g3" {
		t.Fatalf("bob got %s", m)
	}
}

// newDirectoryEnv starts slapd and a server whose accounts come from it
// (providers ldap, internal; a 200 ms sync) with the [groups] staff and
// interns; edit adds the test's rules.
func newDirectoryEnv(t *testing.T, edit func(*config.Config)) (*ldaptest.Server, *env) {
	t.Helper()
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
		edit(c)
	})
	return dir, e
}
