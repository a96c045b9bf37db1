package server

import (
	"testing"

	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/stanza"
	"mellium.im/xmpp/jid"
)

// fakeSession is a module.Session that only has an identity.
type fakeSession struct{ module.Session }

func TestRequestsResolveOnlyFromTarget(t *testing.T) {
	var r requests
	to := jid.MustParse("bob@example.com/phone")
	p := &pending{to: to, reply: make(chan *stanza.Stanza, 1), gone: make(chan struct{})}
	r.add("id1", p)
	reply := func(from string) *stanza.Stanza {
		return stanza.New(stanza.IQ, jid.MustParse(from), jid.MustParse("example.com"), "result", "id1")
	}
	if r.resolve(reply("bob@example.com/laptop")) || r.resolve(reply("bob@example.com")) {
		t.Fatal("a reply from another JID resolved the request")
	}
	if r.resolve(stanza.New(stanza.IQ, to, jid.JID{}, "result", "other")) {
		t.Fatal("a reply with an unknown id resolved something")
	}
	if !r.resolve(reply(to.String())) {
		t.Fatal("the addressed JID's reply did not resolve the request")
	}
	if got := <-p.reply; got.From.String() != to.String() {
		t.Errorf("reply from %s", got.From)
	}
	if r.resolve(reply(to.String())) {
		t.Error("a second reply resolved the request again")
	}
	if len(r.m) != 0 {
		t.Errorf("table not empty: %v", r.m)
	}
}

func TestRequestsSessionEnded(t *testing.T) {
	var r requests
	a, b := &fakeSession{}, &fakeSession{}
	pa := &pending{to: jid.MustParse("a@x/1"), sess: a, reply: make(chan *stanza.Stanza, 1), gone: make(chan struct{})}
	pb := &pending{to: jid.MustParse("b@x/1"), sess: b, reply: make(chan *stanza.Stanza, 1), gone: make(chan struct{})}
	r.add("a", pa)
	r.add("b", pb)
	r.sessionEnded(a)
	select {
	case <-pa.gone:
	default:
		t.Fatal("the ended session's request is still waiting")
	}
	select {
	case <-pb.gone:
		t.Fatal("another session's request was failed")
	default:
	}
	if _, ok := r.m["a"]; ok || len(r.m) != 1 {
		t.Errorf("table after sessionEnded: %v", r.m)
	}
}
