package element

import (
	"errors"
	"strings"
	"testing"
)

func parse(t *testing.T, s string) *Element {
	t.Helper()
	el, err := Parse([]byte(s), "jabber:client")
	if err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
	return el
}

func TestRoundTrip(t *testing.T) {
	cases := []struct{ in, want string }{
		{`<message to="a@b" type="chat"><body>hi &amp; &lt;bye&gt;</body></message>`,
			`<message to="a@b" type="chat"><body>hi &amp; &lt;bye&gt;</body></message>`},
		{`<iq type="get" id="1"><query xmlns="jabber:iq:roster"/></iq>`,
			`<iq type="get" id="1"><query xmlns="jabber:iq:roster"/></iq>`},
		// A prefixed payload is rewritten with a default namespace.
		{`<message xmlns:x="urn:x"><x:a><x:b>t</x:b></x:a></message>`,
			`<message><a xmlns="urn:x"><b>t</b></a></message>`},
		{`<presence xml:lang="de"><status>"q" 'a'</status></presence>`,
			`<presence xml:lang="de"><status>"q" 'a'</status></presence>`},
		{`<message id="a&quot;b&apos;c"/>`, `<message id="a&quot;b&apos;c"/>`},
	}
	for _, c := range cases {
		el := parse(t, c.in)
		if got := string(el.AppendTo(nil, "jabber:client")); got != c.want {
			t.Errorf("round trip of %s\n got %s\nwant %s", c.in, got, c.want)
		}
		// The output parses back to the same serialization.
		again := parse(t, `<r xmlns="jabber:client">`+c.want+`</r>`).FirstElement()
		if got := string(again.AppendTo(nil, "jabber:client")); got != c.want {
			t.Errorf("second round trip: %s", got)
		}
	}
}

func TestNamespacedAttribute(t *testing.T) {
	el := parse(t, `<message xmlns:e="urn:ext"><x e:flag="1"/></message>`)
	out := el.String()
	back := parse(t, out)
	x := back.FirstElement()
	if x == nil || len(x.Attrs) != 1 || x.Attrs[0].Space != "urn:ext" || x.Attrs[0].Value != "1" {
		t.Fatalf("namespaced attribute lost: %s", out)
	}
}

func TestEscapeInvalidCharacters(t *testing.T) {
	got := string(EscapeText(nil, "a\x00b\x1bc\td\ne"))
	if got != "a\uFFFDb\uFFFDc\td\ne" {
		t.Fatalf("EscapeText = %q", got)
	}
	if got := string(escapeAttr(nil, "x\ny")); got != "x&#xA;y" {
		t.Fatalf("escapeAttr = %q", got)
	}
	if got := string(EscapeText(nil, "bad\xffutf8")); got != "bad\uFFFDutf8" {
		t.Fatalf("invalid UTF-8 = %q", got)
	}
}

func TestRejectsCommentsAndDepth(t *testing.T) {
	if _, err := Parse([]byte(`<a><!-- c --></a>`), ""); !errors.Is(err, ErrRestricted) {
		t.Fatalf("comment: err = %v, want ErrRestricted", err)
	}
	if _, err := Parse([]byte(`<a><?php x?></a>`), ""); !errors.Is(err, ErrRestricted) {
		t.Fatalf("processing instruction: err = %v, want ErrRestricted", err)
	}
	deep := strings.Repeat("<a>", DefaultMaxDepth+1) + strings.Repeat("</a>", DefaultMaxDepth+1)
	if _, err := Parse([]byte(deep), ""); !errors.Is(err, ErrTooDeep) {
		t.Fatalf("depth: err = %v, want ErrTooDeep", err)
	}
	ok := strings.Repeat("<a>", DefaultMaxDepth) + strings.Repeat("</a>", DefaultMaxDepth)
	if _, err := Parse([]byte(ok), ""); err != nil {
		t.Fatalf("depth %d: %v", DefaultMaxDepth, err)
	}
}

func TestEditing(t *testing.T) {
	el := New("jabber:client", "message", A("to", "x"))
	el.SetAttr("to", "y").SetAttr("id", "1")
	el.Append(New("jabber:client", "body").SetText("hi"), New("urn:xmpp:hints", "no-store"))
	if el.Attr("to") != "y" || el.ChildText("jabber:client", "body") != "hi" {
		t.Fatalf("edit: %s", el)
	}
	c := el.Copy()
	el.RemoveChildren("urn:xmpp:hints", "")
	el.RemoveAttr("id")
	if el.Child("urn:xmpp:hints", "no-store") != nil || el.HasAttr("id") {
		t.Fatalf("remove: %s", el)
	}
	if c.Child("urn:xmpp:hints", "no-store") == nil || c.Attr("id") != "1" {
		t.Fatalf("copy shares state: %s", c)
	}
}

func BenchmarkReadWrite(b *testing.B) {
	msg := `<message xmlns="jabber:client" to="bob@example.test/phone" id="a1b2c3" type="chat"><body>` +
		strings.Repeat("x", 200) + `</body><active xmlns="http://jabber.org/protocol/chatstates"/></message>`
	b.ReportAllocs()
	var buf []byte
	for i := 0; i < b.N; i++ {
		el, err := Parse([]byte(msg), "")
		if err != nil {
			b.Fatal(err)
		}
		buf = el.AppendTo(buf[:0], "jabber:client")
	}
}
