package e2e

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"

	_ "github.com/palisade-im/palisade/modules/mam" // XEP-0313 history, linked into every e2e server
	"github.com/palisade-im/palisade/storage"
)

const (
	nsMAM = "urn:xmpp:mam:2"
	nsSID = "urn:xmpp:sid:0"
	nsRSM = "http://jabber.org/protocol/rsm"
	nsFwd = "urn:xmpp:forward:0"
)

// mamResult is one archived message as a query returned it.
type mamResult struct {
	id, queryID, stamp, body, from, to string
	msg                                *Node
}

// mamFin is the end of a query.
type mamFin struct {
	complete           bool
	first, last, index string
	count              int
	results            []mamResult
	errCond            string
}

func (f mamFin) bodies() string {
	var b []string
	for _, r := range f.results {
		b = append(b, r.body)
	}
	return strings.Join(b, ",")
}

var mamSeq int

// mamQuery sends a query (form fields as var=value pairs, values of ids
// separated by '|', rsm as raw XML) and collects results until the IQ reply.
func (c *pc) mamQuery(to string, fields []string, rsm string, flip bool) mamFin {
	c.t.Helper()
	mamSeq++
	qid := fmt.Sprintf("q%d", mamSeq)
	form := ""
	if len(fields) > 0 {
		form = "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>"
		for i := 0; i < len(fields); i += 2 {
			form += "<field var='" + fields[i] + "'>"
			for _, v := range strings.Split(fields[i+1], "|") {
				form += "<value>" + v + "</value>"
			}
			form += "</field>"
		}
		form += "</x>"
	}
	if flip {
		rsm += "<flip-page/>"
	}
	id := "mam" + qid
	toAttr := ""
	if to != "" {
		toAttr = " to='" + to + "'"
	}
	c.send("<iq type='set' id='%s'%s><query xmlns='urn:xmpp:mam:2' queryid='%s'>%s%s</query></iq>", id, toAttr, qid, form, rsm)
	var fin mamFin
	for {
		n := c.await("mam "+id, func(n *Node) bool {
			return (n.Is(nsClient, "iq") && n.A("id") == id) || (n.Is(nsClient, "message") && n.Child(nsMAM, "result") != nil)
		})
		if n.Is(nsClient, "iq") {
			if n.A("type") == "error" {
				fin.errCond = n.stanzaError()
				return fin
			}
			f := n.Child(nsMAM, "fin")
			if f == nil {
				c.t.Fatalf("no <fin/> in %s", n)
			}
			fin.complete = f.A("complete") == "true"
			if set := f.Child(nsRSM, "set"); set != nil {
				if x := set.Child(nsRSM, "first"); x != nil {
					fin.first, fin.index = x.Text, x.A("index")
				}
				if x := set.Child(nsRSM, "last"); x != nil {
					fin.last = x.Text
				}
				if x := set.Child(nsRSM, "count"); x != nil {
					fin.count, _ = strconv.Atoi(x.Text)
				}
			}
			return fin
		}
		r := n.Child(nsMAM, "result")
		fw := r.Child(nsFwd, "forwarded")
		if fw == nil || n.A("from") != bare(c.jid) {
			c.t.Fatalf("bad result %s", n)
		}
		m := fw.Child(nsClient, "message")
		d := fw.Child("urn:xmpp:delay", "delay")
		if m == nil || d == nil {
			c.t.Fatalf("result without message or delay: %s", n)
		}
		res := mamResult{id: r.A("id"), queryID: r.A("queryid"), stamp: d.A("stamp"), from: m.A("from"), to: m.A("to"), msg: m}
		if b := m.Child(nsClient, "body"); b != nil {
			res.body = b.Text
		}
		if res.queryID != qid {
			c.t.Fatalf("result for query %q, want %q", res.queryID, qid)
		}
		fin.results = append(fin.results, res)
	}
}

// stanzaIDs returns the stanza-ids of a message, by -> id.
func stanzaIDs(m *Node) map[string]string {
	out := map[string]string{}
	for _, c := range m.Nodes {
		if c.Is(nsSID, "stanza-id") {
			out[c.A("by")] = c.A("id")
		}
	}
	return out
}

