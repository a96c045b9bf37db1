package element

import (
	"encoding/xml"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
)

// The probe's inputs (issue 13) and the rest of Namespaces in XML 1.0:
// each is well-formed to encoding/xml but not namespace-well-formed, and
// each must be refused.
var notNamespaceWellFormed = []struct{ name, in string }{
	{"three from attributes", `<message from='alice@localhost' from='mallory@localhost/x' from='alice@localhost/y' to='bob@localhost'><body>hi</body></message>`},
	{"duplicate attribute", `<message a='1' a='2'/>`},
	{"duplicate attribute in a child", `<message><stanza-id xmlns='urn:xmpp:sid:0' by='localhost' by='bob@localhost' id='1'/></message>`},
	{"duplicate xml:lang", `<message xml:lang='en' xml:lang='de'/>`},
	{"same expanded name, two prefixes", `<message xmlns:a='urn:x' xmlns:b='urn:x' a:k='1' b:k='2'/>`},
	{"expanded duplicate among many attributes", `<message xmlns:a='urn:x' xmlns:b='urn:x' ` + manyAttrs(20) + ` a:k='1' b:k='2'/>`},
	{"raw duplicate among many attributes", `<message ` + manyAttrs(20) + ` from='x' from='y'/>`},
	{"duplicate declaration", `<message xmlns:a='urn:x' xmlns:a='urn:y'/>`},
	{"duplicate default declaration", `<message xmlns='jabber:client' xmlns='jabber:server'/>`},
	{"element name with leading colon", `<message><:m/></message>`},
	{"element name with trailing colon", `<message><m:/></message>`},
	{"attribute name with leading colon", `<message :a='1'/>`},
	{"undeclared element prefix", `<message><x:body>hi</x:body></message>`},
	{"undeclared attribute prefix", `<message x:from='alice@localhost'/>`},
	{"prefix used outside its scope", `<message><a xmlns:x='urn:x'/><x:b/></message>`},
	{"xmlns prefix on an element", `<message><xmlns:a/></message>`},
	{"xmlns prefix declared", `<message xmlns:xmlns='urn:x'/>`},
	{"xml prefix rebound", `<message xmlns:xml='urn:x'/>`},
	{"xml namespace bound to another prefix", `<message xmlns:p='http://www.w3.org/XML/1998/namespace'/>`},
	{"xmlns namespace bound", `<message xmlns:p='http://www.w3.org/2000/xmlns/'/>`},
	{"prefix undeclared", `<message xmlns:p=''/>`},
	{"mismatched end tag prefix", `<message xmlns:p='urn:x' xmlns:q='urn:x'><p:a></q:a></message>`},
	{"mismatched end tag", `<message><a></b></message>`},
}

func manyAttrs(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteString("k")
		b.WriteString(strings.Repeat("x", i+1))
		b.WriteString("='v' ")
	}
	return b.String()
}

func TestRejectsNotNamespaceWellFormed(t *testing.T) {
	for _, c := range notNamespaceWellFormed {
		t.Run(c.name, func(t *testing.T) {
			el, err := Parse([]byte(c.in), "jabber:client")
			var nse *NamespaceError
			var syn *xml.SyntaxError
			if !errors.As(err, &nse) && !errors.As(err, &syn) {
				t.Fatalf("Parse = %v, %v; want a NamespaceError or a SyntaxError", el, err)
			}
		})
	}
}

func TestAcceptsNamespaceWellFormed(t *testing.T) {
	cases := []struct{ in, want string }{
		// Prefixes resolve; the output declares default namespaces only.
		{`<message xmlns:p='urn:x'><p:a p:k='1' k='2'/></message>`, `<message><a xmlns="urn:x" xmlns:ns1="urn:x" ns1:k="1" k="2"/></message>`},
		// The same local name in two namespaces is two attributes.
		{`<message xmlns:a='urn:x' xmlns:b='urn:y' a:k='1' b:k='2'/>`, `<message xmlns:ns1="urn:x" ns1:k="1" xmlns:ns2="urn:y" ns2:k="2"/>`},
		// A prefix may be redeclared in an inner scope, and the xml prefix
		// declared to its own namespace.
		{`<message xmlns:p='urn:x' xmlns:xml='http://www.w3.org/XML/1998/namespace'><p:a xmlns:p='urn:y'/><p:b/></message>`, `<message><a xmlns="urn:y"/><b xmlns="urn:x"/></message>`},
		{`<message xml:lang='en'><body xml:lang='de'>x</body></message>`, `<message xml:lang="en"><body xml:lang="de">x</body></message>`},
		// CDATA sections and character data are joined into one node.
		{`<message><body>a<![CDATA[<b>]]>c&amp;</body></message>`, `<message><body>a&lt;b&gt;c&amp;</body></message>`},
	}
	for _, c := range cases {
		el := parse(t, c.in)
		if got := string(el.AppendTo(nil, "jabber:client")); got != c.want {
			t.Errorf("%s\n got %s\nwant %s", c.in, got, c.want)
		}
	}
	el := parse(t, `<message><body>a<![CDATA[b]]><![CDATA[c]]>d</body></message>`)
	if body := el.FirstElement(); len(body.Nodes) != 1 || body.Text() != "abcd" {
		t.Fatalf("text nodes = %+v", body.Nodes)
	}
}

