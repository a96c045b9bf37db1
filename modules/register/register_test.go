package register

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/module/moduletest"
	"github.com/palisade-im/palisade/server/password"
	"github.com/palisade-im/palisade/server/sasl"
	"github.com/palisade-im/palisade/server/stanza"
	"github.com/palisade-im/palisade/storage"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

type env struct {
	m     *Module
	r     *moduletest.Router
	audit *observer.ObservedLogs
}

// policy8 is a policy short enough for XEP-0077's example passwords.
var policy8 = password.Policy{MinLength: 8, RejectCommon: true}

// policy12 is the default policy.
var policy12 = password.Policy{MinLength: 12, RejectCommon: true}

func newEnv(t *testing.T, cfg Config, policy password.Policy) *env {
	t.Helper()
	h, r := moduletest.NewHost(t, nil)
	core, logs := observer.New(zapcore.InfoLevel)
	m, err := New(r, h.Store, h.Log, zap.New(core), cfg, sasl.DefaultIterations, policy)
	if err != nil {
		t.Fatal(err)
	}
	return &env{m: m, r: r, audit: logs}
}

// preAuth sends an IQ on an unauthenticated stream as the core does.
func (e *env) preAuth(t *testing.T, xml string) (*stanza.Stanza, *element.Element, error) {
	t.Helper()
	st := moduletest.Parse(t, xml)
	st.To = moduletest.JID(t, moduletest.Domain)
	res, err := e.m.PreAuthIQ(context.Background(), moduletest.Domain, st)
	return st, res, err
}

func (e *env) verify(t *testing.T, local, password string) bool {
	t.Helper()
	u, err := e.r.Store().GetUser(context.Background(), local, moduletest.Domain)
	if err != nil {
		t.Fatal(err)
	}
	ok, err := sasl.VerifyPassword(sasl.SHA256, u.SCRAM[sasl.SHA256], password)
	if err != nil {
		t.Fatal(err)
	}
	ok1, err := sasl.VerifyPassword(sasl.SHA1, u.SCRAM[sasl.SHA1], password)
	if err != nil {
		t.Fatal(err)
	}
	return ok && ok1
}

func (e *env) noSecrets(t *testing.T, secrets ...string) {
	t.Helper()
	for _, l := range e.audit.All() {
		s := l.Message
		for _, f := range l.Context {
			s += " " + f.String
		}
		for _, p := range secrets {
			if strings.Contains(s, p) {
				t.Errorf("audit event %q holds a password", l.Message)
			}
		}
	}
}

func TestStreamFeature(t *testing.T) {
	off := newEnv(t, *DefaultConfig(), policy12)
	if f := off.m.StreamFeatures(false); len(f) != 0 {
		t.Errorf("registration off but advertised: %v", f)
	}
	on := newEnv(t, Config{Allow: true}, policy8)
	f := on.m.StreamFeatures(false)
	if len(f) != 1 || f[0].String() != `<register xmlns="http://jabber.org/features/iq-register"/>` {
		t.Errorf("pre-auth features %v", f)
	}
	if f := on.m.StreamFeatures(true); len(f) != 0 {
		t.Errorf("post-auth features %v", f)
	}
}

func TestRegistrationOff(t *testing.T) {
	e := newEnv(t, *DefaultConfig(), policy12)
	_, _, err := e.preAuth(t, `<iq type='get' id='reg1'><query xmlns='jabber:iq:register'/></iq>`)
	if moduletest.Condition(err) != stanza.ServiceUnavailable {
		t.Errorf("get: %v", err)
	}
	_, _, err = e.preAuth(t, `<iq type='set' id='reg2'><query xmlns='jabber:iq:register'><username>bill</username><password>Calliope1</password></query></iq>`)
	if moduletest.Condition(err) != stanza.ServiceUnavailable {
		t.Errorf("set: %v", err)
	}
}