// TestMamArchivesBothSides: a message is in the sender's and the
// recipient's history under different ids; the recipient's copy carries
// its stanza-id, the forged ones for our users are gone, a foreign one
// stays; the journal records the delivered stanza; disco, form, metadata.
func TestMamArchivesBothSides(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	alice := pepLogin(t, e, "alice", "a")
	bob := pepLogin(t, e, "bob", "b")

	alice.send("<message to='bob@localhost/b' type='chat' id='m1'><body>hello bob</body>" +
		"<stanza-id xmlns='urn:xmpp:sid:0' by='bob@localhost' id='forged-1'/>" +
		"<stanza-id xmlns='urn:xmpp:sid:0' by='localhost' id='forged-2'/>" +
		"<stanza-id xmlns='urn:xmpp:sid:0' by='room@muc.example.org' id='foreign'/></message>")
	m := bob.await("message m1", func(n *Node) bool { return n.Is(nsClient, "message") && n.A("id") == "m1" })
	ids := stanzaIDs(m)
	bobID := ids["bob@localhost"]
	if len(ids) != 2 || bobID == "" || bobID == "forged-1" || ids["room@muc.example.org"] != "foreign" {
		t.Fatalf("stanza-ids on delivery: %v in %s", ids, m)
	}

	bf := bob.mamQuery("", nil, "", false)
	if len(bf.results) != 1 || bf.results[0].id != bobID || bf.results[0].body != "hello bob" ||
		bf.results[0].from != "alice@localhost/a" || !bf.complete || bf.count != 1 || bf.first != bobID || bf.last != bobID || bf.index != "0" {
		t.Fatalf("bob's history: %+v", bf)
	}
	af := alice.mamQuery("alice@localhost", nil, "", false)
	if len(af.results) != 1 || af.results[0].body != "hello bob" || af.results[0].id == bobID || af.results[0].id == "" {
		t.Fatalf("alice's history: %+v", af)
	}
	if sids := stanzaIDs(af.results[0].msg); sids["bob@localhost"] != "" {
		t.Fatalf("alice sees bob's archive id: %s", af.results[0].msg)
	}
	if r := findRow(journalRows(t, e), "hello bob"); r == nil || !strings.Contains(r.content, bobID) || strings.Contains(r.content, "forged-1") {
		t.Fatalf("journal record: %+v", r)
	}

	// Another user's archive is forbidden.
	if f := alice.mamQuery("bob@localhost", nil, "", false); f.errCond != "forbidden" {
		t.Fatalf("alice reading bob's archive: %+v", f)
	}
	// A chat state alone and a receipt alone are not archived; an OMEMO
	// message without a body is.
	alice.send("<message to='bob@localhost/b' type='chat' id='cs'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>")
	alice.send("<message to='bob@localhost/b' id='rc'><received xmlns='urn:xmpp:receipts' id='x'/></message>")
	alice.send("<message to='bob@localhost/b' type='chat' id='om'><encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='1'><iv>AAAA</iv></header><payload>BBBB</payload></encrypted></message>")
	om := bob.await("omemo", func(n *Node) bool { return n.Is(nsClient, "message") && n.A("id") == "om" })
	if stanzaIDs(om)["bob@localhost"] == "" {
		t.Fatalf("OMEMO message without stanza-id: %s", om)
	}
	if f := bob.mamQuery("", nil, "", false); f.count != 2 || f.results[1].msg.A("id") != "om" {
		t.Fatalf("after chat state, receipt and OMEMO: %+v", f)
	}

	// Discovery, the form, metadata.
	r := alice.ok("get", "alice@localhost", "<query xmlns='"+nsDiscoI+"'/>")
	feats := map[string]bool{}
	for _, f := range r.Child(nsDiscoI, "query").Nodes {
		if f.XMLName.Local == "feature" {
			feats[f.A("var")] = true
		}
	}
	for _, f := range []string{nsMAM, nsMAM + "#extended", nsSID} {
		if !feats[f] {
			t.Errorf("account features lack %s: %v", f, feats)
		}
	}
	form := alice.ok("get", "", "<query xmlns='urn:xmpp:mam:2'/>")
	x := form.Child(nsMAM, "query").Child("jabber:x:data", "x")
	var vars []string
	for _, f := range x.Nodes {
		vars = append(vars, f.A("var"))
	}
	if strings.Join(vars, ",") != "FORM_TYPE,with,start,end,before-id,after-id,ids" {
		t.Fatalf("form fields %v", vars)
	}
	md := bob.ok("get", "", "<metadata xmlns='urn:xmpp:mam:2'/>").Child(nsMAM, "metadata")
	if md.Child(nsMAM, "start").A("id") != bobID || md.Child(nsMAM, "end").A("id") != stanzaIDs(om)["bob@localhost"] ||
		md.Child(nsMAM, "start").A("timestamp") == "" {
		t.Fatalf("metadata %s", md)
	}
	if n := historyCount(t, e, "carol"); n != 0 {
		t.Fatalf("carol's empty history has %d items", n)
	}
}

func historyCount(t *testing.T, e *env, user string) int {
	t.Helper()
	p, err := e.store.QueryHistory(context.Background(), storage.HistoryQuery{Owner: user + "@" + domain})
	if err != nil {
		t.Fatal(err)
	}
	return p.Count
}

