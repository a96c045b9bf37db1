package pep

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/rsm"
	"github.com/palisade-im/palisade/server/stanza"
	"github.com/palisade-im/palisade/storage"
	"go.uber.org/zap"
)

// NSRSM is the XEP-0059 Result Set Management namespace.
const NSRSM = rsm.NS

// attrBound is an upper bound of the bytes s takes as an escaped
// attribute value or text.
func attrBound(s string) int {
	n := len(s)
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '&', '<', '>', '"', '\'', '\n', '\r', '\t':
			n += 5
		}
	}
	return n
}

// itemBound is an upper bound of the bytes one item adds to an <items/>
// answer, its id counted thrice (the item, and RSM first and last).
func itemBound(r storage.PubSubItemRef) int {
	return len(`<item id=""></item>`) + 3*attrBound(r.ID) + r.Size
}

// answerReserve is the part of the stanza limit kept for what surrounds
// items in an answer or a notification: the stanza's own element and
// addresses, <pubsub/> or <event/>, <items/>, a delay and the RSM counts.
func (m *Module) answerReserve(node string) int {
	return min(2048, m.lim.MaxStanzaBytes/4) + 2*attrBound(node)
}

// WrapperAllowance is how far past limits.max_stanza_bytes an answer or
// notification may go: the server's own wrapping (<message/>, <event/>,
// <items/>, an RSM <set/>) around a payload that fit the limit when it was
// published. Without it a publish the client could send (an OMEMO bundle
// near the limit) could never be delivered to anyone.
const WrapperAllowance = 4096

// stanzaLimit is the largest stanza the module sends (no bound when the
// limits are unset, as in a module built without a host).
func (m *Module) stanzaLimit() int {
	if m.lim.MaxStanzaBytes <= 0 {
		return math.MaxInt
	}
	return m.lim.MaxStanzaBytes + WrapperAllowance
}

// maxPayload is the largest payload publishable as item id of node: the
// configured bound, and what keeps one item's answer or notification
// within the stanza limit and its wrapper allowance.
func (m *Module) maxPayload(node, id string) int {
	if m.lim.MaxStanzaBytes <= 0 {
		return m.cfg.MaxPayloadBytes
	}
	fit := m.stanzaLimit() - m.answerReserve(node) - itemBound(storage.PubSubItemRef{ID: id})
	return max(0, min(m.cfg.MaxPayloadBytes, fit))
}

// page is the part of a list of items an answer carries: list[start:end].
type page struct {
	start, end int
	// truncated is set when the stanza limit, not the request, ended the
	// page.
	truncated bool
}

// choose picks the page q asks of list, ending it where the answer
// would pass budget bytes (by itemBound). An unknown after or before id
// is item-not-found (XEP-0059 section 2.6 asks for it).
func choose(list []storage.PubSubItemRef, q rsm.Request, budget int) (page, error) {
	find := func(id string) (int, error) {
		for i, r := range list {
			if r.ID == id {
				return i, nil
			}
		}
		return 0, stanza.Err(stanza.Cancel, stanza.ItemNotFound, "no item "+id+" in the result set")
	}
	limit := q.Max
	if limit < 0 {
		limit = len(list)
	}
	if q.Last || q.Before != "" {
		end := len(list)
		if q.Before != "" {
			i, err := find(q.Before)
			if err != nil {
				return page{}, err
			}
			end = i
		}
		p := page{start: end, end: end}
		used := 0
		for p.start > 0 && end-p.start < limit {
			b := itemBound(list[p.start-1])
			if used+b > budget && p.start < end {
				p.truncated = true
				break
			}
			used += b
			p.start--
		}
		return p, nil
	}
	start := 0
	switch {
	case q.After != "":
		i, err := find(q.After)
		if err != nil {
			return page{}, err
		}
		start = i + 1
	case q.Index >= 0:
		start = min(q.Index, len(list))
	}
	p := page{start: start, end: start}
	used := 0
	for p.end < len(list) && p.end-start < limit {
		b := itemBound(list[p.end])
		if used+b > budget && p.end > start {
			p.truncated = true
			break
		}
		used += b
		p.end++
	}
	return p, nil
}

// answerItems builds the <pubsub/> answer of iq carrying page p of list
// (with an RSM <set/> when withSet), loading only that page's payloads.
// It drops items from the far end of the page while the answer, as
// sent, exceeds the stanza limit; a single item that alone exceeds it
// is resource-constraint.
func (m *Module) answerItems(ctx context.Context, iq *stanza.Stanza, owner, node string, list []storage.PubSubItemRef, p page, backward, withSet bool) (*element.Element, error) {
	ids := make([]string, 0, p.end-p.start)
	for _, r := range list[p.start:p.end] {
		ids = append(ids, r.ID)
	}
	var items []storage.PubSubItem
	if len(ids) > 0 {
		got, err := m.store.Items(ctx, owner, node, 0, ids)
		if errors.Is(err, storage.ErrNotFound) {
			return nil, errNoNode
		}
		if err != nil {
			return nil, fmt.Errorf("pep: items of %s of %s: %w", node, owner, err)
		}
		items = got // an item retracted meanwhile is left out
	}
	for {
		out := element.New(NSPubSub, "items", element.A("node", node))
		for _, it := range items {
			out.Append(m.itemElement(NSPubSub, it))
		}
		res := element.New(NSPubSub, "pubsub").Append(out)
		if withSet || p.truncated {
			res.Append(rsmSet(items, p.start, len(list)))
		}
		size := len(iq.Result(res).Wire())
		if size <= m.stanzaLimit() {
			return res, nil
		}
		if len(items) <= 1 {
			id := ""
			if len(items) == 1 {
				id = items[0].ID
			}
			m.log.Warn("pubsub item too large to send", zap.String("owner", owner), zap.String("node", node),
				zap.String("id", id), zap.Int("bytes", size), zap.Int("limit", m.lim.MaxStanzaBytes))
			return nil, stanza.Err(stanza.Wait, stanza.ResourceConstraint,
				"item "+id+" is larger than the stanza limit ("+strconv.Itoa(m.lim.MaxStanzaBytes)+" bytes) allows")
		}
		p.truncated = true
		if backward {
			items = items[1:]
			p.start++
		} else {
			items = items[:len(items)-1]
		}
	}
}

// rsmSet is the XEP-0059 <set/> of a page of items starting at index
// start of a result set of count items.
func rsmSet(items []storage.PubSubItem, start, count int) *element.Element {
	if n := len(items); n > 0 {
		return rsm.Result(items[0].ID, items[n-1].ID, start, count)
	}
	return rsm.Result("", "", 0, count)
}
