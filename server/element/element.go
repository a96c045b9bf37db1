// Package element is Palisade's in-memory XML element tree for stanzas: read
// from an encoding/xml decoder, inspected and edited by the router and
// modules, and serialized back with namespaces kept minimal.
package element

import (
	"strings"
)

// Attr is one attribute. Space is the resolved namespace ("" for plain attributes).
type Attr struct {
	Space, Local, Value string
}

// Node is a child of an element: either an element or character data.
type Node struct {
	El   *Element
	Text string
}

// Element is an XML element with its resolved namespace.
type Element struct {
	Space, Local string
	Attrs        []Attr
	Nodes        []Node
}

// New returns an empty element.
func New(space, local string, attrs ...Attr) *Element {
	return &Element{Space: space, Local: local, Attrs: attrs}
}

// A returns a plain attribute for New.
func A(local, value string) Attr { return Attr{Local: local, Value: value} }

// Attr returns the value of a plain (un-namespaced) attribute, or "".
func (e *Element) Attr(local string) string {
	for _, a := range e.Attrs {
		if a.Space == "" && a.Local == local {
			return a.Value
		}
	}
	return ""
}

// HasAttr reports whether a plain attribute is present.
func (e *Element) HasAttr(local string) bool {
	for _, a := range e.Attrs {
		if a.Space == "" && a.Local == local {
			return true
		}
	}
	return false
}

// SetAttr sets a plain attribute, replacing any existing value: the first
// match gets the value and any further match is removed, so the element
// carries the attribute once.
func (e *Element) SetAttr(local, value string) *Element {
	for i, a := range e.Attrs {
		if a.Space == "" && a.Local == local {
			e.Attrs[i].Value = value
			e.removeAttrFrom(i+1, local)
			return e
		}
	}
	e.Attrs = append(e.Attrs, Attr{Local: local, Value: value})
	return e
}

// RemoveAttr deletes every plain attribute with the name.
func (e *Element) RemoveAttr(local string) { e.removeAttrFrom(0, local) }

// removeAttrFrom deletes the plain attributes named local among
// e.Attrs[from:], keeping the order of the others.
func (e *Element) removeAttrFrom(from int, local string) {
	out := e.Attrs[:from]
	for _, a := range e.Attrs[from:] {
		if a.Space == "" && a.Local == local {
			continue
		}
		out = append(out, a)
	}
	clear(e.Attrs[len(out):])
	e.Attrs = out
}

// Lang returns the xml:lang attribute, or "".
func (e *Element) Lang() string {
	for _, a := range e.Attrs {
		if a.Space == xmlNS && a.Local == "lang" {
			return a.Value
		}
	}
	return ""
}

// Child returns the first child element with the namespace and local name,
// or nil. An empty space matches any namespace.
func (e *Element) Child(space, local string) *Element {
	for _, n := range e.Nodes {
		if n.El != nil && n.El.Local == local && (space == "" || n.El.Space == space) {
			return n.El
		}
	}
	return nil
}

// ChildNS returns the first child element in the namespace, or nil.
func (e *Element) ChildNS(space string) *Element {
	for _, n := range e.Nodes {
		if n.El != nil && n.El.Space == space {
			return n.El
		}
	}
	return nil
}

// Elements returns the child elements in order.
func (e *Element) Elements() []*Element {
	var out []*Element
	for _, n := range e.Nodes {
		if n.El != nil {
			out = append(out, n.El)
		}
	}
	return out
}

// FirstElement returns the first child element, or nil.
func (e *Element) FirstElement() *Element {
	for _, n := range e.Nodes {
		if n.El != nil {
			return n.El
		}
	}
	return nil
}

// Text returns the concatenated character data directly inside the element.
func (e *Element) Text() string {
	if len(e.Nodes) == 1 && e.Nodes[0].El == nil {
		return e.Nodes[0].Text
	}
	var b strings.Builder
	for _, n := range e.Nodes {
		if n.El == nil {
			b.WriteString(n.Text)
		}
	}
	return b.String()
}

// ChildText returns the text of the first matching child, or "".
func (e *Element) ChildText(space, local string) string {
	if c := e.Child(space, local); c != nil {
		return c.Text()
	}
	return ""
}

// Append adds child elements and returns e.
func (e *Element) Append(children ...*Element) *Element {
	for _, c := range children {
		if c != nil {
			e.Nodes = append(e.Nodes, Node{El: c})
		}
	}
	return e
}

// SetText replaces all children with character data and returns e.
func (e *Element) SetText(s string) *Element {
	e.Nodes = e.Nodes[:0]
	if s != "" {
		e.Nodes = append(e.Nodes, Node{Text: s})
	}
	return e
}

// RemoveChildren deletes every child element matching the namespace and name
// (an empty local matches every element in the namespace).
func (e *Element) RemoveChildren(space, local string) {
	out := e.Nodes[:0]
	for _, n := range e.Nodes {
		if n.El != nil && n.El.Space == space && (local == "" || n.El.Local == local) {
			continue
		}
		out = append(out, n)
	}
	for i := len(out); i < len(e.Nodes); i++ {
		e.Nodes[i] = Node{}
	}
	e.Nodes = out
}

// Copy returns a deep copy.
func (e *Element) Copy() *Element {
	c := &Element{Space: e.Space, Local: e.Local}
	if len(e.Attrs) > 0 {
		c.Attrs = make([]Attr, len(e.Attrs))
		copy(c.Attrs, e.Attrs)
	}
	if len(e.Nodes) > 0 {
		c.Nodes = make([]Node, len(e.Nodes))
		for i, n := range e.Nodes {
			if n.El != nil {
				c.Nodes[i] = Node{El: n.El.Copy()}
			} else {
				c.Nodes[i] = n
			}
		}
	}
	return c
}

// ShallowCopy copies the element and its attribute slice but shares children.
func (e *Element) ShallowCopy() *Element {
	c := &Element{Space: e.Space, Local: e.Local, Nodes: e.Nodes}
	c.Attrs = make([]Attr, len(e.Attrs), len(e.Attrs)+2)
	copy(c.Attrs, e.Attrs)
	return c
}

const (
	xmlNS   = "http://www.w3.org/XML/1998/namespace"
	xmlnsNS = "xmlns"
)