// TestMamPaging: 30 messages paged by 10 forwards with after and backwards
// with before, flipped, filtered by with, time and ids; bad queries.
func TestMamPaging(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	alice := pepLogin(t, e, "alice", "a")
	bob := pepLogin(t, e, "bob", "b")
	carol := pepLogin(t, e, "carol", "c")
	for i := 0; i < 30; i++ {
		alice.send("<message to='bob@localhost/b' type='chat' id='p%d'><body>%d</body></message>", i, i)
	}
	carol.send("<message to='bob@localhost/b' type='chat' id='c1'><body>c1</body></message>")
	carol.send("<message to='bob@localhost/b' type='chat' id='c2'><body>c2</body></message>")
	bob.await("c2", func(n *Node) bool { return n.Is(nsClient, "message") && n.A("id") == "c2" })
	bob.await("p29", func(n *Node) bool { return n.Is(nsClient, "message") && n.A("id") == "p29" })
	seq := func(from, to int) string {
		var b []string
		for i := from; i < to; i++ {
			b = append(b, strconv.Itoa(i))
		}
		return strings.Join(b, ",")
	}
	with := []string{"with", "alice@localhost"}

	// Forwards.
	p1 := bob.mamQuery("", with, "<set xmlns='http://jabber.org/protocol/rsm'><max>10</max></set>", false)
	if p1.bodies() != seq(0, 10) || p1.complete || p1.count != 30 || p1.index != "0" {
		t.Fatalf("page 1: %+v", p1)
	}
	p2 := bob.mamQuery("", with, "<set xmlns='http://jabber.org/protocol/rsm'><max>10</max><after>"+p1.last+"</after></set>", false)
	if p2.bodies() != seq(10, 20) || p2.complete || p2.index != "10" {
		t.Fatalf("page 2: %+v", p2)
	}
	p3 := bob.mamQuery("", with, "<set xmlns='http://jabber.org/protocol/rsm'><max>10</max><after>"+p2.last+"</after></set>", false)
	if p3.bodies() != seq(20, 30) || !p3.complete || p3.index != "20" {
		t.Fatalf("page 3: %+v", p3)
	}
	// Backwards from the end.
	b1 := bob.mamQuery("", with, "<set xmlns='http://jabber.org/protocol/rsm'><max>10</max><before/></set>", false)
	if b1.bodies() != seq(20, 30) || b1.complete || b1.index != "20" {
		t.Fatalf("last page: %+v", b1)
	}
	b2 := bob.mamQuery("", with, "<set xmlns='http://jabber.org/protocol/rsm'><max>10</max><before>"+b1.first+"</before></set>", false)
	if b2.bodies() != seq(10, 20) || b2.complete {
		t.Fatalf("before page: %+v", b2)
	}
	b3 := bob.mamQuery("", with, "<set xmlns='http://jabber.org/protocol/rsm'><max>10</max><before>"+b2.first+"</before></set>", false)
	if b3.bodies() != seq(0, 10) || !b3.complete {
		t.Fatalf("first page backwards: %+v", b3)
	}
	// Flipped: same page, newest first.
	fl := bob.mamQuery("", with, "<set xmlns='http://jabber.org/protocol/rsm'><max>10</max><before/></set>", true)
	if fl.bodies() != "29,28,27,26,25,24,23,22,21,20" || fl.first != b1.first || fl.last != b1.last {
		t.Fatalf("flipped: %+v", fl)
	}
	// RSM index.
	if ix := bob.mamQuery("", with, "<set xmlns='http://jabber.org/protocol/rsm'><max>3</max><index>5</index></set>", false); ix.bodies() != "5,6,7" {
		t.Fatalf("index 5: %+v", ix)
	}
	// with: carol's two only; a full JID; everything.
	if w := bob.mamQuery("", []string{"with", "carol@localhost"}, "", false); w.bodies() != "c1,c2" || !w.complete {
		t.Fatalf("with carol: %+v", w)
	}
	if w := bob.mamQuery("", []string{"with", "alice@localhost/a"}, "", false); w.count != 30 {
		t.Fatalf("with alice's full JID: %+v", w)
	}
	if w := bob.mamQuery("", []string{"with", "alice@localhost/other"}, "", false); w.count != 0 || !w.complete {
		t.Fatalf("with another resource: %+v", w)
	}
	if all := bob.mamQuery("", nil, "", false); all.count != 32 || !all.complete {
		t.Fatalf("all: %d complete=%v", all.count, all.complete)
	}
	// Time: from the 11th message's stamp to the 20th's.
	start, end := p2.results[0].stamp, p2.results[9].stamp
	if tf := bob.mamQuery("", []string{"with", "alice@localhost", "start", start, "end", end}, "", false); tf.bodies() != seq(10, 20) {
		t.Fatalf("start %s end %s: %+v", start, end, tf)
	}
	// ids, after-id and before-id.
	if ids := bob.mamQuery("", []string{"ids", p1.results[3].id + "|" + p3.results[5].id}, "", false); ids.bodies() != "3,25" {
		t.Fatalf("ids: %+v", ids)
	}
	if r := bob.mamQuery("", []string{"with", "alice@localhost", "after-id", p1.results[4].id, "before-id", p1.results[8].id}, "", false); r.bodies() != "5,6,7" {
		t.Fatalf("after-id/before-id: %+v", r)
	}
	// Errors.
	for _, c := range []struct {
		fields []string
		rsm    string
		cond   string
	}{
		{[]string{"ids", "nope"}, "", "item-not-found"},
		{[]string{"after-id", "nope"}, "", "item-not-found"},
		{nil, "<set xmlns='http://jabber.org/protocol/rsm'><after>nope</after></set>", "item-not-found"},
		{nil, "<set xmlns='http://jabber.org/protocol/rsm'><before>nope</before></set>", "item-not-found"},
		{[]string{"start", "yesterday"}, "", "bad-request"},
		{[]string{"with", "a@b@c"}, "", "bad-request"},
		{[]string{"{urn:x}free-text", "x"}, "", "feature-not-implemented"},
		{nil, "<set xmlns='http://jabber.org/protocol/rsm'><max>-1</max></set>", "bad-request"},
	} {
		if f := bob.mamQuery("", c.fields, c.rsm, false); f.errCond != c.cond {
			t.Errorf("%v %s: got %+v, want %s", c.fields, c.rsm, f, c.cond)
		}
	}
	r := bob.iq("set", "", "<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>urn:other</value></field></x></query>")
	if r.stanzaError() != "bad-request" {
		t.Fatalf("wrong FORM_TYPE: %s", r)
	}
}

