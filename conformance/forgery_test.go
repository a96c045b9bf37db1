package conformance

import (
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	// The "sqlite3" database/sql driver, to edit a stopped server's tables.
	_ "github.com/mattn/go-sqlite3"
)

// The sender-forgery finding of issue 13: encoding/xml accepts XML that is
// not namespace-well-formed (duplicate attributes, duplicate xml:lang, an
// undeclared prefix, <:m/>), the server stamped only the first 'from' and
// forwarded the rest as parsed. xmpp.js (last attribute wins) then showed
// the message as from another user, and slixmpp (expat) disconnected; MAM
// and offline storage kept the bytes, so every later sync disconnected it
// again. These tests drive the real clients.

const malloryPassword = "mallory-secret-4444"

const nsStreams = "http://etherx.jabber.org/streams"

// streamOutcome reads what the server sends a connection after a stanza
// until a stream error, the connection's own ping message (pingBody) or
// the end of the stream, and describes it: "stream error <condition>",
// "open" (the ping came back: the stream was not closed), or "closed
// without a stream error: ...".
func streamOutcome(c *rawConn, pingBody string) string {
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.conn.SetReadDeadline(deadline)
		e, err := c.nextRaw()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return "no answer within 10s"
			}
			if err == io.EOF {
				return "closed without a stream error"
			}
			return "closed without a stream error: " + err.Error()
		}
		switch {
		case e.XMLName.Space == nsStreams && e.XMLName.Local == "error":
			return "stream error " + streamCondition(e.Inner)
		case e.XMLName.Local == "message" && strings.Contains(e.Inner, "<body>"+pingBody+"</body>"):
			return "open"
		}
	}
}

// streamCondition returns the defined condition in a stream error's inner XML.
func streamCondition(inner string) string {
	m := regexp.MustCompile(`<([a-z-]+)[^>]*xmlns=["']urn:ietf:params:xml:ns:xmpp-streams["']`).FindAllStringSubmatch(inner, -1)
	for _, x := range m {
		if x[1] != "text" {
			return x[1]
		}
	}
	return "(none in " + inner + ")"
}