func TestRegister(t *testing.T) {
	e := newEnv(t, Config{Allow: true}, policy8)
	// XEP-0077 section 3.1: the fields ...
	_, res, err := e.preAuth(t, `<iq type='get' id='reg1' to='shakespeare.lit'><query xmlns='jabber:iq:register'/></iq>`)
	want := `<query xmlns="jabber:iq:register"><instructions>` + Instructions + `</instructions><username/><password/></query>`
	if err != nil || moduletest.String(res) != want {
		t.Errorf("get: %s, %v", moduletest.String(res), err)
	}
	// ... and bill registers.
	_, res, err = e.preAuth(t, `<iq type='set' id='reg2'><query xmlns='jabber:iq:register'><username>Bill</username><password>Calliope</password></query></iq>`)
	if err != nil || res != nil {
		t.Fatalf("set: %s, %v", moduletest.String(res), err)
	}
	if !e.verify(t, "bill", "Calliope") {
		t.Error("bill's password does not verify")
	}
	if l := e.audit.FilterMessage("account_created").All(); len(l) != 1 || l[0].ContextMap()["who"] != "bill@example.com" {
		t.Errorf("audit %v", e.audit.All())
	}
	// Section 3.1: the username is taken (conflict).
	_, _, err = e.preAuth(t, `<iq type='set' id='reg2'><query xmlns='jabber:iq:register'><username>bill</username><password>m1ce&amp;men</password></query></iq>`)
	if moduletest.Condition(err) != stanza.Conflict {
		t.Errorf("conflict: %v", err)
	}
	e.noSecrets(t, "Calliope", "m1ce&men")
}

func TestRegisterRefused(t *testing.T) {
	e := newEnv(t, Config{Allow: true}, policy8)
	for _, tc := range []struct {
		query string
		want  stanza.Condition
	}{
		// Section 3.1: required information missing.
		{`<username>bill</username>`, stanza.NotAcceptable},
		{`<password>Calliope1</password>`, stanza.NotAcceptable},
		{`<username>bill</username><password></password>`, stanza.NotAcceptable},
		// Bad usernames.
		{`<username>bill@globe</username><password>Calliope1</password>`, stanza.NotAcceptable},
		{`<username>bi ll</username><password>Calliope1</password>`, stanza.NotAcceptable},
		// Weak passwords: too short, common, the username.
		{`<username>bill</username><password>short</password>`, stanza.NotAcceptable},
		{`<username>bill</username><password>Password123</password>`, stanza.NotAcceptable},
		{`<username>bill</username><password>qwertyuiop</password>`, stanza.NotAcceptable},
		{`<username>williamshakespeare</username><password>WilliamShakespeare</password>`, stanza.NotAcceptable},
		{`<username>bill</username><password>` + strings.Repeat("x", password.MaxBytes+1) + `</password>`, stanza.NotAcceptable},
		// No removal before authentication.
		{`<remove/>`, stanza.UnexpectedRequest},
	} {
		st, _, err := e.preAuth(t, `<iq type='set' id='reg'><query xmlns='jabber:iq:register'>`+tc.query+`</query></iq>`)
		if moduletest.Condition(err) != tc.want {
			t.Errorf("%s: %v, want %s", tc.query, err, tc.want)
		}
		// Section 3.1: the error reply carries the request's <query/> with
		// every field (a client rebuilds its form from it), but not the
		// password's value.
		var se *stanza.Error
		if !errors.As(err, &se) {
			continue
		}
		q := st.ErrorReply(se).Payload()
		if q == nil || q.Space != NS || q.Local != "query" {
			t.Errorf("%s: error reply without the query: %v", tc.query, q)
			continue
		}
		req := moduletest.Parse(t, `<iq type='set' id='reg'><query xmlns='jabber:iq:register'>`+tc.query+`</query></iq>`).Payload()
		var got, want []string
		for _, f := range q.Elements() {
			got = append(got, f.Local)
			if f.Local == "password" && f.Text() != "" {
				t.Errorf("%s: the error reply sends the password back", tc.query)
			}
			if f.Local == "username" && f.Text() != req.ChildText(NS, "username") {
				t.Errorf("%s: username %q in the error reply", tc.query, f.Text())
			}
		}
		for _, f := range req.Elements() {
			want = append(want, f.Local)
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s: error reply fields %v, want %v", tc.query, got, want)
		}
	}
	if _, err := e.r.Store().GetUser(context.Background(), "bill", moduletest.Domain); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("bill was created: %v", err)
	}
	if n := len(e.audit.All()); n != 0 {
		t.Errorf("%d audit events for refused registrations", n)
	}
}

