package roster

import (
	"context"
	"slices"
	"testing"

	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/module/moduletest"
	"mellium.im/xmpp/jid"
)

// approvals records SubscriptionApproved calls as "owner > subscriber".
type approvals struct{ got []string }

var _ module.SubscriptionObserver = (*approvals)(nil)

func (a *approvals) SubscriptionApproved(_ context.Context, owner, subscriber jid.JID) {
	a.got = append(a.got, owner.String()+" > "+subscriber.String())
}

func newObservedEnv(t *testing.T) (*env, *approvals) {
	t.Helper()
	obs := &approvals{}
	var m *Module
	h, r := moduletest.NewHost(t, func() []any { return []any{m, obs} })
	m = newModule(h.Router, h.Store, h.Log, h.Audit, *DefaultConfig())
	m.modules = h.Modules
	r.SetPresenceHandler(m)
	return &env{t: t, ctx: context.Background(), r: r, m: m, store: h.Store}, obs
}

// TestSubscriptionObservers: granting a subscription (RFC 6121 3.1.5) and
// a pre-approved request (3.4.2) each tell the observers once, after the
// roster change; a request, a refusal or a cancellation does not.
func TestSubscriptionObservers(t *testing.T) {
	e, obs := newObservedEnv(t)
	a := e.online("alice@example.com/a")
	b := e.online("bob@example.com/b")

	e.presence(a, `<presence to='bob@example.com' type='subscribe'/>`)
	if len(obs.got) != 0 {
		t.Fatalf("a request told observers: %v", obs.got)
	}
	e.presence(b, `<presence to='alice@example.com' type='subscribed'/>`)
	if want := []string{"bob@example.com > alice@example.com"}; !slices.Equal(obs.got, want) {
		t.Fatalf("after approval: %v, want %v", obs.got, want)
	}
	if st := e.stateName("bob@example.com", "alice@example.com"); st != "From" {
		t.Fatalf("bob's item for alice is %q when observers ran", st)
	}

	// Pre-approval: carol approves bob before he asks.
	obs.got = nil
	c := e.online("carol@example.com/c")
	e.presence(c, `<presence to='bob@example.com' type='subscribed'/>`)
	if len(obs.got) != 0 {
		t.Fatalf("a pre-approval alone told observers: %v", obs.got)
	}
	e.presence(b, `<presence to='carol@example.com' type='subscribe'/>`)
	if want := []string{"carol@example.com > bob@example.com"}; !slices.Equal(obs.got, want) {
		t.Fatalf("after pre-approved request: %v, want %v", obs.got, want)
	}

	// A refusal is no grant.
	obs.got = nil
	e.presence(c, `<presence to='alice@example.com' type='subscribe'/>`)
	e.presence(a, `<presence to='carol@example.com' type='unsubscribed'/>`)
	if len(obs.got) != 0 {
		t.Fatalf("a refusal told observers: %v", obs.got)
	}
}