// TestForgedSenderDuplicateAttributes: mallory sends bob messages that are
// not namespace-well-formed, among them one with three 'from' attributes
// naming alice. The server must close mallory's stream with
// not-well-formed and deliver nothing; bob on xmpp.js must never see a
// message from alice, and bob on slixmpp must stay connected.
func TestForgedSenderDuplicateAttributes(t *testing.T) {
	RequireXMPPJS(t)
	RequireSlixmpp(t)
	s := newServer(t)
	s.AddUser(t, "mallory@"+Domain, malloryPassword)

	_, port := HostPort(s.C2S)
	js := s.StartPeer(t, 40*time.Second, "xmpp.js bob", []string{"XMPPJS_TIMEOUT_MS=35000"}, NodeBin,
		"testdata/xmppjs_listen.mjs", "xmpps://"+s.DirectTLS, "bob", accounts["bob"], "xmppjs")
	slx := s.StartPeer(t, 40*time.Second, "slixmpp bob", nil, PythonBin,
		"testdata/slix_forgery.py", "listen", "--port", port, "--ca", s.CAFile, "--timeout", "35",
		"bob@"+Domain+"/slix:"+accounts["bob"])
	js.WaitLine(t, `^READY bob@localhost/xmppjs$`, 20*time.Second)
	slx.WaitLine(t, `^READY bob@localhost/slix$`, 20*time.Second)

	// Each variant is one start tag and content; %s is the recipient.
	variants := []struct{ name, stanza string }{
		{"three from", `<message from='alice@localhost' from='mallory@localhost/x' from='alice@localhost/y' to='%s' type='chat'><body>forged three from</body></message>`},
		{"duplicate xml:lang", `<message to='%s' type='chat' xml:lang='en' xml:lang='de' from='alice@localhost/y'><body>forged duplicate lang</body></message>`},
		{"undeclared prefix", `<message to='%s' type='chat' evil:from='alice@localhost/y'><body>forged undeclared prefix</body></message>`},
		{"empty prefix child", `<message to='%s' type='chat'><body>forged colon child</body><:m/></message>`},
	}
	outcomes := map[string]string{}
	for i, v := range variants {
		m := dialRaw(t, s, "mallory ("+v.name+")", "mallory", malloryPassword, fmt.Sprintf("x%d", i))
		ping := fmt.Sprintf("mallory ping %d", i)
		// One write: the forged stanza to both of bob's clients, then a
		// message to mallory herself that comes back only if the stream
		// was not closed.
		m.send(fmt.Sprintf(v.stanza, "bob@localhost/xmppjs") + fmt.Sprintf(v.stanza, "bob@localhost/slix") +
			fmt.Sprintf(`<message to='%s' type='chat'><body>%s</body></message>`, m.JID, ping))
		outcomes[v.name] = streamOutcome(m, ping)
		m.conn.Close()
	}

	// A well-formed message from a fresh session of mallory's ends both
	// listeners: it proves the server still serves her, and that whatever
	// was delivered before it has been seen.
	end := dialRaw(t, s, "mallory (end)", "mallory", malloryPassword, "end")
	end.send(`<message to='bob@localhost/xmppjs' type='chat'><body>END</body></message>` +
		`<message to='bob@localhost/slix' type='chat'><body>END</body></message>`)
	jsErr, slxErr := js.Wait(), slx.Wait()
	jsOut, slxOut := js.Output(), slx.Output()

	for _, v := range variants {
		if got := outcomes[v.name]; got != "stream error not-well-formed" {
			t.Errorf("%s: mallory's stream: %s; want a not-well-formed stream error", v.name, got)
		}
	}
	msgRx := regexp.MustCompile(`(?m)^MESSAGE (\S*) (.*)$`)
	for _, m := range msgRx.FindAllStringSubmatch(jsOut, -1) {
		from, body := m[1], m[2]
		if strings.HasPrefix(from, "alice@") {
			t.Errorf("xmpp.js shows a message from %s (body %q): mallory forged alice's address", from, body)
		}
		if strings.HasPrefix(body, "forged") {
			t.Errorf("xmpp.js received %q from %s: the malformed stanza was delivered", body, from)
		}
	}
	if jsErr != nil || !strings.Contains(jsOut, "\nDONE") {
		t.Errorf("xmpp.js did not receive END: %v\n%s", jsErr, jsOut)
	}
	if disconnectedEarly(slxOut) || slxErr != nil {
		t.Errorf("slixmpp was disconnected (%v):\n%s", slxErr, slxOut)
	}
	for _, m := range msgRx.FindAllStringSubmatch(slxOut, -1) {
		if strings.HasPrefix(m[1], "alice@") || strings.HasPrefix(m[2], "forged") {
			t.Errorf("slixmpp received %q from %s", m[2], m[1])
		}
	}
	t.Logf("mallory's streams: %v\nxmpp.js:\n%s\nslixmpp:\n%s", outcomes, jsOut, slxOut)
}

// disconnectedEarly reports that slixmpp's output lacks "STILL CONNECTED"
// or shows a disconnection before it (the one after it is the script's own
// logout).
func disconnectedEarly(out string) bool {
	before, _, ok := strings.Cut(out, "STILL CONNECTED")
	return !ok || strings.Contains(before, "DISCONNECTED")
}

// poison rewrites every stored stanza in table's column stanza for the rows
// matching where, giving its root a second and third 'from' after the first
// one, as a server before the fix stored a forged message; it returns how
// many rows it changed.
func poison(t *testing.T, db *sql.DB, table, key, where string, args ...any) int {
	t.Helper()
	rows, err := db.Query(`SELECT `+key+`, stanza FROM `+table+` WHERE `+where, args...)
	if err != nil {
		t.Fatalf("read %s: %v", table, err)
	}
	type row struct {
		key    int64
		stanza []byte
	}
	var rs []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.key, &r.stanza); err != nil {
			t.Fatalf("scan %s: %v", table, err)
		}
		rs = append(rs, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read %s: %v", table, err)
	}
	rows.Close()
	fromRx := regexp.MustCompile(`^<message\b[^>]*? from="[^"]*"`)
	for _, r := range rs {
		loc := fromRx.FindIndex(r.stanza)
		if loc == nil {
			t.Fatalf("%s row %d: no from attribute on the root: %s", table, r.key, r.stanza)
		}
		bad := append(append(append([]byte(nil), r.stanza[:loc[1]]...),
			` from="mallory@localhost/x" from="alice@localhost/y"`...), r.stanza[loc[1]:]...)
		if _, err := db.Exec(`UPDATE `+table+` SET stanza = ? WHERE `+key+` = ?`, bad, r.key); err != nil {
			t.Fatalf("poison %s row %d: %v", table, r.key, err)
		}
		t.Logf("%s row %d now holds %s", table, r.key, bad)
	}
	return len(rs)
}