func TestChangePassword(t *testing.T) {
	e := newEnv(t, *DefaultConfig(), policy12)
	ctx := context.Background()
	creds, err := sasl.DeriveAll("old-secret-1", sasl.DefaultIterations)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.r.Store().SetCredentials(ctx, "alice", moduletest.Domain, creds); err != nil {
		t.Fatal(err)
	}
	alice := e.r.Login(t, "alice@example.com/globe")

	res, err := moduletest.RequestSession(t, e.m, alice, module.ScopeServer, `<iq type='get' to='example.com' id='reg1'><query xmlns='jabber:iq:register'/></iq>`)
	if err != nil || moduletest.String(res) != `<query xmlns="jabber:iq:register"><registered/><username>alice</username><password/></query>` {
		t.Errorf("get: %s, %v", moduletest.String(res), err)
	}

	for _, tc := range []struct {
		iq   string
		want stanza.Condition
	}{
		// XEP-0077 section 3.3's example password is too short for the policy.
		{`<iq type='set' to='example.com' id='change1'><query xmlns='jabber:iq:register'><username>alice</username><password>newpass</password></query></iq>`, stanza.NotAcceptable},
		// An empty password keeps the current one.
		{`<iq type='set' to='example.com' id='change2'><query xmlns='jabber:iq:register'><username>alice</username><password/></query></iq>`, stanza.BadRequest},
		{`<iq type='set' to='example.com' id='change3'><query xmlns='jabber:iq:register'><password>new-secret-2</password></query></iq>`, stanza.BadRequest},
		// Someone else's password.
		{`<iq type='set' to='example.com' id='change4'><query xmlns='jabber:iq:register'><username>bob</username><password>new-secret-2</password></query></iq>`, stanza.Forbidden},
		{`<iq type='set' to='bob@example.com' id='change5'><query xmlns='jabber:iq:register'><username>alice</username><password>new-secret-2</password></query></iq>`, stanza.Forbidden},
		{`<iq type='set' to='other.example' id='change6'><query xmlns='jabber:iq:register'><username>alice</username><password>new-secret-2</password></query></iq>`, stanza.Forbidden},
	} {
		scope := module.ScopeServer
		if strings.Contains(tc.iq, "bob@") {
			scope = module.ScopeAccount
		}
		_, err := moduletest.RequestSession(t, e.m, alice, scope, tc.iq)
		if moduletest.Condition(err) != tc.want {
			t.Errorf("%s: %v, want %s", tc.iq, err, tc.want)
		}
		// Section 3.3: the error does not return the original XML.
		st := moduletest.Parse(t, tc.iq)
		st.SetFrom(alice.JID())
		var se *stanza.Error
		if _, err := e.m.handle(ctx, alice, st); errors.As(err, &se) {
			if p := st.ErrorReply(se).Payload(); p != nil && p.Space == NS {
				t.Errorf("%s: the error reply returns the request: %s", tc.iq, p)
			}
		}
	}
	if !e.verify(t, "alice", "old-secret-1") {
		t.Fatal("a refused change altered the password")
	}

	// A change with no 'to' (the account), and one to the server.
	if _, err := moduletest.RequestSession(t, e.m, alice, module.ScopeAccount,
		`<iq type='set' id='change7'><query xmlns='jabber:iq:register'><username>alice</username><password>new-secret-2</password></query></iq>`); err != nil {
		t.Fatal(err)
	}
	if !e.verify(t, "alice", "new-secret-2") {
		t.Error("password not changed")
	}
	if _, err := moduletest.RequestSession(t, e.m, alice, module.ScopeServer,
		`<iq type='set' to='example.com' id='change8'><query xmlns='jabber:iq:register'><username>alice</username><password>new-secret-3</password></query></iq>`); err != nil {
		t.Fatal(err)
	}
	if !e.verify(t, "alice", "new-secret-3") {
		t.Error("password not changed")
	}
	if l := e.audit.FilterMessage("password_changed").All(); len(l) != 2 {
		t.Errorf("audit %v", e.audit.All())
	}
	e.noSecrets(t, "new-secret-2", "new-secret-3", "old-secret-1")

	// Not from a local session.
	_, err = moduletest.Request(t, e.m, "alice@example.com/globe", module.ScopeServer,
		`<iq type='set' to='example.com' id='change9'><query xmlns='jabber:iq:register'><username>alice</username><password>new-secret-4</password></query></iq>`)
	if moduletest.Condition(err) != stanza.ServiceUnavailable {
		t.Errorf("no session: %v", err)
	}
}

