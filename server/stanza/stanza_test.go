package stanza

import (
	"bytes"
	"testing"

	"github.com/palisade-im/palisade/server/element"
	"mellium.im/xmpp/jid"
)

func parse(t *testing.T, src string) *Stanza {
	t.Helper()
	el, err := element.Parse([]byte(src), NSClient)
	if err != nil {
		t.Fatal(err)
	}
	st, err := Parse(el)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// AppendStandalone is exactly the element serialized on its own, and Wire
// exactly its serialization in a jabber:client stream.
func TestWireAndStandalone(t *testing.T) {
	for _, src := range []string{
		`<message xmlns="jabber:client" from="a@x/r" to="b@x" type="chat" id="1"><body>hi &amp; "quoted" &lt;3</body></message>`,
		`<message xmlns="jabber:client" to="b@x"/>`,
		`<presence xmlns="jabber:client" to="b@x" type="subscribe"/>`,
		`<message xmlns="jabber:client" to="b@x" xml:lang="de"><x xmlns="urn:y" a="1"><z/></x><body>ü</body></message>`,
		`<message xmlns="jabber:server" to="b@x"><body>s2s</body></message>`,
	} {
		st := parse(t, src)
		if got, want := st.AppendStandalone([]byte("pre")), append([]byte("pre"), st.El.AppendTo(nil, "")...); !bytes.Equal(got, want) {
			t.Errorf("AppendStandalone\n got %s\nwant %s", got, want)
		}
		if got, want := st.Wire(), st.El.AppendTo(nil, NSClient); !bytes.Equal(got, want) {
			t.Errorf("Wire\n got %s\nwant %s", got, want)
		}
	}
}

// Wire's bytes follow the setters and Changed, and copies do not share them.
func TestWireForgotten(t *testing.T) {
	st := parse(t, `<message xmlns="jabber:client" to="b@x" type="chat"><body>1</body></message>`)
	_ = st.Wire()
	c := st.Copy()
	c.El.Append(element.New(NSClient, "subject"))
	if bytes.Equal(c.Wire(), st.Wire()) {
		t.Error("a copy changed through El kept the original's bytes")
	}
	st.SetTo(jid.MustParse("c@x"))
	if !bytes.Contains(st.Wire(), []byte(`to="c@x"`)) {
		t.Errorf("SetTo not reflected: %s", st.Wire())
	}
	st.SetType("normal")
	if !bytes.Contains(st.Wire(), []byte(`type="normal"`)) {
		t.Errorf("SetType not reflected: %s", st.Wire())
	}
	st.El.Append(element.New(NSClient, "thread"))
	st.Changed()
	if !bytes.Contains(st.Wire(), []byte(`<thread/>`)) {
		t.Errorf("Changed not reflected: %s", st.Wire())
	}
}
