package moduletest_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/module/moduletest"
	"github.com/palisade-im/palisade/server/stanza"
)

type presenceRecorder struct{ got []string }

func (p *presenceRecorder) OutboundPresence(context.Context, module.Session, *stanza.Stanza) {}
func (p *presenceRecorder) InboundPresence(_ context.Context, st *stanza.Stanza) {
	p.got = append(p.got, st.El.String())
}

func TestRouterDelivery(t *testing.T) {
	ctx := context.Background()
	h, r := moduletest.NewHost(t, nil)
	if h.Router != r || h.Store != r.Store() || h.Config.Server.Domains[0] != moduletest.Domain {
		t.Fatal("host not wired to the router and store")
	}
	balcony := r.Login(t, "juliet@example.com/balcony")
	chamber := r.Login(t, "juliet@example.com/chamber")

	msg := `<message from='romeo@example.net/orchard' to='juliet@example.com/balcony'><body>hi</body></message>`
	r.Route(ctx, moduletest.Parse(t, msg))
	r.Route(ctx, moduletest.Parse(t, `<message from='juliet@example.com/balcony' to='romeo@example.net/orchard'/>`))
	r.Route(ctx, moduletest.Parse(t, `<presence from='romeo@example.net/orchard' to='juliet@example.com/chamber'/>`))
	want := moduletest.Parse(t, msg).El.String()
	if got := balcony.TakeXML(); !slices.Equal(got, []string{want}) {
		t.Errorf("balcony got %q", got)
	}
	if got := chamber.TakeXML(); len(got) != 1 {
		t.Errorf("chamber got %q, want the presence", got)
	}
	if got := r.TakeRemote(); len(got) != 1 || got[0].To.Domainpart() != "example.net" {
		t.Errorf("remote %v", got)
	}
	if n := len(r.Routed()); n != 3 {
		t.Errorf("%d routed", n)
	}
	if n := len(r.TakeRouted()); n != 3 || len(r.Routed()) != 0 {
		t.Errorf("TakeRouted: %d, left %d", n, len(r.Routed()))
	}

	// With a presence handler, local presence goes to it, not to sessions.
	ph := &presenceRecorder{}
	r.SetPresenceHandler(ph)
	r.SetDeny(func(st *stanza.Stanza) bool { return st.To.Localpart() == "bob" })
	if err := r.Process(ctx, moduletest.Parse(t, `<presence from='romeo@example.net' to='juliet@example.com/chamber'/>`)); err != nil {
		t.Fatal(err)
	}
	if err := r.Process(ctx, moduletest.Parse(t, `<presence from='romeo@example.net' to='bob@example.com'/>`)); !errors.Is(err, moduletest.ErrDenied) {
		t.Errorf("deny: %v", err)
	}
	if len(ph.got) != 1 || len(chamber.Take()) != 0 {
		t.Errorf("handler got %q", ph.got)
	}
	if n := len(r.TakeProcessed()); n != 2 {
		t.Errorf("%d processed, want the denied one too", n)
	}

	r.Logout(balcony)
	if r.Session(balcony.JID()) != nil || len(r.Sessions(balcony.JID())) != 1 {
		t.Error("logout left the session bound")
	}
	for _, tc := range []struct {
		jid  string
		want bool
	}{{"carol@example.com", true}, {"nobody@example.com", false}, {"carol@example.net", false}, {"example.com", false}} {
		if ok, err := r.UserExists(ctx, moduletest.JID(t, tc.jid)); err != nil || ok != tc.want {
			t.Errorf("UserExists(%s) = %v, %v", tc.jid, ok, err)
		}
	}
}

func TestSessionState(t *testing.T) {
	_, r := moduletest.NewHost(t, nil)
	s := r.Login(t, "alice@example.com/home")
	s.UpdatePresence(moduletest.Parse(t, `<presence><priority>5</priority></presence>`))
	if !s.Available() || s.Priority() != 5 || s.Presence() == nil {
		t.Errorf("available presence: %v %d %v", s.Available(), s.Priority(), s.Presence())
	}
	s.UpdatePresence(moduletest.Parse(t, `<presence type='unavailable'/>`))
	if s.Available() || s.Priority() != 0 || s.Presence() != nil {
		t.Error("unavailable presence kept state")
	}
	s.SetCarbons(true)
	s.SetRosterRequested()
	s.Close("conflict", "")
	if !s.Carbons() || !s.RosterRequested() || s.Closed() != "conflict" {
		t.Error("state not recorded")
	}
}

type echo struct{}

func (echo) IQRoutes() []module.IQRoute {
	return []module.IQRoute{{Space: "urn:example:echo", Local: "q", Scope: module.ScopeAccount,
		Handle: func(_ context.Context, sess module.Session, iq *stanza.Stanza) (*element.Element, error) {
			return element.New("urn:example:echo", "q", element.A("to", iq.To.String()), element.A("session", sess.JID().String())), nil
		}}}
}

func TestRequest(t *testing.T) {
	_, r := moduletest.NewHost(t, nil)
	s := r.Login(t, "alice@example.com/home")
	res, err := moduletest.RequestSession(t, echo{}, s, module.ScopeAccount, `<iq type='get' id='1'><q xmlns='urn:example:echo'/></iq>`)
	if want := `<q xmlns="urn:example:echo" to="alice@example.com" session="alice@example.com/home"/>`; err != nil || moduletest.String(res) != want {
		t.Errorf("got %s, %v", moduletest.String(res), err)
	}
	_, err = moduletest.Request(t, echo{}, "alice@example.com/home", module.ScopeServer, `<iq type='get' id='2'><q xmlns='urn:example:echo'/></iq>`)
	if moduletest.Condition(err) != stanza.ServiceUnavailable {
		t.Errorf("wrong scope: %v", err)
	}
	if moduletest.String(nil) != "" || moduletest.Condition(errors.New("x")) != "" {
		t.Error("nil/plain error handling")
	}
}

func TestRouterRights(t *testing.T) {
	_, r := moduletest.NewHost(t, nil)
	juliet := moduletest.JID(t, "juliet@example.com/balcony")
	if got := r.AccountRights(juliet); !got.MaySend() || got.FileTransferScope() != config.FileTransferAll {
		t.Errorf("unset rights = %+v, want the permissive defaults", got)
	}
	r.SetRights(juliet.Bare(), config.Rights{FileTransfer: config.FileTransferContacts})
	if got := r.AccountRights(juliet); got.FileTransferScope() != config.FileTransferContacts {
		t.Errorf("rights = %+v, want file_transfer contacts", got)
	}
}