func TestRemove(t *testing.T) {
	ctx := context.Background()
	off := newEnv(t, *DefaultConfig(), policy12)
	s := off.r.Login(t, "bill@example.com/globe")
	// XEP-0077 section 3.2, with in-band removal not allowed.
	_, err := moduletest.RequestSession(t, off.m, s, module.ScopeAccount,
		`<iq type='set' from='bill@shakespeare.lit/globe' id='unreg1'><query xmlns='jabber:iq:register'><remove/></query></iq>`)
	if moduletest.Condition(err) != stanza.NotAllowed {
		t.Errorf("not allowed: %v", err)
	}

	e := newEnv(t, Config{Allow: true}, policy8)
	globe := e.r.Login(t, "juliet@example.com/globe")
	balcony := e.r.Login(t, "juliet@example.com/balcony")
	_, err = moduletest.RequestSession(t, e.m, globe, module.ScopeAccount,
		`<iq type='set' id='unreg0'><query xmlns='jabber:iq:register'><remove/><username>juliet</username></query></iq>`)
	if moduletest.Condition(err) != stanza.BadRequest {
		t.Errorf("remove with more: %v", err)
	}
	// Section 3.2: cancellation.
	_, err = moduletest.RequestSession(t, e.m, globe, module.ScopeAccount,
		`<iq type='set' id='unreg1'><query xmlns='jabber:iq:register'><remove/></query></iq>`)
	if !errors.Is(err, module.ErrHandled) {
		t.Fatalf("remove: %v", err)
	}
	if _, err := e.r.Store().GetUser(ctx, "juliet", moduletest.Domain); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("juliet still exists: %v", err)
	}
	if got := globe.TakeXML(); len(got) != 1 || got[0] != `<iq xmlns="jabber:client" type="result" id="unreg1" from="juliet@example.com" to="juliet@example.com/globe"/>` {
		t.Errorf("result: %v", got)
	}
	if globe.Closed() != "not-authorized" || balcony.Closed() != "not-authorized" {
		t.Errorf("sessions not closed: %q %q", globe.Closed(), balcony.Closed())
	}
	if l := e.audit.FilterMessage("account_removed").All(); len(l) != 1 {
		t.Errorf("audit %v", e.audit.All())
	}
}

// TestPolicyReasons: with the default policy ([auth] 12 characters, common
// passwords refused) registration and password change answer
// not-acceptable (modify) with the reason as text, and nothing changes.
func TestPolicyReasons(t *testing.T) {
	e := newEnv(t, Config{Allow: true}, policy12)
	ctx := context.Background()
	for _, tc := range []struct{ user, pw, why string }{
		{"bill", "Calliope", "at least 12 characters"},
		{"bill", "Password2026!", "most common"},
		{"bill", "quill-pen-ink-42", ""}, // accepted: creates bill
		{"juliet2", "xyzxyzxyzxyz", "repeated"},
		{"romeo", "romeo1234567!", "name or domain"},
	} {
		_, _, err := e.preAuth(t, `<iq type='set' id='r'><query xmlns='jabber:iq:register'><username>`+tc.user+
			`</username><password>`+tc.pw+`</password></query></iq>`)
		var se *stanza.Error
		if tc.why == "" {
			if err != nil {
				t.Errorf("%s/%s refused: %v", tc.user, tc.pw, err)
			}
			continue
		}
		if !errors.As(err, &se) || se.Condition != stanza.NotAcceptable || se.Type != stanza.Modify ||
			!strings.Contains(se.Text, tc.why) || strings.Contains(se.Text, tc.pw) {
			t.Errorf("%s/%s: %#v, want modify not-acceptable saying %q", tc.user, tc.pw, err, tc.why)
		}
		if _, err := e.r.Store().GetUser(ctx, tc.user, moduletest.Domain); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("%s created despite the refusal: %v", tc.user, err)
		}
	}
	// A password change by alice is held to the same policy.
	alice := e.r.Login(t, "alice@example.com/globe")
	_, err := moduletest.RequestSession(t, e.m, alice, module.ScopeAccount,
		`<iq type='set' id='c'><query xmlns='jabber:iq:register'><username>alice</username><password>qwerty123456</password></query></iq>`)
	var se *stanza.Error
	if !errors.As(err, &se) || se.Condition != stanza.NotAcceptable || !strings.Contains(se.Text, "most common") {
		t.Errorf("change to a common password: %v", err)
	}
	e.noSecrets(t, "Calliope", "Password2026!", "quill-pen-ink-42", "xyzxyzxyzxyz", "romeo1234567!", "qwerty123456")
}

// TestOldLengthKeyRefused: [modules.register] min_password_length moved to
// [auth] password_min_length; a file that still sets it says so.
func TestOldLengthKeyRefused(t *testing.T) {
	err := (&Config{MinPasswordLength: 8}).Validate()
	if err == nil || !strings.Contains(err.Error(), "min_password_length: moved: set [auth] password_min_length") {
		t.Errorf("Validate = %v", err)
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
}
