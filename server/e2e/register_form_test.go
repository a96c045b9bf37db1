package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/palisade-im/palisade/modules/register" // XEP-0077, off unless a test allows it
	"github.com/palisade-im/palisade/server/config"
)

const nsRegister = "jabber:iq:register"

// withRegistration allows in-band registration with a short login deadline
// and a registration window a few times longer.
func withRegistration(auth, window time.Duration) func(*config.Config) {
	return func(c *config.Config) {
		c.Limits.AuthTimeout = config.Duration(auth)
		c.Limits.RegistrationTimeout = config.Duration(window)
		c.Modules["register"] = config.Section{Name: "register", Value: &register.Config{Allow: true}, Line: 1}
	}
}

// registerForm asks for the registration form and checks its fields.
func registerForm(t *testing.T, c *client, id string) {
	t.Helper()
	c.send("<iq type='get' id='%s'><query xmlns='%s'/></iq>", id, nsRegister)
	r := c.expect(nsClient, "iq")
	q := r.Child(nsRegister, "query")
	if r.A("type") != "result" || r.A("id") != id || q == nil || q.Child(nsRegister, "username") == nil || q.Child(nsRegister, "password") == nil {
		t.Fatalf("registration form: %s", r)
	}
}

// TestRegistrationWindow: a stream handed the XEP-0077 form may take
// limits.registration_timeout instead of limits.auth_timeout to log in (a
// user reads and fills in the form), registers, and logs in with the new
// account on the same stream.
func TestRegistrationWindow(t *testing.T) {
	t.Parallel()
	const auth = time.Second
	e := newEnv(t, withRegistration(auth, 20*time.Second))
	c := dial(t, e, modeStartTLS)
	f := c.secure()
	if f.Child("http://jabber.org/features/iq-register", "register") == nil {
		t.Fatalf("no registration feature: %s", f)
	}
	registerForm(t, c, "reg1")
	// The user reads the form for longer than auth_timeout.
	time.Sleep(2 * auth)
	c.send("<iq type='set' id='reg2'><query xmlns='%s'><username>dave</username><password>correct-horse-battery-9</password></query></iq>", nsRegister)
	if r := c.expect(nsClient, "iq"); r.A("type") != "result" || r.A("id") != "reg2" {
		t.Fatalf("registration after %s: %s", 2*auth, r)
	}
	if n := c.authPlain("dave", "correct-horse-battery-9"); !n.Is(nsSASL, "success") {
		t.Fatalf("login with the new account: %s", n)
	}
	c.openOK()
	if j := c.bind("gajim"); j != "dave@localhost/gajim" {
		t.Fatalf("bound %s", j)
	}

	// Without the form, auth_timeout still applies.
	idle := dial(t, e, modeStartTLS)
	idle.secure()
	idle.expectStreamError("connection-timeout")
}

// TestRegistrationWindowBounded: the window is bounded and granted once per
// stream: asking for the form again does not move the deadline further.
func TestRegistrationWindowBounded(t *testing.T) {
	t.Parallel()
	const auth, window = time.Second, 4 * time.Second
	e := newEnv(t, withRegistration(auth, window))
	c := dial(t, e, modeStartTLS)
	c.secure()
	start := time.Now()
	registerForm(t, c, "reg1")
	time.Sleep(2 * auth)
	registerForm(t, c, "reg2") // past auth_timeout: the stream is open
	for {
		n, err := c.tryNext(2 * window)
		if err != nil {
			t.Fatalf("stream not ended with connection-timeout: %v", err)
		}
		if n.Is(nsStream, "error") {
			if n.Child(nsStreams, "connection-timeout") == nil {
				t.Fatalf("got %s, want connection-timeout", n)
			}
			break
		}
		t.Fatalf("got %s while waiting for the deadline", n)
	}
	// A second grant would have ended the stream at 2*auth+window.
	if took := time.Since(start); took >= 2*auth+window {
		t.Errorf("the stream ended %s after the first form, want the one window of %s", took, window)
	}
}

// TestRegistrationErrorKeepsForm: an error answer to a registration set
// carries the request's <query/> with every field (XEP-0077 section 3.1),
// so a client that rebuilds its form from it (Gajim) keeps the password
// field; the password's value is not echoed. A password change's error
// carries none of the request (section 3.3).
func TestRegistrationErrorKeepsForm(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withRegistration(20*time.Second, time.Minute))
	c := dial(t, e, modeStartTLS)
	c.secure()
	registerForm(t, c, "reg1")
	for _, tc := range []struct{ id, fields, cond string }{
		{"weak", "<username>dave</username><password>short</password>", "not-acceptable"},
		{"taken", "<username>alice</username><password>correct-horse-battery-9</password>", "conflict"},
	} {
		c.send("<iq type='set' id='%s'><query xmlns='%s'>%s</query></iq>", tc.id, nsRegister, tc.fields)
		r := c.expect(nsClient, "iq")
		if r.A("id") != tc.id || r.stanzaError() != tc.cond {
			t.Fatalf("%s: got %s, want %s", tc.id, r, tc.cond)
		}
		q := r.Child(nsRegister, "query")
		if q == nil {
			t.Fatalf("%s: error without the query: %s", tc.id, r)
		}
		u, p := q.Child(nsRegister, "username"), q.Child(nsRegister, "password")
		if u == nil || p == nil {
			t.Errorf("%s: error reply lost a field: %s", tc.id, r)
		} else if strings.TrimSpace(p.Text) != "" {
			t.Errorf("%s: error reply sends the password back: %s", tc.id, r)
		}
		if u != nil && !strings.Contains(tc.fields, "<username>"+strings.TrimSpace(u.Text)+"</username>") {
			t.Errorf("%s: username %q in the error reply", tc.id, u.Text)
		}
	}
	// The form still works after the errors.
	c.send("<iq type='set' id='ok'><query xmlns='%s'><username>dave</username><password>correct-horse-battery-9</password></query></iq>", nsRegister)
	if r := c.expect(nsClient, "iq"); r.A("type") != "result" {
		t.Fatalf("registration: %s", r)
	}

	alice := login(t, e, modeStartTLS, "alice", "a")
	alice.send("<iq type='set' id='pw'><query xmlns='%s'><username>alice</username><password>short</password></query></iq>", nsRegister)
	r := alice.expect(nsClient, "iq")
	if r.stanzaError() != "not-acceptable" {
		t.Fatalf("password change: %s", r)
	}
	if r.Child(nsRegister, "query") != nil {
		t.Errorf("password change error returns the request: %s", r)
	}
}
