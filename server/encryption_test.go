package server

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/stanza"
)

// OMEMO elements, synthetic but structurally real (the sizes of real
// keys, IVs and payloads, base64 as clients write it).
const (
	omemoLegacy = `<encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='1797815022'>` +
		`<key rid='697255201'>MwohBcJzhALU5ZiBSn8RqMR6SJNe2TB3i9IGypFm/yhmZztlEAAYACIwScgGuN2u1xeY19JZA3DLoLWlyAj8LyTMRk1uO6IEcUkMoCmpR2H6e83SK62b0dj0Rj1u/AZoWNY=</key>` +
		`<key prekey='true' rid='31415'>MwohBcJzhALU5ZiBSn8RqMR6SJNe2TB3i9IGypFm</key>` +
		`<iv>8/pXK3Y8y8gKuVFx</iv></header><payload>5Ro9Hc0DCWBk+Uq7wkCgY9tM4Ecn10njWw==</payload></encrypted>`
	omemoLegacyKeyTransport = `<encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='1797815022'>` +
		`<key rid='697255201'>MwohBcJzhALU5ZiBSn8RqMR6SJNe2TB3i9IGypFm/yhmZztlEAAYACIwScgGuN2u</key>` +
		`<iv>8/pXK3Y8y8gKuVFx</iv></header></encrypted>`
	omemo2 = `<encrypted xmlns='urn:xmpp:omemo:2'><header sid='27183'>` +
		`<keys jid='bob@localhost'><key rid='31415'>MwohBcJzhALU5ZiBSn8RqMR6SJNe2TB3i9IGypFm</key><key kex='true' rid='12321'>Y29tcGxldGVseSByYW5kb20=</key></keys>` +
		`<keys jid='alice@localhost'><key rid='4223'>MwohBcJzhALU5ZiBSn8RqMR6SJNe2TB3</key></keys>` +
		`</header><payload>5Ro9Hc0DCWBk+Uq7wkCgY9tM4Ecn10njWw==</payload></encrypted>`
	emeLegacy = `<encryption xmlns='urn:xmpp:eme:0' name='OMEMO' namespace='eu.siacs.conversations.axolotl'/>`

	fallbackConversations = "I sent you an OMEMO encrypted message but your client doesn’t seem to support that. Find more information on https://conversations.im/omemo"
	fallbackProfanity     = "You received a message encrypted with OMEMO but your client doesn't support OMEMO."
)

// profanityOMEMO is profanity 0.13.1's OMEMO message as its debug log
// showed it in TestEncryptionRequiredRealPayloads (throwaway keys): no
// XEP-0380 hint beside its fallback body.
const profanityOMEMO = `<message id="dEjKq28UtMaZfAG6ad7bd438aa20f9e8e01cd3fcd8354ee5ba6b9d9" to="bob@localhost" type="chat">` +
	`<encrypted xmlns="eu.siacs.conversations.axolotl"><header sid="464646165"><key rid="711559211" prekey="true">` +
	`Mwja04IEEiEFIGWqnc76GeSuPmuKWqLd/QyTRY+CjSru5XdOdzgF/xEaIQWv+GCd29b4f7bLjgMh+cPXplAs7rzJXsiZAcd/tf/MZCJiMwohBe+TzgZ8MPpUgKXwGI8VNXguI3t/xHrOJ0iP6zYFrjt8EAAYACIwTadXPWWr59Yd/WRBmwbKHxy1NbMhzM2fydGXmfHdixa1H3AAmR/whT5ssD/b6YkRBm+x/DBai98oADAB` +
	`</key><iv>J+bS/s5Y1aJHB8zi</iv></header><payload>WpoKFK299ofhNqSQcGbC310=</payload></encrypted>` +
	`<body>You received a message encrypted with OMEMO but your client doesn't support OMEMO.</body>` +
	`<active xmlns="http://jabber.org/protocol/chatstates"/><store xmlns="urn:xmpp:hints"/></message>`

