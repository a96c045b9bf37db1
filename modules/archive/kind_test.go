package archive

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/stanza"
	"github.com/palisade-im/palisade/storage"
	"go.uber.org/zap"
)

func parseStanza(t *testing.T, xml string) *stanza.Stanza {
	t.Helper()
	el, err := element.Parse([]byte(xml), stanza.NSClient)
	if err != nil {
		t.Fatalf("%s: %v", xml, err)
	}
	st, err := stanza.Parse(el)
	if err != nil {
		t.Fatalf("%s: %v", xml, err)
	}
	return st
}

func TestKindOf(t *testing.T) {
	const (
		a = `from='alice@example.org/a'`
		b = `to='bob@example.org/b'`
	)
	for _, c := range []struct {
		name, xml string
		want      storage.RecordKind // "" when not recorded
	}{
		// IQs between two clients, by payload.
		{"ibb open", `<iq type='set' id='1' ` + a + ` ` + b + `><open xmlns='http://jabber.org/protocol/ibb' sid='s' block-size='4096'/></iq>`, storage.KindFileTransfer},
		{"ibb data", `<iq type='set' id='1' ` + a + ` ` + b + `><data xmlns='http://jabber.org/protocol/ibb' sid='s' seq='0'>aGk=</data></iq>`, storage.KindFileTransfer},
		{"si offer", `<iq type='set' id='1' ` + a + ` ` + b + `><si xmlns='http://jabber.org/protocol/si' id='s' profile='http://jabber.org/protocol/si/profile/file-transfer'/></iq>`, storage.KindFileTransfer},
		{"socks5", `<iq type='set' id='1' ` + a + ` ` + b + `><query xmlns='http://jabber.org/protocol/bytestreams' sid='s'/></iq>`, storage.KindFileTransfer},
		{"oob iq", `<iq type='set' id='1' ` + a + ` ` + b + `><query xmlns='jabber:iq:oob'><url>https://x/f</url></query></iq>`, storage.KindFileTransfer},
		{"jingle ft", `<iq type='set' id='1' ` + a + ` ` + b + `><jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid='j'><content creator='initiator' name='f'><description xmlns='urn:xmpp:jingle:apps:file-transfer:5'><file><name>a.txt</name></file></description><transport xmlns='urn:xmpp:jingle:transports:ibb:1' sid='t' block-size='4096'/></content></jingle></iq>`, storage.KindFileTransfer},
		{"jingle ft:4", `<iq type='set' id='1' ` + a + ` ` + b + `><jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid='j'><content creator='initiator' name='f'><description xmlns='urn:xmpp:jingle:apps:file-transfer:4'/></content></jingle></iq>`, storage.KindFileTransfer},
		{"jingle s5b transport-info", `<iq type='set' id='1' ` + a + ` ` + b + `><jingle xmlns='urn:xmpp:jingle:1' action='transport-info' sid='j'><content creator='initiator' name='f'><transport xmlns='urn:xmpp:jingle:transports:s5b:1' sid='t'/></content></jingle></iq>`, storage.KindFileTransfer},
		{"jingle ft checksum", `<iq type='set' id='1' ` + a + ` ` + b + `><jingle xmlns='urn:xmpp:jingle:1' action='session-info' sid='j'><checksum xmlns='urn:xmpp:jingle:apps:file-transfer:5' creator='initiator' name='f'/></jingle></iq>`, storage.KindFileTransfer},
		{"jingle call", `<iq type='set' id='1' ` + a + ` ` + b + `><jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid='j'><content creator='initiator' name='voice'><description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'/><transport xmlns='urn:xmpp:jingle:transports:ice-udp:1'/></content></jingle></iq>`, storage.KindJingle},
		{"jingle terminate", `<iq type='set' id='1' ` + a + ` ` + b + `><jingle xmlns='urn:xmpp:jingle:1' action='session-terminate' sid='j'><reason><success/></reason></jingle></iq>`, storage.KindJingle},
		{"command", `<iq type='set' id='1' ` + a + ` ` + b + `><command xmlns='http://jabber.org/protocol/commands' node='x' action='execute'/></iq>`, storage.KindCommand},
		{"command result", `<iq type='result' id='1' ` + a + ` ` + b + `><command xmlns='http://jabber.org/protocol/commands' node='x' status='completed'/></iq>`, storage.KindCommand},
		{"disco to a client", `<iq type='get' id='1' ` + a + ` ` + b + `><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`, storage.KindIQ},
		{"empty result", `<iq type='result' id='1' ` + a + ` ` + b + `/>`, storage.KindIQ},
		{"error", `<iq type='error' id='1' ` + a + ` ` + b + `><error type='cancel'><feature-not-implemented xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>`, storage.KindIQ},
		{"remote client", `<iq type='set' id='1' ` + a + ` to='dave@other.example/d'><open xmlns='http://jabber.org/protocol/ibb' sid='s' block-size='4096'/></iq>`, storage.KindFileTransfer},
		// IQs that reach no other client, or come from the server.
		{"to another account's bare JID", `<iq type='get' id='1' ` + a + ` to='bob@example.org'><vCard xmlns='vcard-temp'/></iq>`, ""},
		{"to own other resource", `<iq type='set' id='1' ` + a + ` to='alice@example.org/b'><command xmlns='http://jabber.org/protocol/commands' node='x'/></iq>`, ""},
		{"to the server", `<iq type='get' id='1' ` + a + ` to='example.org'><ping xmlns='urn:xmpp:ping'/></iq>`, ""},
		{"to a component", `<iq type='set' id='1' ` + a + ` to='proxy.example.org'><query xmlns='http://jabber.org/protocol/bytestreams' sid='s'/></iq>`, ""},
		{"from the server", `<iq type='get' id='1' from='example.org' ` + b + `><ping xmlns='urn:xmpp:ping'/></iq>`, ""},
		{"result to the server's bare-JID request", `<iq type='result' id='1' from='bob@example.org/b' to='alice@example.org'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`, ""},
		// IQs to the own account.
		{"pep publish", `<iq type='set' id='1' ` + a + ` to='alice@example.org'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='n'><item id='i'><x xmlns='urn:e'/></item></publish></pubsub></iq>`, storage.KindPEP},
		{"pep publish no to", `<iq type='set' id='1' ` + a + `><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='urn:xmpp:avatar:data'><item id='h'><data xmlns='urn:xmpp:avatar:data'>aGk=</data></item></publish></pubsub></iq>`, storage.KindPEP},
		{"pep retract", `<iq type='set' id='1' ` + a + ` to='alice@example.org'><pubsub xmlns='http://jabber.org/protocol/pubsub'><retract node='n'><item id='i'/></retract></pubsub></iq>`, storage.KindPEP},
		{"pep purge", `<iq type='set' id='1' ` + a + ` to='alice@example.org'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><purge node='n'/></pubsub></iq>`, storage.KindPEP},
		{"pep delete", `<iq type='set' id='1' ` + a + ` to='alice@example.org'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><delete node='n'/></pubsub></iq>`, storage.KindPEP},
		{"pep items get", `<iq type='get' id='1' ` + a + ` to='alice@example.org'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='n'/></pubsub></iq>`, ""},
		{"pep subscribe", `<iq type='set' id='1' ` + a + ` to='alice@example.org'><pubsub xmlns='http://jabber.org/protocol/pubsub'><subscribe node='n' jid='alice@example.org'/></pubsub></iq>`, ""},
		{"vcard set", `<iq type='set' id='1' ` + a + `><vCard xmlns='vcard-temp'><FN>Alice</FN></vCard></iq>`, storage.KindVCard},
		{"vcard get", `<iq type='get' id='1' ` + a + `><vCard xmlns='vcard-temp'/></iq>`, ""},
		{"roster set", `<iq type='set' id='1' ` + a + ` to='alice@example.org'><query xmlns='jabber:iq:roster'><item jid='bob@example.org'/></query></iq>`, ""},
		{"private xml", `<iq type='set' id='1' ` + a + `><query xmlns='jabber:iq:private'><x xmlns='urn:e'/></query></iq>`, ""},
		{"blocking", `<iq type='set' id='1' ` + a + `><block xmlns='urn:xmpp:blocking'><item jid='bob@example.org'/></block></iq>`, ""},
		{"mam query", `<iq type='set' id='1' ` + a + `><query xmlns='urn:xmpp:mam:2'/></iq>`, ""},
		{"carbons", `<iq type='set' id='1' ` + a + `><enable xmlns='urn:xmpp:carbons:2'/></iq>`, ""},
		{"own account, from the server", `<iq type='set' id='1' from='example.org' to='alice@example.org'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='n'/></pubsub></iq>`, ""},
		// Presence.
		{"directed", `<presence ` + a + ` ` + b + `/>`, storage.KindPresence},
		{"directed bare with status", `<presence ` + a + ` to='bob@example.org'><status>hi</status></presence>`, storage.KindPresence},
		{"directed unavailable", `<presence type='unavailable' ` + a + ` ` + b + `/>`, storage.KindPresence},
		{"directed to own resource", `<presence ` + a + ` to='alice@example.org/b'/>`, ""},
		{"directed to the server", `<presence ` + a + ` to='example.org'/>`, ""},
		{"broadcast with status", `<presence ` + a + `><show>away</show><status>at lunch</status></presence>`, storage.KindPresence},
		{"unavailable broadcast with status", `<presence type='unavailable' ` + a + `><status>gone</status></presence>`, storage.KindPresence},
		{"broadcast without status", `<presence ` + a + `><show>away</show><priority>5</priority></presence>`, ""},
		{"broadcast with blank status", `<presence ` + a + `><status> </status></presence>`, ""},
		{"subscribe", `<presence type='subscribe' ` + a + ` to='bob@example.org'/>`, storage.KindSubscription},
		{"unsubscribed", `<presence type='unsubscribed' ` + a + ` to='bob@example.org'/>`, storage.KindSubscription},
		{"probe", `<presence type='probe' ` + a + ` to='bob@example.org'/>`, ""},
		{"error", `<presence type='error' ` + a + ` ` + b + `/>`, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			st := parseStanza(t, c.xml)
			got, ok := kindOf(st)
			if !ok {
				got = ""
			}
			if got != c.want {
				t.Fatalf("kindOf(%s) = %q (%v), want %q", c.xml, got, ok, c.want)
			}
		})
	}
}

