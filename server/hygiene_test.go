package server

import (
	"strings"
	"testing"

	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/stanza"
	"mellium.im/xmpp/jid"
)

func isLocalTest(d string) bool { return d == "example.org" || d == "chat.example.org" }

// serverClaims removes every stamp in our name and only those, and refuses
// the server's wrappers.
func TestServerClaims(t *testing.T) {
	sender := jid.MustParse("alice@example.org/phone")
	for _, tc := range []struct {
		name, in, want string
		refused        refusal
	}{
		{"plain", `<message><body>hi</body><active xmlns="http://jabber.org/protocol/chatstates"/></message>`,
			`<body>hi</body><active xmlns="http://jabber.org/protocol/chatstates"/>`, ""},
		{"delays",
			`<message><body>1</body>` +
				`<delay xmlns="urn:xmpp:delay" from="example.org" stamp="s1"/>` +
				`<delay xmlns="urn:xmpp:delay" from="EXAMPLE.ORG." stamp="s2"/>` +
				`<delay xmlns="urn:xmpp:delay" from="chat.example.org" stamp="s3"/>` +
				`<delay xmlns="urn:xmpp:delay" from="bob@example.org/x" stamp="s4"/>` +
				`<delay xmlns="urn:xmpp:delay" from="@@" stamp="s5"/>` +
				`<delay xmlns="urn:xmpp:delay" from="alice@example.org/laptop" stamp="own1"/>` +
				`<delay xmlns="urn:xmpp:delay" from="alice@example.org" stamp="own2"/>` +
				`<delay xmlns="urn:xmpp:delay" from="other.net" stamp="remote"/>` +
				`<delay xmlns="urn:xmpp:delay" stamp="nofrom"/>` +
				`<delay xmlns="urn:e2e:other" from="example.org"/></message>`,
			`<body>1</body><delay xmlns="urn:xmpp:delay" from="alice@example.org/laptop" stamp="own1"/>` +
				`<delay xmlns="urn:xmpp:delay" from="alice@example.org" stamp="own2"/>` +
				`<delay xmlns="urn:xmpp:delay" from="other.net" stamp="remote"/>` +
				`<delay xmlns="urn:xmpp:delay" stamp="nofrom"/><delay xmlns="urn:e2e:other" from="example.org"/>`, ""},
		{"stanza-ids",
			`<message><stanza-id xmlns="urn:xmpp:sid:0" by="example.org" id="1"/>text` +
				`<stanza-id xmlns="urn:xmpp:sid:0" by="example.org" id="2"/>` +
				`<stanza-id xmlns="urn:xmpp:sid:0" by="alice@example.org" id="3"/>` +
				`<stanza-id xmlns="urn:xmpp:sid:0" by="bob@Example.org" id="4"/>` +
				`<stanza-id xmlns="urn:xmpp:sid:0" by="room@other.net" id="keep"/>` +
				`<origin-id xmlns="urn:xmpp:sid:0" id="own"/>` +
				`<stanza-id xmlns="urn:xmpp:sid:0" by="example.org" id="5"/></message>`,
			`text<stanza-id xmlns="urn:xmpp:sid:0" by="room@other.net" id="keep"/><origin-id xmlns="urn:xmpp:sid:0" id="own"/>`, ""},
		{"carbon received", `<message><received xmlns="urn:xmpp:carbons:2"><forwarded xmlns="urn:xmpp:forward:0"/></received></message>`, "", refusedCarbon},
		{"carbon sent", `<message><body>x</body><sent xmlns="urn:xmpp:carbons:2"/></message>`, "", refusedCarbon},
		{"old carbon", `<message><sent xmlns="urn:xmpp:carbons:1"/></message>`, "", refusedCarbon},
		{"mam result", `<message><result xmlns="urn:xmpp:mam:2" queryid="q" id="i"/></message>`, "", refusedMAMResult},
		{"mam result 0", `<message><result xmlns="urn:xmpp:mam:0" id="i"/></message>`, "", refusedMAMResult},
		{"private hint and forward stay",
			`<message><private xmlns="urn:xmpp:carbons:2"/><forwarded xmlns="urn:xmpp:forward:0"><delay xmlns="urn:xmpp:delay" from="example.org"/></forwarded><result xmlns="urn:e2e:x"/></message>`,
			`<private xmlns="urn:xmpp:carbons:2"/><forwarded xmlns="urn:xmpp:forward:0"><delay xmlns="urn:xmpp:delay" from="example.org"/></forwarded><result xmlns="urn:e2e:x"/>`, ""},
	} {
		el, err := element.Parse([]byte(tc.in), stanza.NSClient)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		before := el.String()
		refused, stripped := serverClaims(el, isLocalTest, sender)
		if refused != tc.refused {
			t.Errorf("%s: refused %q, want %q", tc.name, refused, tc.refused)
		}
		if tc.refused != "" {
			continue
		}
		var got strings.Builder
		for _, n := range el.Nodes {
			if n.El != nil {
				got.Write(n.El.AppendTo(nil, stanza.NSClient))
			} else {
				got.WriteString(n.Text)
			}
		}
		if got.String() != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got.String(), tc.want)
		}
		if stripped != (el.String() != before) {
			t.Errorf("%s: stripped=%v, but the element went from %s to %s", tc.name, stripped, before, el.String())
		}
	}
}

// A stamp or id in our name is found in any of its attributes, should
// duplicates get past the parser.
func TestServerClaimsEveryAttribute(t *testing.T) {
	el := element.New(stanza.NSClient, "message").Append(
		element.New(nsStanzaID, "stanza-id", element.A("by", "other.net"), element.A("by", "example.org")),
		element.New(stanza.NSDelay, "delay", element.A("from", "alice@example.org"), element.A("from", "example.org")),
	)
	if _, stripped := serverClaims(el, isLocalTest, jid.MustParse("alice@example.org/a")); !stripped || len(el.Nodes) != 0 {
		t.Fatalf("left %s", el)
	}
}

// The scan allocates nothing when there is nothing to remove.
func TestServerClaimsAllocs(t *testing.T) {
	el, err := element.Parse([]byte(`<message to="bob@example.org" type="chat"><body>hello</body>`+
		`<active xmlns="http://jabber.org/protocol/chatstates"/><origin-id xmlns="urn:xmpp:sid:0" id="x"/>`+
		`<request xmlns="urn:xmpp:receipts"/><forwarded xmlns="urn:xmpp:forward:0"/><private xmlns="urn:xmpp:carbons:2"/></message>`), stanza.NSClient)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{domains: map[string]bool{"example.org": true}}
	sender := jid.MustParse("alice@example.org/a")
	if n := testing.AllocsPerRun(100, func() {
		if r, stripped := serverClaims(el, s.IsLocal, sender); r != "" || stripped {
			t.Fatal("claims found")
		}
	}); n != 0 {
		t.Errorf("%v allocations per scan", n)
	}
}