// pgpMessages are OpenPGP messages made with go-crypto, once per run.
var pgpMessages = sync.OnceValues(func() (map[string][]byte, error) {
	out := map[string][]byte{}
	key, err := openpgp.NewEntity("bob", "", "bob@localhost", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	if err != nil {
		return nil, err
	}
	aeadKey, err := openpgp.NewEntity("bob", "", "bob@localhost", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, AEADConfig: &packet.AEADConfig{}})
	if err != nil {
		return nil, err
	}
	write := func(name string, open func(w io.Writer) (io.WriteCloser, error)) error {
		var b bytes.Buffer
		w, err := open(&b)
		if err != nil {
			return err
		}
		if _, err := io.WriteString(w, "<signcrypt xmlns='urn:xmpp:openpgp:0'><payload><body>secret</body></payload></signcrypt>"); err != nil {
			return err
		}
		if err := w.Close(); err != nil {
			return err
		}
		out[name] = b.Bytes()
		return nil
	}
	for name, open := range map[string]func(io.Writer) (io.WriteCloser, error){
		"pkesk+seipd1": func(w io.Writer) (io.WriteCloser, error) {
			return openpgp.Encrypt(w, []*openpgp.Entity{key}, nil, nil, nil)
		},
		"pkesk+seipd2": func(w io.Writer) (io.WriteCloser, error) {
			return openpgp.Encrypt(w, []*openpgp.Entity{aeadKey}, nil, nil, &packet.Config{AEADConfig: &packet.AEADConfig{}})
		},
		"skesk+seipd1": func(w io.Writer) (io.WriteCloser, error) {
			return openpgp.SymmetricallyEncrypt(w, []byte("passphrase"), nil, nil)
		},
		"signed": func(w io.Writer) (io.WriteCloser, error) { return openpgp.Sign(w, key, nil, nil) },
		"literal": func(w io.Writer) (io.WriteCloser, error) {
			return packet.SerializeLiteral(nopCloser{w}, true, "", 0)
		},
	} {
		if err := write(name, open); err != nil {
			return nil, err
		}
	}
	// The session key and the encrypted data apart.
	var keys, data bytes.Buffer
	w, err := openpgp.EncryptSplit(&keys, &data, []*openpgp.Entity{key}, nil, nil, nil)
	if err != nil {
		return nil, err
	}
	if _, err := io.WriteString(w, "secret"); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	out["pkesk"], out["seipd1"] = keys.Bytes(), data.Bytes()
	return out, nil
})

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// pgp returns the named message of pgpMessages.
func pgp(t testing.TB, name string) []byte {
	t.Helper()
	m, err := pgpMessages()
	if err != nil {
		t.Fatal(err)
	}
	b, ok := m[name]
	if !ok {
		t.Fatalf("no OpenPGP message %q", name)
	}
	return b
}

// ox is an XEP-0373 <openpgp/> holding b.
func ox(b []byte) string {
	return "<openpgp xmlns='urn:xmpp:openpgp:0'>" + base64.StdEncoding.EncodeToString(b) + "</openpgp>"
}

