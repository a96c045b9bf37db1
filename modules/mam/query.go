package mam

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/rsm"
	"github.com/palisade-im/palisade/server/stanza"
	"github.com/palisade-im/palisade/storage"
	"go.uber.org/zap"
	"mellium.im/xmpp/jid"
)

// stampLayout is the XEP-0082 DateTime the module writes.
const stampLayout = "2006-01-02T15:04:05.000000Z"

// maxPrefsJIDs bounds each preferences list.
const maxPrefsJIDs = 1000

// IQRoutes implements module.IQHandlers: queries, metadata and
// preferences on the account's bare JID.
func (m *Module) IQRoutes() []module.IQRoute {
	return []module.IQRoute{
		{Space: NS, Local: "query", Scope: module.ScopeAccount, Handle: m.query},
		{Space: NS, Local: "metadata", Scope: module.ScopeAccount, Handle: m.metadata},
		{Space: NS, Local: "prefs", Scope: module.ScopeAccount, Handle: m.handlePrefs},
	}
}

func badRequest(text string) error { return stanza.Err(stanza.Modify, stanza.BadRequest, text) }

// owner checks that the requester asks for its own archive (XEP-0313
// section 9.1) and returns it.
func owner(iq *stanza.Stanza) (jid.JID, error) {
	o := iq.To.Bare()
	if !iq.From.Bare().Equal(o) {
		return o, stanza.Err(stanza.Auth, stanza.Forbidden, "only the account's own clients read its archive")
	}
	return o, nil
}

// queryForm is the form a query get returns (XEP-0313 section 4.1.6).
func queryForm() *element.Element {
	field := func(typ, v string) *element.Element {
		return element.New(NSData, "field", element.A("type", typ), element.A("var", v))
	}
	x := element.New(NSData, "x", element.A("type", "form")).Append(
		field("hidden", "FORM_TYPE").Append(element.New(NSData, "value").SetText(NS)),
		field("jid-single", "with"),
		field("text-single", "start"),
		field("text-single", "end"),
		field("text-single", "before-id"),
		field("text-single", "after-id"),
		field("list-multi", "ids").Append(element.New("http://jabber.org/protocol/xdata-validate", "validate",
			element.A("datatype", "xs:string")).Append(element.New("http://jabber.org/protocol/xdata-validate", "open"))),
	)
	return element.New(NS, "query").Append(x)
}

// maxQueryID bounds the client's queryid, which every result repeats.
const maxQueryID = 256

func (m *Module) query(ctx context.Context, sess module.Session, iq *stanza.Stanza) (_ *element.Element, err error) {
	if iq.Type == "set" {
		defer func() {
			result := "ok"
			if err != nil {
				result = "error"
			}
			m.queries.WithLabelValues(result).Inc()
		}()
	}
	own, err := owner(iq)
	if err != nil {
		return nil, err
	}
	if iq.Type == "get" {
		return queryForm(), nil
	}
	p := iq.Payload()
	if p.HasAttr("node") {
		return nil, stanza.Err(stanza.Cancel, stanza.FeatureNotImplemented, "a user archive has no nodes")
	}
	if len(p.Attr("queryid")) > maxQueryID {
		// It is copied into every result: a long one would make each
		// result up to twice the stanza limit.
		return nil, badRequest("queryid is longer than " + strconv.Itoa(maxQueryID) + " bytes")
	}
	q, flip, err := m.parseQuery(p)
	if err != nil {
		return nil, err
	}
	q.Owner = own.String()
	if err := m.sync(ctx); err != nil {
		return nil, fmt.Errorf("mam: wait for queued items: %w", err)
	}
	page, err := m.store.QueryHistory(ctx, q)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, stanza.Err(stanza.Cancel, stanza.ItemNotFound, "no such message in the archive")
	}
	if err != nil {
		return nil, fmt.Errorf("mam: query: %w", err)
	}
	queryID := p.Attr("queryid")
	order := slices.Clone(page.Items)
	if flip {
		slices.Reverse(order)
	}
	for _, it := range order {
		msg, err := resultMessage(own, iq.From, queryID, it)
		if err != nil {
			m.log.Error("mam: unreadable archived message", zap.String("owner", own.String()), zap.String("id", it.ID), zap.Error(err))
			continue
		}
		if sess != nil {
			sess.Send(msg)
		} else {
			m.router.Route(ctx, msg)
		}
	}
	fin := element.New(NS, "fin")
	if page.Complete {
		fin.SetAttr("complete", "true")
	}
	first, last := "", ""
	if n := len(page.Items); n > 0 {
		first, last = page.Items[0].ID, page.Items[n-1].ID
	}
	return fin.Append(rsm.Result(first, last, page.FirstIndex, page.Count)), nil
}