// TestMamPrefs: "never" for a contact keeps its messages out of the
// user's history (no stanza-id either) but not out of the sender's nor the
// journal; account deletion removes the history.
func TestMamPrefs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	bob := pepLogin(t, e, "bob", "b")
	carol := pepLogin(t, e, "carol", "c")
	got := bob.ok("get", "", "<prefs xmlns='urn:xmpp:mam:2'/>").Child(nsMAM, "prefs")
	if got.A("default") != "always" || got.Child(nsMAM, "always") == nil || got.Child(nsMAM, "never") == nil {
		t.Fatalf("default prefs %s", got)
	}
	set := bob.ok("set", "", "<prefs xmlns='urn:xmpp:mam:2' default='always'><always/><never><jid>carol@localhost</jid></never></prefs>").Child(nsMAM, "prefs")
	if n := set.Child(nsMAM, "never").Child(nsMAM, "jid"); n == nil || n.Text != "carol@localhost" {
		t.Fatalf("applied prefs %s", set)
	}
	bob.fails("set", "", "<prefs xmlns='urn:xmpp:mam:2' default='sometimes'/>", "bad-request", "")
	bob.fails("set", "", "<prefs xmlns='urn:xmpp:mam:2' default='always'><always><jid>x@localhost</jid></always><never><jid>x@localhost</jid></never></prefs>", "bad-request", "")
	if g := bob.ok("get", "", "<prefs xmlns='urn:xmpp:mam:2'/>").Child(nsMAM, "prefs"); g.Child(nsMAM, "never").Child(nsMAM, "jid") == nil {
		t.Fatalf("a refused set changed the prefs: %s", g)
	}

	carol.send("<message to='bob@localhost/b' type='chat' id='secret'><body>not in bob's history</body></message>")
	m := bob.await("secret", func(n *Node) bool { return n.Is(nsClient, "message") && n.A("id") == "secret" })
	if ids := stanzaIDs(m); len(ids) != 0 {
		t.Fatalf("stanza-id on a message bob does not archive: %s", m)
	}
	if f := bob.mamQuery("", nil, "", false); f.count != 0 {
		t.Fatalf("bob's history: %+v", f)
	}
	if f := carol.mamQuery("", nil, "", false); f.bodies() != "not in bob's history" {
		t.Fatalf("carol's history: %+v", f)
	}
	if r := findRow(journalRows(t, e), "not in bob's history"); r == nil {
		t.Fatal("the journal lacks the message bob's prefs kept out of his history")
	}

	// Account deletion removes the history.
	carol.close()
	if err := e.store.DeleteUser(context.Background(), "carol", domain); err != nil {
		t.Fatal(err)
	}
	if n := historyCount(t, e, "carol"); n != 0 {
		t.Fatalf("carol's history after deletion: %d items", n)
	}
}
