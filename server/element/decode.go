package element

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Errors of the Decoder. A *NamespaceError and a *xml.SyntaxError are XML
// that is not (namespace-)well-formed; the others are XMPP's restrictions
// and Palisade's bounds.
var (
	// ErrTooDeep is returned for elements nested deeper than the limit.
	ErrTooDeep = errors.New("element: nesting too deep")
	// ErrTooMany is returned for an element with more nodes (elements and
	// attributes) than the limit.
	ErrTooMany = errors.New("element: too many elements and attributes")
	// ErrRestricted is returned for comments, processing instructions and
	// DTDs, which XMPP forbids (RFC 6120 11.1).
	ErrRestricted = errors.New("element: comments, processing instructions and DTDs are not allowed in XMPP")
	// ErrUnsupportedEncoding is returned for an XML declaration that names
	// an encoding other than UTF-8 (RFC 6120 11.6).
	ErrUnsupportedEncoding = errors.New("element: only UTF-8 is supported")
	// ErrUnsupportedVersion is returned for an XML declaration of a version
	// other than 1.0.
	ErrUnsupportedVersion = errors.New("element: only XML 1.0 is supported")
)

// NamespaceError reports XML that is well-formed but not
// namespace-well-formed (Namespaces in XML 1.0, 3rd edition): an undeclared
// prefix, a name with more than one colon, two attributes with the same
// expanded name, a reserved prefix misused. XMPP treats it as not
// well-formed (RFC 6120 11.2).
type NamespaceError struct{ Msg string }

func (e *NamespaceError) Error() string { return "element: not namespace-well-formed: " + e.Msg }

func nsErr(format string, args ...any) error {
	return &NamespaceError{Msg: fmt.Sprintf(format, args...)}
}

// xmlnsURI is the namespace that no prefix may be bound to.
const xmlnsURI = "http://www.w3.org/2000/xmlns/"

// Limits bound what one element read by a Decoder may hold.
type Limits struct {
	// MaxDepth bounds nesting below the element (the element itself is
	// depth 1). 0 means DefaultMaxDepth.
	MaxDepth int
	// MaxNodes bounds the elements and attributes in the element, itself
	// included. 0 means no bound.
	MaxNodes int
}

// DefaultMaxDepth is the nesting bound when Limits.MaxDepth is 0.
const DefaultMaxDepth = 64

// binding is one namespace declaration in scope.
type binding struct {
	prefix, uri string
}

// frame is an open element: its raw name (for matching the end tag), the
// namespace bindings it declared, and the default namespace inside it.
type frame struct {
	prefix, local string
	mark          int // len(bindings) before its declarations
	defNS         string
	el            *Element // nil for an element not kept in a tree (the stream)
}

// Decoder reads XML from an XMPP stream or a stored document and checks
// that it is namespace-well-formed, which encoding/xml does not: it accepts
// duplicate attributes, undeclared prefixes and names like ":m", and
// resolves an undeclared prefix to the prefix itself. The Decoder reads raw
// tokens and does the namespace processing itself: every element and
// attribute name is a valid QName with a declared prefix, no element has
// two attributes with the same expanded name, the reserved prefixes keep
// their meaning, and every end tag matches its start tag.
type Decoder struct {
	d      *xml.Decoder
	limits Limits
	// bindings are the prefix declarations in scope, innermost last.
	bindings []binding
	stack    []frame
	// rootNS is the default namespace outside any element.
	rootNS string
	text   []byte // character data being joined into one text node
	nodes  int    // nodes of the element being read
}

// NewDecoder returns a Decoder reading r. defaultNS is the default
// namespace outside any element (for stored stanzas, jabber:client).
func NewDecoder(r io.Reader, defaultNS string) *Decoder {
	d := xml.NewDecoder(r)
	d.Strict = true
	d.CharsetReader = func(string, io.Reader) (io.Reader, error) { return nil, ErrUnsupportedEncoding }
	return &Decoder{d: d, rootNS: defaultNS}
}

// SetLimits sets the bounds for the elements read from now on.
func (d *Decoder) SetLimits(l Limits) { d.limits = l }

// InputOffset is the decoder's input offset (encoding/xml).
func (d *Decoder) InputOffset() int64 { return d.d.InputOffset() }

// Depth is the number of elements open around the next token.
func (d *Decoder) Depth() int { return len(d.stack) }

// Reset forgets every open element (a stream restart after SASL, where a
// new stream header follows on the same connection).
func (d *Decoder) Reset() {
	d.stack = d.stack[:0]
	d.bindings = d.bindings[:0]
}