// TestKindOfJournaled: the copies of a broadcast the core journaled, and
// presence the server sends on a user's behalf, are not recorded; a
// subscription stays recorded whatever the mark.
func TestKindOfJournaled(t *testing.T) {
	for _, xml := range []string{
		`<presence from='alice@example.org/a' to='bob@example.org'><status>at lunch</status></presence>`,
		`<presence type='unavailable' from='alice@example.org/a' to='bob@example.org/b'/>`,
		`<presence from='alice@example.org/a'><status>at lunch</status></presence>`,
	} {
		st := parseStanza(t, xml)
		st.Journaled = true
		if k, ok := kindOf(st); ok {
			t.Errorf("%s marked journaled: recorded as %q", xml, k)
		}
		if k, ok := kindOf(st.Copy()); ok {
			t.Errorf("a copy of %s marked journaled: recorded as %q", xml, k)
		}
	}
	st := parseStanza(t, `<presence type='subscribed' from='alice@example.org' to='bob@example.org'/>`)
	st.Journaled = true
	if k, ok := kindOf(st); !ok || k != storage.KindSubscription {
		t.Errorf("subscription marked journaled: %q %v", k, ok)
	}
}

func TestRecordKinds(t *testing.T) {
	got := RecordKinds()
	for _, k := range []storage.RecordKind{storage.KindMessage, storage.KindSubscription, storage.KindIQ,
		storage.KindFileTransfer, storage.KindJingle, storage.KindCommand, storage.KindPresence, storage.KindPEP,
		storage.KindVCard, storage.KindExport, storage.KindSearch, storage.KindAdmin} {
		if !slices.Contains(got, string(k)) {
			t.Errorf("RecordKinds() lacks %q: %v", k, got)
		}
	}
}