// resultMessage wraps an archived item for the requester (section 4.2).
func resultMessage(own, to jid.JID, queryID string, it storage.HistoryItem) (*stanza.Stanza, error) {
	orig, err := element.Parse(it.Stanza, stanza.NSClient)
	if err != nil {
		return nil, err
	}
	res := element.New(NS, "result", element.A("id", it.ID))
	if queryID != "" {
		res.SetAttr("queryid", queryID)
	}
	res.Append(element.New(NSForward, "forwarded").Append(
		element.New(stanza.NSDelay, "delay", element.A("stamp", it.Time.UTC().Format(stampLayout))),
		orig,
	))
	msg := stanza.New(stanza.Message, own, to, "", newMessageID())
	msg.El.Append(res)
	return msg, nil
}

// parseQuery reads the data form, the RSM set and <flip-page/>.
func (m *Module) parseQuery(p *element.Element) (q storage.HistoryQuery, flip bool, err error) {
	for _, c := range p.Elements() {
		switch {
		case c.Space == NSData && c.Local == "x":
			if err := parseForm(c, &q, m.cfg.MaxPage); err != nil {
				return q, false, err
			}
		case c.Space == NSRSM && c.Local == "set":
			if err := m.parseRSM(c, &q); err != nil {
				return q, false, err
			}
		case c.Space == NS && c.Local == "flip-page":
			flip = true
		default:
			return q, false, badRequest("unexpected <" + c.Local + "/> in the query")
		}
	}
	if p.Child(NSRSM, "set") == nil {
		q.Limit = m.cfg.MaxPage
	}
	return q, flip, nil
}

func parseForm(x *element.Element, q *storage.HistoryQuery, maxIDs int) error {
	if t := x.Attr("type"); t != "submit" {
		return badRequest("the query form must be of type submit")
	}
	seen := map[string]bool{}
	for _, f := range x.Elements() {
		if f.Space != NSData || f.Local != "field" {
			continue
		}
		v := f.Attr("var")
		if seen[v] {
			return badRequest("field " + v + " given twice")
		}
		seen[v] = true
		var vals []string
		for _, c := range f.Elements() {
			if c.Space == NSData && c.Local == "value" {
				vals = append(vals, strings.TrimSpace(c.Text()))
			}
		}
		single := func() (string, error) {
			if len(vals) > 1 {
				return "", badRequest("field " + v + " takes one value")
			}
			if len(vals) == 0 {
				return "", nil
			}
			return vals[0], nil
		}
		val, err := single()
		if v == "ids" {
			err = nil
		}
		if err != nil {
			return err
		}
		switch v {
		case "FORM_TYPE":
			if val != NS {
				return badRequest("FORM_TYPE must be " + NS)
			}
		case "with":
			if val == "" {
				continue
			}
			j, err := jid.Parse(val)
			if err != nil {
				return badRequest("with is not a JID")
			}
			q.With = j.String()
		case "start", "end":
			if val == "" {
				continue
			}
			t, err := time.Parse(time.RFC3339Nano, val)
			if err != nil {
				return badRequest(v + " is not an XEP-0082 date and time")
			}
			if v == "start" {
				q.Start = t
			} else {
				q.End = t
			}
		case "before-id":
			q.BeforeID = val
		case "after-id":
			q.AfterID = val
		case "ids":
			for _, id := range vals {
				if id == "" {
					return badRequest("ids holds an empty id")
				}
			}
			if len(vals) > maxIDs {
				return badRequest(fmt.Sprintf("at most %d ids in one query", maxIDs))
			}
			q.IDs = vals
		default:
			return stanza.Err(stanza.Cancel, stanza.FeatureNotImplemented, "unknown query field "+v)
		}
	}
	return nil
}