// defaultNS is the default namespace in scope.
func (d *Decoder) defaultNS() string {
	if n := len(d.stack); n > 0 {
		return d.stack[n-1].defNS
	}
	return d.rootNS
}

func (d *Decoder) lookup(prefix string) (string, bool) {
	for i := len(d.bindings) - 1; i >= 0; i-- {
		if d.bindings[i].prefix == prefix {
			return d.bindings[i].uri, true
		}
	}
	return "", false
}

func (d *Decoder) raw() (xml.Token, error) {
	tok, err := d.d.RawToken()
	if err != nil {
		if strings.HasPrefix(err.Error(), "xml: unsupported version") {
			return nil, ErrUnsupportedVersion
		}
		if err == io.EOF && len(d.stack) > 0 {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return tok, nil
}

// Token returns the next token outside the elements that ReadElement
// reads: a start element with its names resolved (the namespace
// declarations are kept among its attributes, as encoding/xml's Token
// keeps them), a matching end element, character data (valid until the
// next call), or the XML declaration. A comment, another processing
// instruction or a DTD is ErrRestricted. A start element returned here
// stays open until its end element; read its children with ReadElement.
func (d *Decoder) Token() (xml.Token, error) {
	tok, err := d.raw()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case xml.StartElement:
		space, err := d.open(t, nil)
		if err != nil {
			return nil, err
		}
		out := xml.StartElement{Name: xml.Name{Space: space, Local: t.Name.Local}, Attr: make([]xml.Attr, len(t.Attr))}
		for i, a := range t.Attr {
			out.Attr[i] = a
			if s, ok := d.attrSpace(a.Name); ok && s != xmlnsNS {
				out.Attr[i].Name.Space = s
			}
		}
		return out, nil
	case xml.EndElement:
		f, err := d.close(t)
		if err != nil {
			return nil, err
		}
		ns := f.defNS
		if f.prefix == "xml" {
			ns = xmlNS
		} else if f.prefix != "" {
			ns, _ = d.lookup(f.prefix) // checked by open; its bindings are still in scope
		}
		d.bindings = d.bindings[:f.mark]
		return xml.EndElement{Name: xml.Name{Space: ns, Local: f.local}}, nil
	case xml.CharData:
		return t, nil
	case xml.ProcInst:
		if t.Target == "xml" {
			return t, nil
		}
		return nil, ErrRestricted
	default: // xml.Comment, xml.Directive
		return nil, ErrRestricted
	}
}

// attrSpace resolves an attribute name that open has checked: "" for an
// unqualified attribute, the xml namespace, xmlnsNS for a declaration.
func (d *Decoder) attrSpace(n xml.Name) (string, bool) {
	switch {
	case n.Space == "" && n.Local == "xmlns", n.Space == "xmlns":
		return xmlnsNS, true
	case n.Space == "":
		return "", true
	case n.Space == "xml":
		return xmlNS, true
	}
	return d.lookup(n.Space)
}

// open checks a raw start element, pushes its declarations and a frame,
// and returns the element's namespace. el is the tree node to fill with
// the resolved attributes (nil: do not build one).
func (d *Decoder) open(t xml.StartElement, el *Element) (string, error) {
	if err := checkQName(t.Name); err != nil {
		return "", err
	}
	if t.Name.Space == "xmlns" {
		return "", nsErr("element name %s:%s uses the xmlns prefix", t.Name.Space, t.Name.Local)
	}
	f := frame{prefix: t.Name.Space, local: t.Name.Local, mark: len(d.bindings), defNS: d.defaultNS(), el: el}
	// Declarations first: they apply to the element's own names.
	for _, a := range t.Attr {
		switch {
		case a.Name.Space == "" && a.Name.Local == "xmlns":
			if a.Value == xmlNS || a.Value == xmlnsURI || a.Value == xmlnsNS {
				d.bindings = d.bindings[:f.mark]
				return "", nsErr("the default namespace cannot be %s", a.Value)
			}
			f.defNS = a.Value
		case a.Name.Space == "xmlns":
			if err := checkDeclaration(a.Name.Local, a.Value); err != nil {
				d.bindings = d.bindings[:f.mark]
				return "", err
			}
			d.bindings = append(d.bindings, binding{prefix: a.Name.Local, uri: a.Value})
		}
	}
	space := f.defNS
	if t.Name.Space != "" {
		var ok bool
		if t.Name.Space == "xml" {
			space, ok = xmlNS, true
		} else {
			space, ok = d.lookup(t.Name.Space)
		}
		if !ok {
			d.bindings = d.bindings[:f.mark]
			return "", nsErr("undeclared prefix %q on element %s", t.Name.Space, t.Name.Local)
		}
	}
	if err := d.checkAttrs(t.Attr, el); err != nil {
		d.bindings = d.bindings[:f.mark]
		return "", err
	}
	d.stack = append(d.stack, f)
	return space, nil
}

// checkAttrs checks the attribute names (QNames, declared prefixes, no two
// with the same raw or expanded name) and, for el, stores the resolved
// non-declaration attributes.
func (d *Decoder) checkAttrs(attrs []xml.Attr, el *Element) error {
	n := 0
	for i, a := range attrs {
		if err := checkQName(a.Name); err != nil {
			return err
		}
		space, ok := d.attrSpace(a.Name)
		if !ok {
			return nsErr("undeclared prefix %q on attribute %s", a.Name.Space, a.Name.Local)
		}
		if space != xmlnsNS {
			n++
		}
		// Compare with the attributes before: raw duplicates (XML 1.0
		// well-formedness) and expanded ones (Namespaces in XML 3.1).
		// Stanzas carry a handful of attributes; a long list is checked
		// through a map so the check stays linear.
		if len(attrs) <= 16 {
			for _, b := range attrs[:i] {
				if b.Name == a.Name {
					return nsErr("attribute %s appears twice", qname(a.Name))
				}
				if space == xmlnsNS {
					continue // declarations: only raw duplicates exist
				}
				if bs, _ := d.attrSpace(b.Name); bs == space && b.Name.Local == a.Name.Local {
					return nsErr("attributes %s and %s have the same expanded name", qname(b.Name), qname(a.Name))
				}
			}
		}
	}
	if len(attrs) > 16 {
		seen := make(map[xml.Name]xml.Name, len(attrs))
		for _, a := range attrs {
			space, _ := d.attrSpace(a.Name)
			key := xml.Name{Space: space, Local: a.Name.Local}
			if space == xmlnsNS {
				// A declaration is keyed by its raw name, apart from
				// every expanded attribute name.
				key = xml.Name{Space: "\x00", Local: qname(a.Name)}
			}
			if b, dup := seen[key]; dup {
				return nsErr("attributes %s and %s have the same expanded name", qname(b), qname(a.Name))
			}
			seen[key] = a.Name
		}
	}
	if el == nil || n == 0 {
		return nil
	}
	if err := d.count(n); err != nil {
		return err
	}
	el.Attrs = make([]Attr, 0, n)
	for _, a := range attrs {
		space, _ := d.attrSpace(a.Name)
		if space == xmlnsNS {
			continue
		}
		el.Attrs = append(el.Attrs, Attr{Space: space, Local: a.Name.Local, Value: a.Value})
	}
	return nil
}

// isDeclaration reports a namespace declaration as Token resolves it:
// xmlns="..." keeps its name, xmlns:p="..." is in the space "xmlns".
func isDeclaration(n xml.Name) bool {
	return n.Space == xmlnsNS || n.Space == "" && n.Local == "xmlns"
}

func qname(n xml.Name) string {
	if n.Space == "" {
		return n.Local
	}
	return n.Space + ":" + n.Local
}

// checkQName rejects names encoding/xml splits into a prefix and a local
// part but that are no QNames: ":m", "m:" (kept whole in Local).
func checkQName(n xml.Name) error {
	if strings.IndexByte(n.Local, ':') >= 0 || strings.IndexByte(n.Space, ':') >= 0 {
		return nsErr("%q is not a qualified name", qname(n))
	}
	return nil
}

// checkDeclaration applies Namespaces in XML 3 to xmlns:prefix="uri".
func checkDeclaration(prefix, uri string) error {
	switch {
	case uri == "":
		return nsErr("prefix %q is declared empty", prefix)
	case prefix == "xmlns":
		return nsErr("the xmlns prefix cannot be declared")
	case prefix == "xml" && uri != xmlNS, prefix != "xml" && uri == xmlNS:
		return nsErr("only the xml prefix is bound to %s", xmlNS)
	case uri == xmlnsURI:
		return nsErr("no prefix may be bound to %s", xmlnsURI)
	case uri == xmlnsNS:
		// Resolved names use "xmlns" as the space of declarations (as
		// encoding/xml does); a relative URI of that spelling would be
		// taken for one.
		return nsErr("the namespace name %q is reserved here", uri)
	}
	return nil
}

// close matches a raw end tag with the innermost open element and pops it;
// the caller drops its bindings.
func (d *Decoder) close(t xml.EndElement) (frame, error) {
	n := len(d.stack)
	if n == 0 {
		return frame{}, &xml.SyntaxError{Msg: "unexpected end element </" + qname(t.Name) + ">"}
	}
	f := d.stack[n-1]
	if f.prefix != t.Name.Space || f.local != t.Name.Local {
		return frame{}, &xml.SyntaxError{Msg: "element <" + qname(xml.Name{Space: f.prefix, Local: f.local}) + "> closed by </" + qname(t.Name) + ">"}
	}
	d.stack = d.stack[:n-1]
	return f, nil
}

func (d *Decoder) count(n int) error {
	d.nodes += n
	if d.limits.MaxNodes > 0 && d.nodes > d.limits.MaxNodes {
		return ErrTooMany
	}
	return nil
}

// ReadElement reads the element that start (returned by Token) opened, to
// its end tag, into a tree. Names carry resolved namespaces; namespace
// declarations are dropped (Write declares what it needs). Adjacent
// character data (CDATA sections among it) is joined into one text node in
// linear time.
func (d *Decoder) ReadElement(start xml.StartElement) (*Element, error) {
	base := len(d.stack) - 1
	if base < 0 {
		return nil, errors.New("element: ReadElement without an open start element")
	}
	root := &Element{Space: start.Name.Space, Local: start.Name.Local}
	d.nodes = 0
	if err := d.count(1); err != nil {
		return nil, err
	}
	n := 0
	for _, a := range start.Attr {
		if !isDeclaration(a.Name) {
			n++
		}
	}
	if n > 0 {
		if err := d.count(n); err != nil {
			return nil, err
		}
		root.Attrs = make([]Attr, 0, n)
		for _, a := range start.Attr {
			if !isDeclaration(a.Name) {
				root.Attrs = append(root.Attrs, Attr{Space: a.Name.Space, Local: a.Name.Local, Value: a.Value})
			}
		}
	}
	d.stack[base].el = root
	maxDepth := d.limits.MaxDepth
	if maxDepth <= 0 {
		maxDepth = DefaultMaxDepth
	}
	d.text = d.text[:0]
	for {
		tok, err := d.raw()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.CharData:
			d.text = append(d.text, t...)
			continue
		case xml.StartElement:
			d.flushText()
			if len(d.stack)-base >= maxDepth {
				return nil, ErrTooDeep
			}
			if err := d.count(1); err != nil {
				return nil, err
			}
			el := &Element{Local: t.Name.Local}
			space, err := d.open(t, el)
			if err != nil {
				return nil, err
			}
			el.Space = space
			parent := d.stack[len(d.stack)-2].el
			parent.Nodes = append(parent.Nodes, Node{El: el})
		case xml.EndElement:
			d.flushText()
			f, err := d.close(t)
			if err != nil {
				return nil, err
			}
			d.bindings = d.bindings[:f.mark]
			if len(d.stack) == base {
				if cap(d.text) > 4096 {
					d.text = nil // do not keep a large buffer for an idle stream
				}
				return root, nil
			}
		default: // comments, processing instructions, DTDs
			return nil, ErrRestricted
		}
	}
}