// legacyPGP is an XEP-0027 <x/> holding b as clients cut its armor: no
// BEGIN and END lines, no headers (keep, when set, leaves them).
func legacyPGP(t testing.TB, b []byte, keep bool) string {
	t.Helper()
	var a bytes.Buffer
	w, err := armor.Encode(&a, "PGP MESSAGE", map[string]string{"Version": "test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	text := a.String()
	if !keep {
		text = text[strings.Index(text, "\n\n")+2 : strings.Index(text, "-----END")]
	}
	return "<x xmlns='jabber:x:encrypted'>" + text + "</x>"
}

func parseMessage(t testing.TB, xml string) *element.Element {
	t.Helper()
	el, err := element.Parse([]byte(xml), stanza.NSClient)
	if err != nil {
		t.Fatalf("parse %s: %v", xml, err)
	}
	return el
}

// wantE2E runs encryptedOnly on <message>children</message> and checks
// the result: want "" passes; otherwise the problem's text must be want.
func wantE2E(t *testing.T, name, children, want string) {
	t.Helper()
	xml := children
	if !strings.HasPrefix(children, "<message") {
		xml = "<message to='bob@localhost' type='chat'>" + children + "</message>"
	}
	err := encryptedOnly(parseMessage(t, xml))
	switch {
	case want == "" && err != nil:
		t.Errorf("%s: refused (%v), want it to pass:\n%s", name, err, xml)
	case want != "" && err == nil:
		t.Errorf("%s: passes, want it refused with %q:\n%s", name, want, xml)
	case want != "" && err.Error() != want:
		t.Errorf("%s: refused with %q, want %q", name, err, want)
	}
	var p e2eProblem
	if err != nil && !errors.As(err, &p) {
		t.Errorf("%s: %T is not an e2eProblem", name, err)
	}
}

func TestEncryptedOnlyNoContent(t *testing.T) {
	for _, c := range []struct{ name, children string }{
		{"chat state", "<composing xmlns='http://jabber.org/protocol/chatstates'/>"},
		{"receipt", "<received xmlns='urn:xmpp:receipts' id='m1'/>"},
		{"marker", "<displayed xmlns='urn:xmpp:chat-markers:0' id='m1'/>"},
		{"hints only", "<store xmlns='urn:xmpp:hints'/><origin-id xmlns='urn:xmpp:sid:0' id='x'/>"},
		{"empty body", "<body/>"},
		{"blank body", "<body> \n </body><active xmlns='http://jabber.org/protocol/chatstates'/>"},
		{"body of another namespace", "<body xmlns='urn:example:other'>hi</body>"},
		{"message error", "<message type='error' to='bob@localhost'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>gone</text></error></message>"},
		{"OMEMO ratchet message (legacy)", omemoLegacyKeyTransport + "<store xmlns='urn:xmpp:hints'/>"},
		{"OMEMO key transport (2)", strings.Replace(omemo2, "<payload>5Ro9Hc0DCWBk+Uq7wkCgY9tM4Ecn10njWw==</payload>", "", 1)},
		{"empty subject (clears a room's)", "<subject/>"},
		{"reference without URL", "<reference xmlns='urn:xmpp:reference:0' type='mention' begin='0' end='3'/>"},
	} {
		wantE2E(t, c.name, c.children, "")
	}
}

func TestEncryptedOnlyPlaintext(t *testing.T) {
	const (
		alone  = "plaintext and no end-to-end encrypted payload: "
		beside = "plaintext beside the encrypted payload: "
	)
	for _, c := range []struct{ name, children, want string }{
		{"plain body", "<body>hello</body>", string(errNoPayload)},
		{"body and an <encrypted/> of another namespace", "<body>hi</body><encrypted xmlns='urn:example:other'/>", string(errNoPayload)},
		{"XHTML-IM only", "<html xmlns='http://jabber.org/protocol/xhtml-im'><body xmlns='http://www.w3.org/1999/xhtml'><p>secret</p></body></html>",
			alone + "XHTML-IM"},
		{"subject only", "<subject>secret plans</subject>", alone + "a subject"},
		{"OOB URL only", "<x xmlns='jabber:x:oob'><url>https://files.example/secret.pdf</url></x>", alone + "an out-of-band URL (XEP-0066)"},
		{"forwarded plaintext", "<forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client'><body>secret</body></message></forwarded>",
			alone + "a forwarded message (XEP-0297)"},
		{"XHTML-IM beside OMEMO", omemoLegacy + emeLegacy + "<body>" + fallbackConversations + "</body><html xmlns='http://jabber.org/protocol/xhtml-im'><body xmlns='http://www.w3.org/1999/xhtml'>secret</body></html>",
			beside + "XHTML-IM"},
		{"subject beside OMEMO", omemoLegacy + "<subject>secret</subject>", beside + "a subject"},
		{"OOB beside OMEMO", omemo2 + "<x xmlns='jabber:x:oob'><url>https://files.example/a.png</url></x>", beside + "an out-of-band URL (XEP-0066)"},
		{"SIMS reference beside OMEMO", omemoLegacy + "<reference xmlns='urn:xmpp:reference:0' type='data'><media-sharing xmlns='urn:xmpp:sims:1'/></reference>",
			beside + "a reference with a URL (XEP-0372, XEP-0385)"},
		{"reference URI beside OMEMO", omemoLegacy + "<reference xmlns='urn:xmpp:reference:0' type='data' uri='https://files.example/a.png'/>",
			beside + "a reference with a URL (XEP-0372, XEP-0385)"},
		{"stateless file sharing beside OMEMO", omemo2 + "<file-sharing xmlns='urn:xmpp:sfs:0'><file xmlns='urn:xmpp:file:metadata:0'><name>secret.pdf</name></file></file-sharing>",
			beside + "file sharing (XEP-0447)"},
		{"plaintext body beside OMEMO", omemoLegacy + emeLegacy + "<body>the real secret</body>", string(errPlaintextBody)},
		{"plaintext body beside OMEMO 2", omemo2 + "<body>the real secret</body>", string(errPlaintextBody)},
		{"an OMEMO fallback text beside OpenPGP", ox(pgp(t, "pkesk+seipd1")) + "<body>" + fallbackProfanity + "</body>", string(errPlaintextBody)},
		{"one of two bodies not a fallback", omemoLegacy + "<body>" + fallbackProfanity + "</body><body xml:lang='de'>Geheimnis</body>", string(errPlaintextBody)},
		{"a reply's fallback is no encryption fallback", omemo2 + "<body>&gt; quoted\nsecret</body><fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:reply:0'><body start='0' end='9'/></fallback>",
			string(errPlaintextBody)},
		{"XEP-0428 range covering part of the body", omemo2 + "<body>fallback and more</body><fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:omemo:2'><body start='0' end='8'/></fallback>",
			string(errPlaintextBody)},
		{"XEP-0428 range not from the start", omemo2 + "<body>ab</body><fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:omemo:2'><body start='1' end='2'/></fallback>",
			string(errPlaintextBody)},
		{"EME alone does not make a fallback", omemoLegacy + emeLegacy + "<body>This message is encrypted, honestly: meet at noon</body>", string(errPlaintextBody)},
	} {
		wantE2E(t, c.name, c.children, c.want)
	}
}

func TestEncryptedOnlyFallbacks(t *testing.T) {
	for _, c := range []struct{ name, children string }{
		{"Conversations", omemoLegacy + "<store xmlns='urn:xmpp:hints'/>" + emeLegacy + "<body>" + fallbackConversations + "</body>"},
		{"Conversations fork, ASCII apostrophe", omemoLegacy + emeLegacy + "<body>" + strings.ReplaceAll(fallbackConversations, "’", "'") + "</body>"},
		{"Gajim", omemoLegacy + emeLegacy + "<body>" + fallbackProfanity + "</body>"},
		{"profanity 0.13.1, no EME", profanityOMEMO},
		{"Dino", omemoLegacy + emeLegacy + "<body>[This message is OMEMO encrypted]</body>"},
		{"Monal, white space", omemoLegacy + "<body>\n  [This message is OMEMO encrypted]\n</body>"},
		{"Converse.js", "<body>This is an OMEMO encrypted message which your client doesn’t seem to support. Find more information on https://conversations.im/omemo</body>" + omemoLegacy + emeLegacy},
		{"poezio", omemoLegacy + emeLegacy + "<body>This message is encrypted with Legacy OMEMO (eu.siacs.conversations.axolotl)</body>"},
		{"two languages, both fallbacks", omemoLegacy + "<body>" + fallbackProfanity + "</body><body xml:lang='x'>[This message is OMEMO encrypted]</body>"},
		{"OMEMO 2 with XEP-0428 (any text)", omemo2 + "<body>This message is encrypted with OMEMO 2.</body><fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:omemo:2'/>"},
		{"XEP-0428 0.1, no 'for'", omemo2 + "<body>encrypted</body><fallback xmlns='urn:xmpp:fallback:0'/>"},
		{"XEP-0428 body without range", omemo2 + "<body>encrypted</body><fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:omemo:2'><body/></fallback>"},
		{"XEP-0428 range over the whole body", omemo2 + "<body>chiffré</body><fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:omemo:2'><body start='0' end='7'/></fallback>"},
		{"a reply fallback and an encryption fallback", omemo2 + "<body>encrypted</body><fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:reply:0'><body start='0' end='2'/></fallback><fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:omemo:2'/>"},
		{"OX, Gajim", ox(pgp(t, "pkesk+seipd1")) + "<encryption xmlns='urn:xmpp:eme:0' namespace='urn:xmpp:openpgp:0'/><body>This message is *encrypted* with OpenPGP</body>"},
		{"OX, profanity", ox(pgp(t, "pkesk+seipd1")) + "<body>This message is encrypted (XEP-0373: OpenPGP for XMPP).</body>"},
		{"XEP-0027, Dino", legacyPGP(t, pgp(t, "pkesk+seipd1"), false) + "<body>[This message is OpenPGP encrypted (see XEP-0027)]</body>"},
		{"XEP-0027, Conversations", "<body>I sent you a PGP encrypted message but your client doesn’t seem to support that.</body>" + legacyPGP(t, pgp(t, "pkesk+seipd1"), false)},
	} {
		wantE2E(t, c.name, c.children, "")
	}
}

func TestEncryptedOnlyOMEMO(t *testing.T) {
	rep := func(s, old, new string) string {
		if !strings.Contains(s, old) {
			t.Fatalf("%q not in %s", old, s)
		}
		return strings.Replace(s, old, new, 1)
	}
	for _, c := range []struct{ name, children, want string }{
		{"legacy, well-formed", omemoLegacy, ""},
		{"2, well-formed", omemo2, ""},
		{"legacy, unpadded base64 and line breaks", rep(rep(omemoLegacy, "5Ro9Hc0DCWBk+Uq7wkCgY9tM4Ecn10njWw==", "5Ro9Hc0DCWBk\n+Uq7wkCgY9tM4Ecn10njWw"), "<iv>8/pXK3Y8y8gKuVFx</iv>", "<iv> 8/pXK3Y8y8gKuVFx </iv>"), ""},
		{"empty legacy <encrypted/> beside a body", "<encrypted xmlns='eu.siacs.conversations.axolotl'/><body>" + fallbackProfanity + "</body>", string(errOMEMONoHeader)},
		{"empty OMEMO 2 <encrypted/> beside a body", "<body>secret</body><encrypted xmlns='urn:xmpp:omemo:2'/>", string(errOMEMONoHeader)},
		{"empty OMEMO 2 <encrypted/> alone", "<encrypted xmlns='urn:xmpp:omemo:2'/>", string(errOMEMONoHeader)},
		{"header of another namespace", rep(omemoLegacy, "<header sid='1797815022'>", "<header xmlns='urn:example' sid='1797815022'>"), string(errOMEMONoHeader)},
		{"no sid", rep(omemoLegacy, " sid='1797815022'", ""), string(errOMEMOSID)},
		{"sid not a number", rep(omemo2, "sid='27183'", "sid='-1'"), string(errOMEMOSID)},
		{"sid beyond 32 bits", rep(omemo2, "sid='27183'", "sid='4294967296'"), string(errOMEMOSID)},
		{"no key", "<encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='1'><iv>8/pXK3Y8y8gKuVFx</iv></header><payload>cGF5bG9hZA==</payload></encrypted>", string(errOMEMONoKey)},
		{"2: no <keys/>", "<encrypted xmlns='urn:xmpp:omemo:2'><header sid='1'/><payload>cGF5bG9hZA==</payload></encrypted>", string(errOMEMONoKey)},
		{"2: empty <keys/>", "<encrypted xmlns='urn:xmpp:omemo:2'><header sid='1'><keys jid='bob@localhost'/></header><payload>cGF5bG9hZA==</payload></encrypted>", string(errOMEMONoKey)},
		{"2: legacy keys in the header", "<encrypted xmlns='urn:xmpp:omemo:2'><header sid='1'><key rid='2'>a2V5</key></header><payload>cGF5bG9hZA==</payload></encrypted>", string(errOMEMONoKey)},
		{"2: <keys/> without jid", rep(omemo2, " jid='bob@localhost'", ""), string(errOMEMOKeysJID)},
		{"2: <keys/> with a full JID", rep(omemo2, "jid='bob@localhost'", "jid='bob@localhost/phone'"), string(errOMEMOKeysJID)},
		{"key without rid", rep(omemoLegacy, " rid='697255201'", ""), string(errOMEMORID)},
		{"2: key rid not a number", rep(omemo2, "rid='31415'", "rid='x'"), string(errOMEMORID)},
		{"empty key", rep(omemoLegacy, "MwohBcJzhALU5ZiBSn8RqMR6SJNe2TB3i9IGypFm</key>", "</key>"), string(errOMEMOKey)},
		{"key not base64", rep(omemo2, "Y29tcGxldGVseSByYW5kb20=", "not base64!"), string(errOMEMOKey)},
		{"key with data after padding", rep(omemo2, "Y29tcGxldGVseSByYW5kb20=", "Y29t=cGxl"), string(errOMEMOKey)},
		{"key with a child element", rep(omemo2, "Y29tcGxldGVseSByYW5kb20=", "<b>Y29t</b>"), string(errOMEMOKey)},
		{"legacy without <iv/>", rep(omemoLegacy, "<iv>8/pXK3Y8y8gKuVFx</iv>", ""), string(errOMEMOIV)},
		{"legacy with an empty <iv/>", rep(omemoLegacy, "<iv>8/pXK3Y8y8gKuVFx</iv>", "<iv/>"), string(errOMEMOIV)},
		{"empty <payload/>", rep(omemoLegacy, "5Ro9Hc0DCWBk+Uq7wkCgY9tM4Ecn10njWw==", ""), string(errOMEMOPayload)},
		{"<payload/> not base64", rep(omemo2, "5Ro9Hc0DCWBk+Uq7wkCgY9tM4Ecn10njWw==", "5Ro9Hc0DCWBk+Uq7wkCgY9tM4Ecn10njW"), string(errOMEMOPayload)},
		{"key transport with a body", omemoLegacyKeyTransport + "<body>" + fallbackProfanity + "</body>", string(errKeyTransportBody)},
		{"a well-formed and a broken payload", omemoLegacy + "<encrypted xmlns='urn:xmpp:omemo:2'/>", string(errOMEMONoHeader)},
	} {
		wantE2E(t, c.name, c.children, c.want)
	}
}

func TestEncryptedOnlyOpenPGP(t *testing.T) {
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	full := pgp(t, "pkesk+seipd1")
	var marker bytes.Buffer
	if err := packet.SerializeMarker(&marker); err != nil {
		t.Fatal(err)
	}
	// A symmetrically encrypted data packet without integrity protection
	// (tag 9, new format, 40 octets) after a session key.
	sed := append([]byte{0xc0 | 9, 40}, bytes.Repeat([]byte{0x5a}, 40)...)
	// An SEIPD v1 packet (tag 18) too short to hold a prefix and an MDC.
	short := []byte{0xc0 | 18, 5, 1, 1, 2, 3, 4}
	for _, c := range []struct {
		name string
		msg  []byte
		want string
	}{
		{"PKESK + SEIPD v1", full, ""},
		{"PKESK + SEIPD v2 (AEAD)", pgp(t, "pkesk+seipd2"), ""},
		{"SKESK + SEIPD v1", pgp(t, "skesk+seipd1"), ""},
		{"marker first", cat(marker.Bytes(), full), ""},
		{"garbage", []byte("openpgp"), string(errPGPGarbage)},
		{"one zero octet", []byte{0}, string(errPGPGarbage)},
		{"literal data only", pgp(t, "literal"), string(errPGPNotEncrypted)},
		{"signed, not encrypted", pgp(t, "signed"), string(errPGPNotEncrypted)},
		{"session key only", pgp(t, "pkesk"), string(errPGPNoData)},
		{"encrypted data without a session key", pgp(t, "seipd1"), string(errPGPNoSessionKey)},
		{"truncated in the encrypted data", full[:len(full)-10], string(errPGPTruncated)},
		{"truncated in the session key", full[:20], string(errPGPTruncated)},
		{"no integrity protection", cat(pgp(t, "pkesk"), sed), string(errPGPNoIntegrity)},
		{"encrypted data too short", cat(pgp(t, "pkesk"), short), string(errPGPShort)},
		{"a literal packet after the encrypted data", cat(full, pgp(t, "literal")), string(errPGPAfterData)},
		{"two messages", cat(full, full), string(errPGPAfterData)},
	} {
		wantE2E(t, "OX: "+c.name, ox(c.msg), c.want)
		if len(c.msg) > 1 {
			wantE2E(t, "XEP-0027: "+c.name, legacyPGP(t, c.msg, false), c.want)
		}
	}
	wantE2E(t, "XEP-0027 with its armor lines", legacyPGP(t, full, true), "")
	wantE2E(t, "OX: not base64", "<openpgp xmlns='urn:xmpp:openpgp:0'>not base64!</openpgp>", string(errPGPNotBase64))
	wantE2E(t, "OX: empty", "<openpgp xmlns='urn:xmpp:openpgp:0'/><body>This message is *encrypted* with OpenPGP</body>", string(errPGPNotBase64))
	wantE2E(t, "OX: base64 with line breaks", "<openpgp xmlns='urn:xmpp:openpgp:0'>"+breakLines(base64.StdEncoding.EncodeToString(full))+"</openpgp>", "")
	wantE2E(t, "XEP-0027: empty", "<x xmlns='jabber:x:encrypted'> </x>", string(errPGPNotArmor))
	wantE2E(t, "XEP-0027: garbage", "<x xmlns='jabber:x:encrypted'>cGdw</x><body>This message is encrypted (XEP-0027).</body>", string(errPGPGarbage))
	wantE2E(t, "XEP-0027: another armor type", "<x xmlns='jabber:x:encrypted'>-----BEGIN PGP SIGNATURE-----\n\nwsBc\n-----END PGP SIGNATURE-----</x>", string(errPGPNotArmor))
}

func breakLines(s string) string {
	var b strings.Builder
	for len(s) > 64 {
		b.WriteString(s[:64] + "\n")
		s = s[64:]
	}
	b.WriteString(s)
	return b.String()
}

// TestEncryptedOnlyAllocations: the check allocates nothing for messages
// without an OpenPGP payload or OMEMO 2 <keys/> (whose jid it parses):
// plain text, chat states, legacy OMEMO with its fallback body.
func TestEncryptedOnlyAllocations(t *testing.T) {
	for _, xml := range []string{
		"<message to='bob@localhost' type='chat'><body>hi</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>",
		"<message to='bob@localhost' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
		"<message to='bob@localhost' type='chat'><html xmlns='http://jabber.org/protocol/xhtml-im'/></message>",
		profanityOMEMO,
	} {
		el := parseMessage(t, xml)
		if n := testing.AllocsPerRun(100, func() { _ = encryptedOnly(el) }); n != 0 {
			t.Errorf("%v allocations per run for %s", n, xml)
		}
	}
}

func TestKnownFallbacksWellFormed(t *testing.T) {
	seen := map[string]bool{}
	for _, f := range knownFallbacks {
		if f.schemes == 0 || f.source == "" || f.text != strings.TrimSpace(f.text) || seen[f.text] {
			t.Errorf("bad or duplicate entry %+v", f)
		}
		seen[f.text] = true
	}
}

// TestPGPFixtures checks that the OpenPGP messages the tests use are what
// their names say, so that each case covers what it claims.
func TestPGPFixtures(t *testing.T) {
	for name, want := range map[string]string{
		"pkesk+seipd1": "*packet.EncryptedKey *packet.SymmetricallyEncrypted/1",
		"pkesk+seipd2": "*packet.EncryptedKey *packet.SymmetricallyEncrypted/2",
		"skesk+seipd1": "*packet.SymmetricKeyEncrypted *packet.SymmetricallyEncrypted/1",
		"pkesk":        "*packet.EncryptedKey",
		"seipd1":       "*packet.SymmetricallyEncrypted/1",
		"literal":      "*packet.LiteralData",
	} {
		var got []string
		r := bytes.NewReader(pgp(t, name))
		for {
			p, err := packet.Read(r)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			s := fmt.Sprintf("%T", p)
			switch p := p.(type) {
			case *packet.SymmetricallyEncrypted:
				s += fmt.Sprintf("/%d", p.Version)
				_, _ = io.Copy(io.Discard, p.Contents)
			case *packet.LiteralData:
				_, _ = io.Copy(io.Discard, p.Body)
			}
			got = append(got, s)
		}
		if g := strings.Join(got, " "); g != want {
			t.Errorf("%s: packets %s, want %s", name, g, want)
		}
	}
}

// FuzzEncryptedOnly: for any message, encryptedOnly does not panic, gives
// the same answer twice, leaves the element as it was, and never lets
// through a plaintext body without an end-to-end payload element or an
// XHTML-IM body.
func FuzzEncryptedOnly(f *testing.F) {
	full := pgp(f, "pkesk+seipd1")
	for _, s := range []string{
		"<message><body>hi</body></message>",
		"<message><body>x</body><encrypted xmlns='urn:xmpp:omemo:2'/></message>",
		"<message><html xmlns='http://jabber.org/protocol/xhtml-im'><body xmlns='http://www.w3.org/1999/xhtml'>x</body></html></message>",
		"<message>" + omemoLegacy + emeLegacy + "<body>" + fallbackConversations + "</body></message>",
		"<message>" + omemo2 + "<body>fb</body><fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:omemo:2'><body start='0' end='2'/></fallback></message>",
		"<message>" + omemoLegacyKeyTransport + "</message>",
		profanityOMEMO,
		"<message>" + ox(full) + "<body>This message is *encrypted* with OpenPGP</body></message>",
		"<message>" + ox(full[:len(full)/2]) + "</message>",
		"<message>" + legacyPGP(f, full, false) + "</message>",
		"<message><x xmlns='jabber:x:encrypted'>-----BEGIN PGP MESSAGE-----\n\nwcBMA\n=AAAA\n-----END PGP MESSAGE-----</x></message>",
		"<message><subject>s</subject><x xmlns='jabber:x:oob'><url>u</url></x></message>",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, xml string) {
		el, err := element.ParseLimited([]byte(xml), stanza.NSClient, element.Limits{MaxNodes: 500})
		if err != nil {
			return
		}
		before := string(el.AppendTo(nil, stanza.NSClient))
		first := encryptedOnly(el)
		second := encryptedOnly(el)
		if (first == nil) != (second == nil) || (first != nil && first.Error() != second.Error()) {
			t.Fatalf("two answers for %q: %v, then %v", xml, first, second)
		}
		if after := string(el.AppendTo(nil, stanza.NSClient)); after != before {
			t.Fatalf("the check changed the message:\n%s\n%s", before, after)
		}
		if first != nil {
			return
		}
		payload, body := false, false
		for _, c := range el.Elements() {
			switch {
			case schemeOf(c.Space) != 0:
				payload = true
			case c.Space == stanza.NSClient && c.Local == "body" && !blank(c):
				body = true
			case c.Space == nsXHTMLIM && c.Local == "html":
				t.Fatalf("XHTML-IM passes: %q", xml)
			}
		}
		if body && !payload {
			t.Fatalf("a plaintext body without a payload passes: %q", xml)
		}
	})
}
