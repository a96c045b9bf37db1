package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/palisade-im/palisade/modules/archive"
	"github.com/palisade-im/palisade/server/cli"
	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/storage/sqlite"
)

// channelIQ is an IQ request alice sends to bob's client and bob's answer.
type channelIQ struct {
	id, kind, payload string
	// marker is a string of the request found in its record only.
	marker string
	// answer is bob's result payload ("" for an empty result), answerKind
	// and answerMarker what its record holds.
	answer, answerKind, answerMarker string
}

var channelIQs = []channelIQ{
	{id: "ibb-open", kind: "file_transfer", marker: "<open ",
		payload:    "<open xmlns='http://jabber.org/protocol/ibb' sid='ibb-s1' block-size='4096' stanza='iq'/>",
		answerKind: "iq"},
	{id: "ibb-data", kind: "file_transfer", marker: "c2VjcmV0IHBsYW5z",
		payload:    "<data xmlns='http://jabber.org/protocol/ibb' sid='ibb-s1' seq='0'>c2VjcmV0IHBsYW5z</data>",
		answerKind: "iq"},
	{id: "si-offer", kind: "file_transfer", marker: "plans.txt",
		payload: "<si xmlns='http://jabber.org/protocol/si' id='si-s2' mime-type='text/plain' profile='http://jabber.org/protocol/si/profile/file-transfer'>" +
			"<file xmlns='http://jabber.org/protocol/si/profile/file-transfer' name='plans.txt' size='12'/>" +
			"<feature xmlns='http://jabber.org/protocol/feature-neg'><x xmlns='jabber:x:data' type='form'><field var='stream-method' type='list-single'>" +
			"<option><value>http://jabber.org/protocol/ibb</value></option></field></x></feature></si>",
		answer: "<si xmlns='http://jabber.org/protocol/si'><feature xmlns='http://jabber.org/protocol/feature-neg'><x xmlns='jabber:x:data' type='submit'>" +
			"<field var='stream-method'><value>http://jabber.org/protocol/ibb#accepted</value></field></x></feature></si>",
		answerKind: "file_transfer", answerMarker: "ibb#accepted"},
	{id: "jingle-ft", kind: "file_transfer", marker: "report.pdf",
		payload: "<jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid='jft1' initiator='alice@localhost/a'>" +
			"<content creator='initiator' name='f'><description xmlns='urn:xmpp:jingle:apps:file-transfer:5'><file><name>report.pdf</name><size>2048</size></file></description>" +
			"<transport xmlns='urn:xmpp:jingle:transports:ibb:1' sid='jt1' block-size='4096'/></content></jingle>",
		answerKind: "iq"},
	{id: "jingle-call", kind: "jingle", marker: "sid=\"call1\"",
		payload: "<jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid='call1' initiator='alice@localhost/a'>" +
			"<content creator='initiator' name='voice'><description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'/>" +
			"<transport xmlns='urn:xmpp:jingle:transports:ice-udp:1'/></content></jingle>",
		answerKind: "iq"},
	{id: "cmd-exec", kind: "command", marker: "node=\"run-script\"",
		payload: "<command xmlns='http://jabber.org/protocol/commands' node='run-script' action='execute'/>",
		answer: "<command xmlns='http://jabber.org/protocol/commands' node='run-script' sessionid='cs1' status='completed'>" +
			"<note type='info'>script output: 42 files</note></command>",
		answerKind: "command", answerMarker: "script output: 42 files"},
}