func (m *Module) parseRSM(set *element.Element, q *storage.HistoryQuery) error {
	r, err := rsm.Parse(set)
	if err != nil {
		return err
	}
	q.Limit = m.cfg.MaxPage
	if r.Max >= 0 {
		q.Limit = min(r.Max, m.cfg.MaxPage)
	}
	q.PageAfter, q.PageBefore, q.Last = r.After, r.Before, r.Last
	if r.Index >= 0 {
		q.Offset = r.Index
	}
	return nil
}

func (m *Module) metadata(ctx context.Context, _ module.Session, iq *stanza.Stanza) (*element.Element, error) {
	own, err := owner(iq)
	if err != nil {
		return nil, err
	}
	if iq.Type != "get" {
		return nil, badRequest("metadata is read with an iq get")
	}
	if err := m.sync(ctx); err != nil {
		return nil, fmt.Errorf("mam: wait for queued items: %w", err)
	}
	first, last, ok, err := m.store.HistoryBounds(ctx, own.String())
	if err != nil {
		return nil, fmt.Errorf("mam: metadata: %w", err)
	}
	md := element.New(NS, "metadata")
	if ok {
		md.Append(element.New(NS, "start", element.A("id", first.ID), element.A("timestamp", first.Time.UTC().Format(stampLayout))),
			element.New(NS, "end", element.A("id", last.ID), element.A("timestamp", last.Time.UTC().Format(stampLayout))))
	}
	return md, nil
}

func prefsElement(p storage.HistoryPrefs) *element.Element {
	list := func(name string, jids []string) *element.Element {
		el := element.New(NS, name)
		for _, j := range jids {
			el.Append(element.New(NS, "jid").SetText(j))
		}
		return el
	}
	return element.New(NS, "prefs", element.A("default", p.Default)).Append(list("always", p.Always), list("never", p.Never))
}

func (m *Module) handlePrefs(ctx context.Context, _ module.Session, iq *stanza.Stanza) (*element.Element, error) {
	own, err := owner(iq)
	if err != nil {
		return nil, err
	}
	cur := m.prefsOf(ctx, own.String())
	if iq.Type == "get" {
		return prefsElement(cur), nil
	}
	p := iq.Payload()
	next := storage.HistoryPrefs{Default: cur.Default}
	if p.HasAttr("default") {
		next.Default = p.Attr("default")
		if !validDefault(next.Default) {
			return nil, badRequest("default must be always, never or roster")
		}
	}
	seen := map[string]string{}
	for _, c := range p.Elements() {
		if c.Space != NS || (c.Local != "always" && c.Local != "never") {
			return nil, badRequest("unexpected <" + c.Local + "/> in prefs")
		}
		for _, j := range c.Elements() {
			if j.Space != NS || j.Local != "jid" {
				return nil, badRequest("a preference list holds <jid/> elements")
			}
			pj, err := jid.Parse(strings.TrimSpace(j.Text()))
			if err != nil {
				return nil, stanza.Err(stanza.Modify, stanza.JIDMalformed, "not a JID: "+j.Text())
			}
			s := pj.String()
			if prev, dup := seen[s]; dup {
				if prev != c.Local {
					return nil, badRequest(s + " is in both always and never")
				}
				continue
			}
			seen[s] = c.Local
			if c.Local == "always" {
				next.Always = append(next.Always, s)
			} else {
				next.Never = append(next.Never, s)
			}
		}
	}
	if len(next.Always) > maxPrefsJIDs || len(next.Never) > maxPrefsJIDs {
		return nil, stanza.Err(stanza.Modify, stanza.NotAcceptable, fmt.Sprintf("at most %d JIDs in each list", maxPrefsJIDs))
	}
	if err := m.store.SetHistoryPrefs(ctx, own.String(), next); err != nil {
		return nil, fmt.Errorf("mam: set prefs: %w", err)
	}
	m.prefsMu.Lock()
	m.prefs[own.String()] = next
	m.prefsMu.Unlock()
	return prefsElement(next), nil
}
