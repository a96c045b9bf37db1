package stanza

import (
	"testing"
	"unicode/utf8"

	"github.com/palisade-im/palisade/server/element"
	"mellium.im/xmpp/jid"
)

// xmlChars reports whether s holds only characters XML 1.0 allows, so that
// it can have come from the wire as an attribute value.
func xmlChars(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		switch {
		case r == 0x9 || r == 0xA || r == 0xD:
		case r >= 0x20 && r <= 0xD7FF:
		case r >= 0xE000 && r <= 0xFFFD:
		case r >= 0x10000 && r <= 0x10FFFF:
		default:
			return false
		}
	}
	return true
}

// checkJID checks that a parsed address is in normal form: printing and
// parsing it again gives the same address and the same string
// (String(Parse(String(Parse(x)))) == String(Parse(x))), and its bare and
// domain forms are what Palisade's comparisons assume.
func checkJID(t *testing.T, what, raw string, j jid.JID) {
	t.Helper()
	s := j.String()
	j2, err := jid.Parse(s)
	if err != nil {
		t.Fatalf("%s %q: its normal form %q does not parse: %v", what, raw, s, err)
	}
	if j2.String() != s || !j2.Equal(j) {
		t.Fatalf("%s %q: not idempotent: %q then %q", what, raw, s, j2.String())
	}
	bare := j.Bare()
	want := j.Domainpart()
	if l := j.Localpart(); l != "" {
		want = l + "@" + want
	}
	if bare.String() != want || bare.Resourcepart() != "" || !bare.Equal(j2.Bare()) {
		t.Fatalf("%s %q: bare %q, want %q", what, raw, bare.String(), want)
	}
	if j.Resourcepart() == "" && !bare.Equal(j) {
		t.Fatalf("%s %q: no resource but Bare differs", what, raw)
	}
	if d := j.Domain(); d.String() != j.Domainpart() || d.Localpart() != "" {
		t.Fatalf("%s %q: domain %q", what, raw, d.String())
	}
}

// FuzzJID feeds arbitrary 'from' and 'to' attributes to stanza.Parse, the
// path every address from the wire takes. An address either parses into
// the normal form checkJID wants or gives jid-malformed; SetFrom/SetTo
// write the normal form back; the serialized stanza parses again to the
// same addresses (an address can break neither the XML nor the routing);
// and an error reply swaps exactly the two addresses.
func FuzzJID(f *testing.F) {
	f.Add("alice@localhost/phone", "bob@localhost", byte(0))
	f.Add("Alice@LOCALHOST/x", "localhost", byte(1))

	f.Fuzz(func(t *testing.T, from, to string, kind byte) {
		name := [...]string{"message", "presence", "iq"}[int(kind)%3]
		el := element.New(NSClient, name)
		if from != "" {
			el.SetAttr("from", from)
		}
		if to != "" {
			el.SetAttr("to", to)
		}
		el.SetAttr("type", "error"[:int(kind>>2)%6])
		st, err := Parse(el)
		if st == nil {
			t.Fatalf("Parse returned no stanza: %v", err)
		}

		wantFrom, fromErr := ParseAddress(from)
		wantTo, toErr := ParseAddress(to)
		switch {
		case err == nil:
			if (to != "" && toErr != nil) || (from != "" && fromErr != nil) {
				t.Fatalf("invalid address accepted: from %q (%v) to %q (%v)", from, fromErr, to, toErr)
			}
		default:
			e, ok := err.(*Error)
			if !ok || e.Condition != JIDMalformed || e.Type != Modify || e.Text == "" {
				t.Fatalf("error %#v, want a modify/jid-malformed *Error with text", err)
			}
			if (to == "" || toErr == nil) && (from == "" || fromErr == nil) {
				t.Fatalf("valid addresses refused: from %q to %q: %v", from, to, err)
			}
			return
		}
		if to != "" {
			if !st.To.Equal(wantTo) {
				t.Fatalf("To = %q, want %q", st.To.String(), wantTo.String())
			}
			checkJID(t, "to", to, st.To)
		}
		if from != "" {
			if !st.From.Equal(wantFrom) {
				t.Fatalf("From = %q, want %q", st.From.String(), wantFrom.String())
			}
			checkJID(t, "from", from, st.From)
		}

		// The server stamps and readdresses with SetFrom/SetTo: the
		// element then carries the normal form, once.
		st.SetFrom(st.From)
		st.SetTo(st.To)
		for _, a := range []struct {
			name string
			j    jid.JID
		}{{"from", st.From}, {"to", st.To}} {
			n := 0
			for _, at := range st.El.Attrs {
				if at.Space == "" && at.Local == a.name {
					n++
				}
			}
			want := 1
			if a.j.Equal(jid.JID{}) {
				want = 0
			}
			if n != want || st.El.Attr(a.name) != a.j.String() && want == 1 {
				t.Fatalf("after Set: %d %s attributes, value %q, want %q", n, a.name, st.El.Attr(a.name), a.j.String())
			}
		}

		// What goes on the wire reads back as the same addresses. Only for
		// values that can have come from the wire (XML characters).
		if xmlChars(from) && xmlChars(to) {
			wire := st.AppendStandalone(nil)
			el2, err := element.Parse(wire, NSClient)
			if err != nil {
				t.Fatalf("serialized stanza %q does not parse: %v", wire, err)
			}
			st2, err := Parse(el2)
			if err != nil {
				t.Fatalf("serialized stanza %q: %v", wire, err)
			}
			if !st2.From.Equal(st.From) || !st2.To.Equal(st.To) || st2.Kind != st.Kind {
				t.Fatalf("round trip %q: from %q to %q, want %q %q", wire, st2.From.String(), st2.To.String(), st.From.String(), st.To.String())
			}
		}

		if st.Type != "error" {
			r := st.ErrorReply(Err(Cancel, ServiceUnavailable, ""))
			if !r.From.Equal(st.To) || !r.To.Equal(st.From) || r.El.Attr("from") != st.El.Attr("to") || r.El.Attr("to") != st.El.Attr("from") {
				t.Fatalf("error reply addressed from %q to %q for a stanza from %q to %q", r.El.Attr("from"), r.El.Attr("to"), st.El.Attr("from"), st.El.Attr("to"))
			}
		}
	})
}