func TestLimits(t *testing.T) {
	l := Limits{MaxDepth: 3, MaxNodes: 5}
	if _, err := ParseLimited([]byte(`<a><b><c/></b></a>`), "", l); err != nil {
		t.Fatalf("depth 3: %v", err)
	}
	if _, err := ParseLimited([]byte(`<a><b><c><d/></c></b></a>`), "", l); !errors.Is(err, ErrTooDeep) {
		t.Fatalf("depth 4: %v, want ErrTooDeep", err)
	}
	// Five nodes: two elements and three attributes.
	if _, err := ParseLimited([]byte(`<a x='1'><b y='2' z='3'/></a>`), "", l); err != nil {
		t.Fatalf("5 nodes: %v", err)
	}
	for _, in := range []string{`<a x='1'><b y='2' z='3' w='4'/></a>`, `<a><b/><b/><b/><b/><b/></a>`, `<a p='1' q='2' r='3' s='4' t='5'/>`} {
		if _, err := ParseLimited([]byte(in), "", l); !errors.Is(err, ErrTooMany) {
			t.Fatalf("%s: %v, want ErrTooMany", in, err)
		}
	}
}

// TestStream reads a stream as the c2s transport does: the header through
// Token, stanzas through ReadElement, the restart after SASL, the end tag.
func TestStream(t *testing.T) {
	in := `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>` +
		`<message to='bob@localhost'><body>1</body></message> ` +
		`<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>` +
		`<iq type='get' id='x'><query xmlns='jabber:iq:roster'/></iq></stream:stream>`
	d := NewDecoder(strings.NewReader(in), "")
	var got []string
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		switch tk := tok.(type) {
		case xml.StartElement:
			if tk.Name.Local == "stream" {
				if tk.Name.Space != "http://etherx.jabber.org/streams" {
					t.Fatalf("stream namespace %q", tk.Name.Space)
				}
				got = append(got, "open")
				continue
			}
			el, err := d.ReadElement(tk)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, el.Space+" "+el.String())
			if el.Local == "message" {
				d.Reset() // the restart: a new header follows
			}
		case xml.EndElement:
			got = append(got, "close "+tk.Name.Space)
		}
	}
	want := []string{"open", `jabber:client <message xmlns="jabber:client" to="bob@localhost"><body>1</body></message>`, "open",
		`jabber:client <iq xmlns="jabber:client" type="get" id="x"><query xmlns="jabber:iq:roster"/></iq>`, "close http://etherx.jabber.org/streams"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestDeclarationErrors(t *testing.T) {
	cases := []struct {
		in   string
		want error
	}{
		{`<?xml version='1.1'?><a/>`, ErrUnsupportedVersion},
		{`<?xml version='1.0' encoding='UTF-16'?><a/>`, ErrUnsupportedEncoding},
		{`<?xml version='1.0' encoding='ISO-8859-1'?><a/>`, ErrUnsupportedEncoding},
	}
	for _, c := range cases {
		if _, err := Parse([]byte(c.in), ""); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.in, err, c.want)
		}
	}
	if _, err := Parse([]byte(`<?xml version='1.0' encoding='utf-8'?><a/>`), ""); err != nil {
		t.Errorf("utf-8 declaration: %v", err)
	}
	if _, err := Parse([]byte(`<a><b>`), ""); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated: %v", err)
	}
}

// TestTextIsLinear: many CDATA sections in one text node cost about what
// the same text costs (the probe measured 120x the CPU with string
// joining). It counts the bytes allocated, which do not depend on the
// machine's speed: joining 20,000 pieces by concatenation allocates about
// 400 MB, joining them in one buffer a few times the 280 KB read.
func TestTextIsLinear(t *testing.T) {
	const n = 20000
	in := []byte("<m>" + strings.Repeat("<![CDATA[ab]]>", n) + "</m>")
	var el *Element
	var err error
	allocated := allocatedBy(func() { el, err = Parse(in, "") })
	if err != nil {
		t.Fatal(err)
	}
	if len(el.Nodes) != 1 || len(el.Text()) != 2*n {
		t.Fatalf("%d text nodes, %d bytes", len(el.Nodes), len(el.Text()))
	}
	if allocated > 20*uint64(len(in)) {
		t.Fatalf("parsing %d bytes allocated %d bytes", len(in), allocated)
	}
}

func allocatedBy(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func TestSetAndRemoveEveryMatch(t *testing.T) {
	el := &Element{Local: "message", Attrs: []Attr{{Local: "from", Value: "a"}, {Local: "to", Value: "b"}, {Local: "from", Value: "c"}, {Local: "from", Value: "d"}}}
	el.SetAttr("from", "x")
	if got := el.String(); got != `<message from="x" to="b"/>` {
		t.Fatalf("SetAttr: %s", got)
	}
	el.Attrs = append(el.Attrs, Attr{Local: "from", Value: "y"})
	el.RemoveAttr("from")
	if el.HasAttr("from") || len(el.Attrs) != 1 {
		t.Fatalf("RemoveAttr: %s", el)
	}
}

func TestRootDeclarationsDropped(t *testing.T) {
	el := parse(t, `<vCard xmlns='vcard-temp' xmlns:p='urn:x' p:a='1'><FN>x</FN></vCard>`)
	if got := el.String(); got != `<vCard xmlns="vcard-temp" xmlns:ns1="urn:x" ns1:a="1"><FN>x</FN></vCard>` {
		t.Fatalf("got %s", got)
	}
}