// TestJournalChannels: what alice sends bob's client outside messages
// (IBB, SI, Jingle, ad-hoc commands) and bob's answers, directed presence
// and a status broadcast, a PEP publish and a vCard are each one journal
// record of its channel's kind, journaled before delivery; a publish with
// two subscribers is one record, its notifications none; what the server
// answers itself is not recorded.
func TestJournalChannels(t *testing.T) {
	t.Parallel()
	e := pepEnv(t)
	alice := pepLogin(t, e, "alice", "a")
	bob := pepLogin(t, e, "bob", "b")
	carol := pepLogin(t, e, "carol", "c")
	bob.send("<presence/>") // available, without text: not recorded
	carol.send("<presence/>")

	type want struct{ kind, from, to, typ, marker string }
	var wants []want
	for _, q := range channelIQs {
		alice.send("<iq type='set' id='%s' to='bob@localhost/b'>%s</iq>", q.id, q.payload)
		in := bob.await("iq "+q.id, func(n *Node) bool { return n.Is(nsClient, "iq") && n.A("id") == q.id })
		if in.A("from") != "alice@localhost/a" {
			t.Fatalf("bob got %s", in)
		}
		if q.id == "ibb-data" {
			// Delivered only once recorded.
			if r := findRow(journalRows(t, e), q.marker); r == nil || r.kind != q.kind {
				t.Fatalf("bob has the IBB data, the journal has %+v", r)
			}
		}
		bob.send("<iq type='result' id='%s' to='alice@localhost/a'>%s</iq>", q.id, q.answer)
		if r := alice.await("answer "+q.id, func(n *Node) bool { return n.Is(nsClient, "iq") && n.A("id") == q.id }); r.A("type") != "result" || r.A("from") != "bob@localhost/b" {
			t.Fatalf("alice got %s", r)
		}
		wants = append(wants, want{q.kind, "alice@localhost/a", "bob@localhost/b", "set", q.marker})
		wants = append(wants, want{q.answerKind, "bob@localhost/b", "alice@localhost/a", "result", "id=\"" + q.id + "\""})
	}

	// Directed presence with status, and a broadcast with status.
	alice.send("<presence to='bob@localhost/b' id='dp1'><status>directed hello</status></presence>")
	if p := bob.await("directed presence", func(n *Node) bool { return n.Is(nsClient, "presence") && n.A("id") == "dp1" }); p.A("from") != "alice@localhost/a" {
		t.Fatalf("bob got %s", p)
	}
	alice.send("<presence id='bc1'><show>away</show><status>at lunch</status></presence>")
	alice.send("<presence id='bc2'><show>away</show></presence>") // no text: not recorded
	wants = append(wants, want{"presence", "alice@localhost/a", "bob@localhost/b", "", "directed hello"},
		want{"presence", "alice@localhost/a", "", "", "at lunch"})

	// A PEP item on an open node, with two explicit subscribers.
	openOpts := "<publish-options>" + publishOptions("http://jabber.org/protocol/pubsub#publish-options", "pubsub#access_model", "open") + "</publish-options>"
	alice.ok("set", "", publish(nodeTune, "t1", tune("Dead drop one"), openOpts))
	ps := func(inner string) string { return "<pubsub xmlns='" + nsPubSub + "'>" + inner + "</pubsub>" }
	for _, c := range []*pc{bob, carol} {
		c.ok("set", "alice@localhost", ps("<subscribe node='"+nodeTune+"' jid='"+c.user+"@localhost'/>"))
		c.await("last item", event("alice@localhost", nodeTune, "item", "t1"))
	}
	alice.ok("set", "", publish(nodeTune, "t2", tune("Dead drop two"), ""))
	for _, c := range []*pc{bob, carol} {
		c.await("notification", event("alice@localhost", nodeTune, "item", "t2"))
		c.none("a second notification", event("alice@localhost", nodeTune, "item", "t2"))
	}
	alice.ok("set", "", ps("<retract node='"+nodeTune+"'><item id='t2'/></retract>"))
	wants = append(wants, want{"pep", "alice@localhost/a", "alice@localhost", "set", "Dead drop one"},
		want{"pep", "alice@localhost/a", "alice@localhost", "set", "Dead drop two"},
		want{"pep", "alice@localhost/a", "alice@localhost", "set", "<retract"})

	// A vCard set; reading vCards is not recorded.
	alice.ok("set", "", "<vCard xmlns='vcard-temp'><FN>Alice Liddell</FN><NOTE>meet at the dock</NOTE></vCard>")
	if r := bob.ok("get", "alice@localhost", "<vCard xmlns='vcard-temp'/>"); !strings.Contains(r.String(), "meet at the dock") {
		t.Fatalf("vCard get: %s", r)
	}
	wants = append(wants, want{"vcard", "alice@localhost/a", "alice@localhost", "set", "meet at the dock"})
	alice.sync()

	rows := journalRows(t, e)
	for _, w := range wants {
		n := 0
		for _, r := range rows {
			if strings.Contains(r.content, w.marker) && r.kind == w.kind && r.from == w.from && r.to == w.to && r.typ == w.typ {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d records of %+v, want 1", n, w)
		}
	}
	if len(rows) != len(wants) {
		var got []string
		for _, r := range rows {
			got = append(got, r.kind+" "+r.from+" -> "+r.to+": "+r.content)
		}
		t.Fatalf("%d records, want %d:\n%s", len(rows), len(wants), strings.Join(got, "\n"))
	}
	if r := findRow(rows, "Dead drop two"); r == nil || !strings.Contains(r.content, "<publish") {
		t.Fatalf("the PEP record is not the publish request: %+v", r)
	}

	// The officer's tools filter on every kind.
	if err := e.stop(); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(t.TempDir(), "palisade.toml")
	if err := os.WriteFile(conf, []byte("[server]\ndomains = [\"localhost\"]\ndata_dir = "+strconv.Quote(e.cfg.Server.DataDir)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for _, w := range wants {
		counts[w.kind]++
	}
	for kind, n := range counts {
		var out, errOut strings.Builder
		if code := cli.Main([]string{"--config", conf, "archive", "search", "--kind", kind}, strings.NewReader(""), &out, &errOut); code != 0 {
			t.Fatalf("archive search --kind %s exited %d:\n%s%s", kind, code, out.String(), errOut.String())
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if lines[len(lines)-1] != fmt.Sprintf("%d records found", n) {
			t.Errorf("archive search --kind %s:\n%s\nwant %d records", kind, out.String(), n)
		}
		for _, l := range lines[:len(lines)-1] {
			if f := strings.Split(l, "\t"); len(f) < 3 || f[2] != kind {
				t.Errorf("archive search --kind %s printed %q", kind, l)
			}
		}
	}
	var out strings.Builder
	if code := cli.Main([]string{"--config", conf, "archive", "search", "--kind", "bogus"}, strings.NewReader(""), &out, &out); code != 2 ||
		!strings.Contains(out.String(), "--kind") || !strings.Contains(out.String(), "file_transfer") || !strings.Contains(out.String(), "vcard") {
		t.Errorf("archive search --kind bogus exited %d:\n%s", code, out.String())
	}
	bundle := filepath.Join(t.TempDir(), "bundle")
	out.Reset()
	if code := cli.Main([]string{"--config", conf, "archive", "export", "--out", bundle, "--kind", "pep", "--kind", "command", "--kind", "presence"}, strings.NewReader(""), &out, &out); code != 0 {
		t.Fatalf("archive export exited %d:\n%s", code, out.String())
	}
	b, err := os.ReadFile(filepath.Join(bundle, archive.FileRecords))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var line archive.ExportLine
		if err := json.Unmarshal([]byte(l), &line); err != nil {
			t.Fatal(err)
		}
		got[line.Kind]++
	}
	if len(got) != 3 || got["pep"] != counts["pep"] || got["command"] != counts["command"] || got["presence"] != counts["presence"] {
		t.Errorf("export --kind pep --kind command --kind presence: %v", got)
	}
	out.Reset()
	if code := cli.Main([]string{"archive", "verify-export", bundle}, strings.NewReader(""), &out, &out); code != 0 {
		t.Fatalf("archive verify-export exited %d:\n%s", code, out.String())
	}
}

// TestJournalChannelsFailClosed: while the journal cannot write, an IQ to
// bob's client, a directed presence, a status broadcast, a PEP publish and
// a vCard set reach no one and change nothing; alice gets the core's
// internal-server-error (wait) for each, /healthz fails.
func TestJournalChannelsFailClosed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *config.Config) { c.Listen.Admin = freeAddr(t) })
	admin := e.cfg.Listen.Admin
	waitListening(t, admin)
	alice := pepLogin(t, e, "alice", "a")
	bob := pepLogin(t, e, "bob", "b")
	bob.send("<presence/>")
	openOpts := "<publish-options>" + publishOptions("http://jabber.org/protocol/pubsub#publish-options", "pubsub#access_model", "open") + "</publish-options>"
	alice.ok("set", "", publish(nodeTune, "t1", tune("Before"), openOpts))
	bob.ok("set", "alice@localhost", "<pubsub xmlns='"+nsPubSub+"'><subscribe node='"+nodeTune+"' jid='bob@localhost'/></pubsub>")
	bob.await("last item", event("alice@localhost", nodeTune, "item", "t1"))

	lf, err := os.OpenFile(filepath.Join(sqlite.JournalRecordsDir(filepath.Join(e.cfg.Server.DataDir, "journal.db")), "lock"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	refused := func(what string, n *Node) {
		t.Helper()
		if n.stanzaError() != "internal-server-error" || n.Child(nsClient, "error").A("type") != "wait" {
			t.Fatalf("%s: alice got %s", what, n)
		}
	}
	refused("IBB data", alice.iq("set", "bob@localhost/b", "<data xmlns='http://jabber.org/protocol/ibb' sid='s' seq='0'>bm90IHRoaXM=</data>"))
	refused("ad-hoc command", alice.iq("set", "bob@localhost/b", "<command xmlns='http://jabber.org/protocol/commands' node='wipe' action='execute'/>"))
	refused("PEP publish", alice.iq("set", "", publish(nodeTune, "t2", tune("Unrecorded"), "")))
	refused("vCard set", alice.iq("set", "", "<vCard xmlns='vcard-temp'><NOTE>unrecorded</NOTE></vCard>"))
	alice.send("<presence to='bob@localhost/b' id='dp'><status>unrecorded</status></presence>")
	refused("directed presence", alice.await("presence error", func(n *Node) bool { return n.Is(nsClient, "presence") && n.A("id") == "dp" }))
	alice.send("<presence id='bc'><status>unrecorded</status></presence>")
	bc := alice.await("presence error", func(n *Node) bool { return n.Is(nsClient, "presence") && n.A("id") == "bc" })
	refused("status broadcast", bc)
	if bc.A("from") != "alice@localhost" {
		t.Errorf("the broadcast's error comes from %q, want alice's account", bc.A("from"))
	}
	bob.none("anything from alice", func(n *Node) bool { return true })
	if code, body := healthz(t, e); code != http.StatusServiceUnavailable || !strings.Contains(body, "journal") {
		t.Fatalf("healthz while locked: %d %s", code, body)
	}
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_UN); err != nil {
		t.Fatal(err)
	}

	// Nothing was stored.
	items := bob.ok("get", "alice@localhost", "<pubsub xmlns='"+nsPubSub+"'><items node='"+nodeTune+"'/></pubsub>")
	if s := items.String(); strings.Contains(s, "Unrecorded") || !strings.Contains(s, "Before") {
		t.Fatalf("items after the refused publish: %s", s)
	}
	if v := bob.iq("get", "alice@localhost", "<vCard xmlns='vcard-temp'/>"); strings.Contains(v.String(), "unrecorded") {
		t.Fatalf("vCard after the refused set: %s", v)
	}
	for _, r := range journalRows(t, e) {
		if strings.Contains(r.content, "unrecorded") || strings.Contains(r.content, "Unrecorded") || strings.Contains(r.content, "bm90IHRoaXM=") {
			t.Fatalf("journal holds a refused stanza: %+v", r)
		}
	}
	if code, body := healthz(t, e); code != http.StatusOK {
		t.Fatalf("healthz after: %d %s", code, body)
	}
}
