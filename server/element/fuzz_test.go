package element

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"testing"
)

// goTree reads the first element of b with encoding/xml's namespace-aware
// Token, as Palisade did before its own Decoder: the reference for the
// names and text of documents both accept.
func goTree(b []byte, defaultNS string) (*Element, error) {
	d := xml.NewDecoder(bytes.NewReader(b))
	d.Strict = true
	d.DefaultSpace = defaultNS
	var stack []*Element
	var root *Element
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			el := &Element{Space: t.Name.Space, Local: t.Name.Local}
			for _, a := range t.Attr {
				if a.Name.Space == xmlnsNS || a.Name.Space == "" && a.Name.Local == "xmlns" {
					continue
				}
				el.Attrs = append(el.Attrs, Attr{Space: a.Name.Space, Local: a.Name.Local, Value: a.Value})
			}
			if len(stack) > 0 {
				top := stack[len(stack)-1]
				top.Nodes = append(top.Nodes, Node{El: el})
			} else {
				root = el
			}
			stack = append(stack, el)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
			if len(stack) == 0 {
				return root, nil
			}
		case xml.CharData:
			if len(stack) == 0 {
				continue
			}
			top := stack[len(stack)-1]
			if k := len(top.Nodes); k > 0 && top.Nodes[k-1].El == nil {
				top.Nodes[k-1].Text += string(t)
			} else {
				top.Nodes = append(top.Nodes, Node{Text: string(t)})
			}
		}
	}
}

// FuzzParse checks the Decoder against encoding/xml and against itself:
// what it accepts, encoding/xml accepts with the same names and text; its
// serialization parses back to the same serialization; and the errors are
// the documented kinds.
func FuzzParse(f *testing.F) {
	for _, c := range notNamespaceWellFormed {
		f.Add([]byte(c.in))
	}
	for _, s := range []string{
		`<message to='bob@localhost' type='chat' id='1'><body>hi &amp; bye</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>`,
		`<iq type='set' id='p'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='urn:xmpp:omemo:2:devices'><item id='current'><devices xmlns='urn:xmpp:omemo:2'><device id='1'/></devices></item></publish></pubsub></iq>`,
		`<message xmlns:p='urn:x'><p:a p:k='1' k='2'/><b xmlns=''/></message>`,
		`<presence xml:lang='de'><status>x<![CDATA[<y>]]></status></presence>`,
		`<?xml version='1.0' encoding='UTF-8'?><a/>`,
		`<?xml version='1.1'?><a/>`,
		`<a><!-- c --></a>`,
		`<!DOCTYPE a [<!ENTITY e 'x'>]><a>&e;</a>`,
		`<a>&#0;</a>`,
		`<a b="&#x1F600;">&#65;</a>`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		el, err := ParseLimited(in, "jabber:client", Limits{MaxNodes: 4096})
		if err != nil {
			var nse *NamespaceError
			var syn *xml.SyntaxError
			switch {
			case errors.As(err, &nse), errors.As(err, &syn), errors.Is(err, io.ErrUnexpectedEOF),
				errors.Is(err, ErrTooDeep), errors.Is(err, ErrTooMany), errors.Is(err, ErrRestricted),
				errors.Is(err, ErrUnsupportedEncoding), errors.Is(err, ErrUnsupportedVersion):
			default:
				// encoding/xml's own plain errors (e.g. an invalid UTF-8
				// or a bad character reference) are not-well-formed too.
				if _, gerr := goTree(in, "jabber:client"); gerr == nil {
					t.Fatalf("refused with %v what encoding/xml accepts", err)
				}
			}
			return
		}
		want, gerr := goTree(in, "jabber:client")
		if gerr != nil {
			t.Fatalf("accepted what encoding/xml refuses (%v): %s", gerr, el)
		}
		out := el.AppendTo(nil, "")
		if ref := want.AppendTo(nil, ""); !bytes.Equal(out, ref) {
			t.Fatalf("tree differs from encoding/xml's:\n got %s\nwant %s", out, ref)
		}
		again, err := Parse(out, "")
		if err != nil {
			t.Fatalf("own output %s refused: %v", out, err)
		}
		if out2 := again.AppendTo(nil, ""); !bytes.Equal(out, out2) {
			t.Fatalf("serialization not stable:\n%s\n%s", out, out2)
		}
	})
}
