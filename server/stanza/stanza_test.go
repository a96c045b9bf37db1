package stanza

import (
	"bytes"
	"errors"
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

// Parse rewrites 'to' and 'from' in canonical form, and leaves canonical
// ones as written.
func TestParseCanonicalAddresses(t *testing.T) {
	for _, tc := range []struct{ in, to, from string }{
		{`<message to="BoB@LocalHost./Res" from="Alice@EXAMPLE.org"/>`, "bob@localhost/Res", "alice@example.org"},
		{`<message to="bob@localhost/Res" from="alice@example.org/x"/>`, "bob@localhost/Res", "alice@example.org/x"},
		{`<iq to="EXAMPLE.ORG" type="get" id="1"/>`, "example.org", ""},
		{"<message to=\"\uFF22ob@localhost\"/>", "bob@localhost", ""},                        // fullwidth B: width-mapped
		{"<message to=\"re\u0301sume\u0301@localhost\"/>", "r\u00e9sum\u00e9@localhost", ""}, // NFC
	} {
		st := parse(t, tc.in)
		if got := st.El.Attr("to"); got != tc.to || got != st.To.String() {
			t.Errorf("%s: to %q (parsed %q), want %q", tc.in, got, st.To, tc.to)
		}
		if got := st.El.Attr("from"); got != tc.from {
			t.Errorf("%s: from %q, want %q", tc.in, got, tc.from)
		}
	}
}

func TestIsCanonical(t *testing.T) {
	for _, tc := range []struct {
		s    string
		want bool
	}{
		{"bob@localhost", true}, {"localhost", true}, {"localhost/r", true}, {"bob@localhost/r/x@y", true},
		{"Bob@localhost", false}, {"bob@LOCALHOST", false}, {"bob@localhost.", false}, {"bob@localhost/R", true},
	} {
		j := jid.MustParse(tc.s)
		if got := IsCanonical(tc.s, j); got != tc.want || got != (tc.s == j.String()) {
			t.Errorf("IsCanonical(%q) = %v, want %v (String %q)", tc.s, got, tc.want, j)
		}
	}
	j := jid.MustParse("bob@localhost/phone")
	if n := testing.AllocsPerRun(100, func() { _ = IsCanonical("bob@localhost/phone", j) }); n != 0 {
		t.Errorf("IsCanonical: %v allocations", n)
	}
}

// A domain with an empty label is jid-malformed: mellium strips one
// trailing dot, so "bob@localhost.." would become "bob@localhost.", an
// address that parses again to another one (found by FuzzJID).
func TestParseAddressEmptyLabels(t *testing.T) {
	for _, to := range []string{"bob@localhost..", "bob@localhost../b", "localhost..", "bob@..", "bob@a..b", "bob@.localhost"} {
		el := element.New(NSClient, "message", element.A("to", to))
		var e *Error
		if _, err := Parse(el); !errors.As(err, &e) || e.Condition != JIDMalformed {
			t.Errorf("to=%q: %v, want jid-malformed", to, err)
		}
	}
	st, err := Parse(element.New(NSClient, "message", element.A("to", "bob@localhost.")))
	if err != nil || st.To.String() != "bob@localhost" || st.El.Attr("to") != "bob@localhost" {
		t.Fatalf("trailing dot: %v %v %s", err, st.To, st.El)
	}
}