// TestPurgeCoversChannels: retention applies to the records of every
// channel a user sends on (a broadcast included, by its sender), a hold
// keeps them, and the archive's own records are left alone.
func TestPurgeCoversChannels(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	now := time.Now()
	f.m.now = func() time.Time { return now.Add(-100 * 24 * time.Hour) }
	for _, xml := range []string{
		`<iq type='set' id='1' from='carol@example.com/c' to='dave@example.com/d'><data xmlns='http://jabber.org/protocol/ibb' sid='s' seq='0'>aGk=</data></iq>`,
		`<iq type='set' id='2' from='carol@example.com/c' to='dave@example.com/d'><command xmlns='http://jabber.org/protocol/commands' node='n'/></iq>`,
		`<presence from='carol@example.com/c'><status>old status</status></presence>`,
		`<presence from='carol@example.com/c' to='dave@example.com/d'/>`,
		`<iq type='set' id='3' from='carol@example.com/c' to='carol@example.com'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='n'/></pubsub></iq>`,
		`<iq type='set' id='4' from='carol@example.com/c'><vCard xmlns='vcard-temp'/></iq>`,
		`<presence from='alice@example.com/a'><status>held status</status></presence>`,
	} {
		if err := f.m.Append(ctx, parseStanza(t, xml)); err != nil {
			t.Fatal(err)
		}
	}
	audit := zap.NewNop()
	hold := storage.Hold{Name: "m", Custodians: []string{"alice@example.com"}, Reason: "r", PlacedBy: "legal"}
	if err := PlaceHold(ctx, f.j, f.j, hold, audit); err != nil {
		t.Fatal(err)
	}
	ps := []config.Retention{{Name: "dom", Scope: config.ScopeDomain, Domain: "example.com", KeepDays: 30}}
	res, err := Purge(ctx, f.j, f.j, ps, nil, time.Now(), true, "test", audit)
	if err != nil || !slices.Equal(res.Purged, []int64{0, 1, 2, 3, 4, 5}) || res.Held != 1 {
		t.Fatalf("purge: %+v, %v", res, err)
	}
}