// flushText ends the text node being joined.
func (d *Decoder) flushText() {
	if len(d.text) == 0 {
		return
	}
	top := d.stack[len(d.stack)-1].el
	top.Nodes = append(top.Nodes, Node{Text: string(d.text)})
	d.text = d.text[:0]
}

// Parse reads one serialized element, checked as a Decoder checks a
// stream. Elements without a namespace get defaultNS (e.g. jabber:client
// for stored stanzas). Only white space and the XML declaration may stand
// before it.
func Parse(b []byte, defaultNS string) (*Element, error) {
	return ParseLimited(b, defaultNS, Limits{})
}

// ParseLimited is Parse with bounds.
func ParseLimited(b []byte, defaultNS string, l Limits) (*Element, error) {
	d := NewDecoder(bytes.NewReader(b), defaultNS)
	d.SetLimits(l)
	for {
		tok, err := d.Token()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("element: parse: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			el, err := d.ReadElement(t)
			if err != nil {
				return nil, fmt.Errorf("element: parse: %w", err)
			}
			return el, nil
		case xml.CharData:
			if !isSpace(t) {
				return nil, fmt.Errorf("element: parse: %w", &xml.SyntaxError{Msg: "text before the element"})
			}
		}
	}
}

func isSpace(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return false
		}
	}
	return true
}
