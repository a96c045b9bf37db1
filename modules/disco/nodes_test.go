package disco

import (
	"context"
	"testing"

	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/module/moduletest"
	"github.com/palisade-im/palisade/server/stanza"
	"mellium.im/xmpp/jid"
)

// nodes owns the node "cmds" and lists one item to romeo only.
type nodes struct{}

func (nodes) ServerNodeInfo(_ context.Context, node string, _ jid.JID) (Info, bool, error) {
	if node == "refused" {
		return Info{}, true, stanza.Err(stanza.Auth, stanza.Forbidden, "")
	}
	return Info{Identities: []Identity{{Category: "automation", Type: "command-list"}}}, node == "cmds", nil
}

func (nodes) ServerNodeItems(_ context.Context, server jid.JID, node string, requester jid.JID) ([]Item, bool, error) {
	if node != "cmds" {
		return nil, false, nil
	}
	if requester.Localpart() != "romeo" {
		return nil, true, nil
	}
	return []Item{{JID: server.String(), Node: "cmd1", Name: "One"}}, true, nil
}

// TestServerNodes: node queries to a served domain go to the module that
// owns the node; a node nobody owns is item-not-found.
func TestServerNodes(t *testing.T) {
	var m *Module
	h, _ := moduletest.NewHost(t, func() []any { return []any{m, struct{}{}, nodes{}} })
	m, err := New(h, Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		from, query, want string
		cond              stanza.Condition
	}{
		{"romeo@example.com/a", `<query xmlns='http://jabber.org/protocol/disco#items' node='cmds'/>`,
			`<query xmlns="http://jabber.org/protocol/disco#items" node="cmds"><item jid="example.com" node="cmd1" name="One"/></query>`, ""},
		{"juliet@example.com/a", `<query xmlns='http://jabber.org/protocol/disco#items' node='cmds'/>`,
			`<query xmlns="http://jabber.org/protocol/disco#items" node="cmds"/>`, ""},
		{"romeo@example.com/a", `<query xmlns='http://jabber.org/protocol/disco#items' node='other'/>`, "", stanza.ItemNotFound},
		{"romeo@example.com/a", `<query xmlns='http://jabber.org/protocol/disco#info' node='cmds'/>`,
			`<query xmlns="http://jabber.org/protocol/disco#info" node="cmds"><identity category="automation" type="command-list"/></query>`, ""},
		{"romeo@example.com/a", `<query xmlns='http://jabber.org/protocol/disco#info' node='other'/>`, "", stanza.ItemNotFound},
		{"romeo@example.com/a", `<query xmlns='http://jabber.org/protocol/disco#info' node='refused'/>`, "", stanza.Forbidden},
	} {
		res, err := moduletest.Request(t, m, tc.from, module.ScopeServer, `<iq type='get' to='example.com' id='n'>`+tc.query+`</iq>`)
		if tc.cond != "" {
			if moduletest.Condition(err) != tc.cond {
				t.Errorf("%s %s: err %v, want %s", tc.from, tc.query, err, tc.cond)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s %s: %v", tc.from, tc.query, err)
			continue
		}
		if got := moduletest.String(res); got != tc.want {
			t.Errorf("%s %s:\n got %s\nwant %s", tc.from, tc.query, got, tc.want)
		}
	}
}