// TestSealedChannels: with officer keys, the records of every channel are
// sealed as messages are: no content in the clear.
func TestSealedChannels(t *testing.T) {
	f := newFixture(t)
	f.m.sealer = NewSealer(openpgp.EntityList{officerKey(t, "officer")}, f.j)
	ctx := context.Background()
	for _, xml := range []string{
		`<iq type='set' id='1' from='carol@example.com/c' to='dave@example.com/d'><data xmlns='http://jabber.org/protocol/ibb' sid='s' seq='0'>c2VjcmV0</data></iq>`,
		`<presence from='carol@example.com/c'><status>secret status</status></presence>`,
		`<iq type='set' id='3' from='carol@example.com/c'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='n'><item><x xmlns='urn:e'>secret item</x></item></publish></pubsub></iq>`,
		`<iq type='set' id='4' from='carol@example.com/c'><vCard xmlns='vcard-temp'><NOTE>secret note</NOTE></vCard></iq>`,
	} {
		if err := f.m.Append(ctx, parseStanza(t, xml)); err != nil {
			t.Fatal(err)
		}
	}
	recs := records(t, f.j)
	if len(recs) != 4 {
		t.Fatalf("%d records, want 4", len(recs))
	}
	for _, r := range recs {
		d, err := DecodeRecord(r.Data)
		if err != nil {
			t.Fatal(err)
		}
		if d.Enc == EncNone || strings.Contains(string(r.Data), "secret") || strings.Contains(string(r.Data), "c2VjcmV0") {
			t.Errorf("record %d (%s) not sealed: %s", r.Seq, r.Kind, r.Data)
		}
	}
}