// duplicateAttr returns the first attribute name that a start tag repeats.
func duplicateAttr(tag string) string {
	seen := map[string]bool{}
	for _, m := range regexp.MustCompile(`\s([^\s=/>]+)\s*=`).FindAllStringSubmatch(tag, -1) {
		if seen[m[1]] {
			return m[1]
		}
		seen[m[1]] = true
	}
	return ""
}

// TestPoisonedHistory: a message stored as a server before the fix stored
// a forged one (three 'from' attributes, in bob's offline storage and his
// archive) is never served as it is: bob's archive query returns no
// message with a repeated attribute or from alice, and slixmpp receives
// the offline messages, reads the whole archive and stays connected.
func TestPoisonedHistory(t *testing.T) {
	RequireSlixmpp(t)
	s := newServer(t)
	s.AddUser(t, "mallory@"+Domain, malloryPassword)

	// bob is offline: the message goes to his offline storage and archive.
	m := dialRaw(t, s, "mallory", "mallory", malloryPassword, "raw")
	m.send(`<message to='bob@localhost' type='chat' id='poison1'><body>poisoned history</body></message>`)
	m.roundTrip("stored")
	m.conn.Close()
	s.Stop(t)

	db, err := sql.Open("sqlite3", "file:"+filepath.Join(s.DataDir, "palisade.db")+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	nOff := poison(t, db, "offline_messages", "id", "user_jid = ?", "bob@localhost")
	nMAM := poison(t, db, "history_items", "seq", "owner = ?", "bob@localhost")
	db.Close()
	if nOff != 1 || nMAM != 1 {
		t.Fatalf("stored copies of the message for bob: %d offline, %d in the archive; want 1 and 1", nOff, nMAM)
	}
	s.restart(t)

	// What the archive serves, read raw (no presence: the offline message
	// stays for slixmpp).
	raw := dialRaw(t, s, "bob (raw)", "bob", accounts["bob"], "raw")
	raw.send(`<iq type='set' id='mam1'><query xmlns='urn:xmpp:mam:2' queryid='q1'/></iq>`)
	tagRx := regexp.MustCompile(`<message\b[^>]*>`)
	for {
		e := raw.next()
		if e.XMLName.Local == "iq" && e.attr("id") == "mam1" {
			if e.attr("type") != "result" {
				t.Errorf("archive query answered %s: %s", e.attr("type"), e.Inner)
			}
			break
		}
		if e.XMLName.Local != "message" {
			continue
		}
		for _, tag := range tagRx.FindAllString(e.Inner, -1) {
			if d := duplicateAttr(tag); d != "" {
				t.Errorf("the archive serves the stored item as it is, with %s twice: %s", d, tag)
			}
			if strings.Contains(tag, `"alice@localhost`) || strings.Contains(tag, `'alice@localhost`) {
				t.Errorf("the archive serves a message from alice: %s", tag)
			}
		}
	}
	raw.conn.Close()

	_, port := HostPort(s.C2S)
	slx := s.StartPeer(t, 40*time.Second, "slixmpp bob history", nil, PythonBin,
		"testdata/slix_forgery.py", "history", "--port", port, "--ca", s.CAFile, "--timeout", "35",
		"bob@"+Domain+"/slix:"+accounts["bob"])
	line := slx.WaitLine(t, `^(READY|DISCONNECTED|FAIL).*`, 25*time.Second)
	if strings.HasPrefix(line, "READY") {
		end := dialRaw(t, s, "mallory (end)", "mallory", malloryPassword, "end")
		end.send(`<message to='bob@localhost/slix' type='chat'><body>END</body></message>`)
	}
	err = slx.Wait()
	out := slx.Output()
	if err != nil || disconnectedEarly(out) {
		t.Errorf("slixmpp did not stay connected through the offline messages and the archive (%v):\n%s", err, out)
	}
	if regexp.MustCompile(`(?m)^(MESSAGE|MAM) alice@`).MatchString(out) {
		t.Errorf("slixmpp shows a message from alice:\n%s", out)
	}
	wantLine(t, out, `HISTORY \d+`)
	t.Logf("slixmpp:\n%s", out)
}
