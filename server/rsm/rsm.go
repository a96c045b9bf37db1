// Package rsm reads the request side of XEP-0059 Result Set Management:
// the <set/> a client puts in a query to ask for one page.
package rsm

import (
	"strconv"
	"strings"

	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/stanza"
)

// NS is the XEP-0059 namespace.
const NS = "http://jabber.org/protocol/rsm"

// Request is one page asked for (XEP-0059 section 2).
type Request struct {
	// Max is the most items wanted; -1 when the client gave none.
	Max int
	// After pages forward from after this id; Before backward from before
	// it; Last (an empty <before/>) asks for the last page.
	After, Before string
	Last          bool
	// Index pages forward from this index (section 2.4); -1: none.
	Index int
}

// None is the Request of a query without a <set/>.
var None = Request{Max: -1, Index: -1}

// Backward reports a page counted back from its end (before, or last).
func (r Request) Backward() bool { return r.Last || r.Before != "" }

// Parse reads set. Elements of other namespaces are ignored; a bad value
// or a combination the XEP leaves undefined is a bad-request error with a
// text.
func Parse(set *element.Element) (Request, error) {
	r := None
	for _, c := range set.Elements() {
		if c.Space != NS {
			continue
		}
		txt := strings.TrimSpace(c.Text())
		switch c.Local {
		case "max":
			n, err := strconv.Atoi(txt)
			if err != nil || n < 0 {
				return None, bad("RSM max must be a non-negative integer")
			}
			r.Max = n
		case "after":
			if txt == "" {
				return None, bad("RSM after needs an id")
			}
			r.After = txt
		case "before":
			if txt == "" {
				r.Last = true
			} else {
				r.Before = txt
			}
		case "index":
			n, err := strconv.Atoi(txt)
			if err != nil || n < 0 {
				return None, bad("RSM index must be a non-negative integer")
			}
			r.Index = n
		default:
			return None, bad("unexpected RSM element " + c.Local)
		}
	}
	if r.Backward() && r.After != "" {
		return None, bad("RSM before and after together are undefined")
	}
	if r.Index >= 0 && (r.Backward() || r.After != "") {
		return None, bad("RSM index goes without before and after")
	}
	return r, nil
}

func bad(text string) error { return stanza.Err(stanza.Modify, stanza.BadRequest, text) }

// Result is the <set/> answering a page (XEP-0059 section 2.1): first and
// last are the page's first and last item ids ("" for an empty page),
// index the first one's place in the whole result set of count items.
func Result(first, last string, index, count int) *element.Element {
	set := element.New(NS, "set")
	if first != "" {
		set.Append(element.New(NS, "first", element.A("index", strconv.Itoa(index))).SetText(first),
			element.New(NS, "last").SetText(last))
	}
	return set.Append(element.New(NS, "count").SetText(strconv.Itoa(count)))
}
