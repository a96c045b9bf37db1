package server

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/ProtonMail/go-crypto/openpgp/armor"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/stanza"
)

// This file is the content check behind encryption_required: checkRights
// (access.go) calls encryptedOnly on every message that a sender's or a
// local recipient's rule makes subject to it.
//
// A message passes when it carries no user content at all (chat states,
// receipts, markers, OMEMO key-transport and ratchet messages, errors
// without an echoed body), or when it carries end-to-end payloads that are
// each well-formed and nothing in plain text beside them but the payload's
// standard fallback body. What the server can check without a key is the
// structure: an OMEMO header with a key and a payload, an OpenPGP message
// whose packets are session keys followed by integrity-protected encrypted
// data. It cannot tell ciphertext from base64 that merely looks like it;
// the check stops the plaintext a client sends by mistake or by default,
// and the empty or decorative payload that passed before.

// Element namespaces the check reads beside the payloads'.
const (
	nsXHTMLIM   = "http://jabber.org/protocol/xhtml-im" // XEP-0071
	nsOOB       = "jabber:x:oob"                        // XEP-0066
	nsSFS       = "urn:xmpp:sfs:0"                      // XEP-0447
	nsReference = "urn:xmpp:reference:0"                // XEP-0372, XEP-0385
	nsForward   = "urn:xmpp:forward:0"                  // XEP-0297
	nsFallback  = "urn:xmpp:fallback:0"                 // XEP-0428
)

// e2eProblem says why a message fails encryption_required. The texts are
// few and fixed (with the name of a plaintext element at most), so that
// they can be audit reasons and counter labels.
type e2eProblem string

func (p e2eProblem) Error() string { return string(p) }

// Problems found in a message (and carrier.problem). A constant converted
// to error does not allocate: a plaintext message is refused without
// allocating here.
const (
	errNoPayload        e2eProblem = "the message has a body but no end-to-end encrypted payload"
	errPlaintextBody    e2eProblem = "plaintext beside the encrypted payload: the body is not the payload's fallback text"
	errKeyTransportBody e2eProblem = "an OMEMO key-transport message (no <payload/>) carries a body"
	errOMEMONoHeader    e2eProblem = "the OMEMO payload has no <header/>"
	errOMEMOSID         e2eProblem = "the OMEMO header has no valid sid"
	errOMEMONoKey       e2eProblem = "the OMEMO payload has no key"
	errOMEMORID         e2eProblem = "an OMEMO key has no valid rid"
	errOMEMOKey         e2eProblem = "an OMEMO key is not base64"
	errOMEMOKeysJID     e2eProblem = "an OMEMO <keys/> has no valid jid"
	errOMEMOIV          e2eProblem = "the OMEMO header has no base64 <iv/>"
	errOMEMOPayload     e2eProblem = "the OMEMO <payload/> is not base64"
	errPGPNotBase64     e2eProblem = "the OpenPGP payload is not base64"
	errPGPNotArmor      e2eProblem = "the XEP-0027 payload is not an ASCII-armored OpenPGP message"
	errPGPGarbage       e2eProblem = "the OpenPGP message does not parse"
	errPGPTruncated     e2eProblem = "the OpenPGP message is truncated"
	errPGPNotEncrypted  e2eProblem = "the OpenPGP message is not encrypted"
	errPGPNoSessionKey  e2eProblem = "the OpenPGP message has no session key packet"
	errPGPNoData        e2eProblem = "the OpenPGP message has no encrypted data packet"
	errPGPNoIntegrity   e2eProblem = "the OpenPGP message's encrypted data has no integrity protection"
	errPGPShort         e2eProblem = "the OpenPGP message's encrypted data is too short"
	errPGPAfterData     e2eProblem = "the OpenPGP message has packets after its encrypted data"
)

// Payload schemes, as bits of a set.
const (
	schemeOMEMOLegacy uint8 = 1 << iota // eu.siacs.conversations.axolotl
	schemeOMEMO2                        // urn:xmpp:omemo:2
	schemeOX                            // urn:xmpp:openpgp:0
	schemeLegacyPGP                     // jabber:x:encrypted

	schemesOMEMO = schemeOMEMOLegacy | schemeOMEMO2
	schemesPGP   = schemeOX | schemeLegacyPGP
)

// schemeOf returns the scheme whose payload namespace is ns, or 0.
func schemeOf(ns string) uint8 {
	switch ns {
	case nsOMEMOLegacy:
		return schemeOMEMOLegacy
	case nsOMEMO2:
		return schemeOMEMO2
	case nsOpenPGP:
		return schemeOX
	case nsLegacyPGP:
		return schemeLegacyPGP
	}
	return 0
}

// knownFallbacks are the fallback bodies real clients put beside an
// end-to-end payload for clients that cannot decrypt it, each as its
// source writes it (a typographic apostrophe and ASCII ' match each
// other; surrounding white space is ignored). A body beside a payload
// passes only if it is one of these, for the payload's scheme, or if an
// XEP-0428 <fallback/> marks it as the payload's fallback. Translated
// texts (Converse.js, Gajim's XEP-0027 plugin) are not listed and are
// refused: the sender's client can switch to English or send OMEMO 2 with
// XEP-0428.
var knownFallbacks = [...]struct {
	schemes uint8
	text    string
	source  string
}{
	// Conversations: src/main/java/eu/siacs/conversations/generator/MessageGenerator.java
	// (OMEMO_FALLBACK_MESSAGE, PGP_FALLBACK_MESSAGE; sent with an XEP-0380 hint).
	{schemesOMEMO, "I sent you an OMEMO encrypted message but your client doesn’t seem to support that. Find more information on https://conversations.im/omemo", "Conversations"},
	{schemesPGP, "I sent you a PGP encrypted message but your client doesn’t seem to support that.", "Conversations"},
	// Conversations before its PGP fallback text (generatePgpChat).
	{schemesPGP, "This is an XEP-0027 encrypted message", "Conversations (old)"},
	// Dino: plugins/omemo/src/logic/encrypt.vala, plugins/openpgp/src/stream_module.vala.
	// Monal: Monal/Classes/MLOMEMO.m (encryptMessage) sends the same OMEMO text.
	{schemesOMEMO, "[This message is OMEMO encrypted]", "Dino, Monal"},
	{schemesPGP, "[This message is OpenPGP encrypted (see XEP-0027)]", "Dino"},
	// Gajim: python-nbxmpp nbxmpp/modules/omemo.py (create_omemo_message),
	// nbxmpp/modules/openpgp.py (create_message_stanza, new and old text),
	// gajim-plugins pgp (_get_info_message, with and without its ')' fix).
	// profanity 0.13: src/xmpp/message.c (message_send_chat_omemo, no XEP-0380 hint).
	{schemesOMEMO, "You received a message encrypted with OMEMO but your client doesn't support OMEMO.", "Gajim, profanity"},
	{schemesPGP, "This message is *encrypted* with OpenPGP", "Gajim"},
	{schemesPGP, "[This message is *encrypted* with OpenPGP (See :XEP:`0373`]", "Gajim (older nbxmpp)"},
	{schemesPGP, "[This message is *encrypted* (See :XEP:`27`)]", "Gajim pgp plugin"},
	{schemesPGP, "[This message is *encrypted* (See :XEP:`27`]", "Gajim pgp plugin (older)"},
	// profanity 0.13: src/xmpp/message.c (message_send_chat_pgp, message_send_chat_ox).
	{schemesPGP, "This message is encrypted (XEP-0027).", "profanity"},
	{schemesPGP, "This message is encrypted (XEP-0373: OpenPGP for XMPP).", "profanity"},
	// Converse.js: src/plugins/omemo/utils.js (getOutgoingMessageAttributes), English.
	{schemesOMEMO, "This is an OMEMO encrypted message which your client doesn’t seem to support. Find more information on https://conversations.im/omemo", "Converse.js"},
	// poezio: poezio/plugin_e2ee.py sets the XEP-0380 hint and slixmpp's
	// xep_0380 replace_body_with_eme writes its template
	// 'This message is encrypted with {name} ({namespace})'.
	{schemeOMEMOLegacy, "This message is encrypted with Legacy OMEMO (eu.siacs.conversations.axolotl)", "poezio"},
	{schemeLegacyPGP, "This message is encrypted with Legacy OpenPGP (jabber:x:encrypted)", "poezio"},
}

// encryptedOnly returns why msg, a message under encryption_required,
// must be refused, or nil when it passes. It reads the direct children
// once and allocates nothing for a message without end-to-end payloads;
// an OpenPGP payload is decoded and its packets parsed (no decryption).
func encryptedOnly(msg *element.Element) error {
	var (
		schemes      uint8 // payload schemes present
		keyTransport bool  // an OMEMO payload without <payload/>
		bodies       int   // non-blank <body/> children
		plain        carrier
	)
	for _, n := range msg.Nodes {
		c := n.El
		if c == nil {
			continue
		}
		if s := schemeOf(c.Space); s != 0 && c.Local == payloadName(s) {
			kt, err := checkPayload(s, c)
			if err != nil {
				return err
			}
			schemes |= s
			keyTransport = keyTransport || kt
			continue
		}
		if c.Space == stanza.NSClient && c.Local == "body" {
			if !blank(c) {
				bodies++
			}
			continue
		}
		if plain == noCarrier {
			plain = plaintextCarrier(c)
		}
	}
	switch {
	case plain != noCarrier:
		return plain.problem(schemes != 0)
	case bodies == 0:
		return nil
	case schemes == 0:
		return errNoPayload
	case keyTransport:
		return errKeyTransportBody
	case fallbackMarked(msg, schemes):
		return nil
	}
	for _, n := range msg.Nodes {
		if c := n.El; c != nil && c.Space == stanza.NSClient && c.Local == "body" && !blank(c) && !knownFallback(c.Text(), schemes) {
			return errPlaintextBody
		}
	}
	return nil
}

// e2ePayload names the first end-to-end payload among msg's children
// ("OMEMO", "OMEMO 2", "OpenPGP for XMPP", "jabber:x:encrypted"), "" when
// it has none. It does not check the payload: under encryption =
// "forbidden" an empty one is refused too.
func e2ePayload(msg *element.Element) string {
	for _, n := range msg.Nodes {
		if c := n.El; c != nil {
			if s := schemeOf(c.Space); s != 0 && c.Local == payloadName(s) {
				return schemeName(s)
			}
		}
	}
	return ""
}

// schemeName is a scheme's name in refusal texts.
func schemeName(s uint8) string {
	switch s {
	case schemeOMEMOLegacy:
		return "OMEMO"
	case schemeOMEMO2:
		return "OMEMO 2"
	case schemeOX:
		return "OpenPGP for XMPP"
	}
	return "jabber:x:encrypted"
}

// payloadName is the local name of a scheme's payload element.
func payloadName(s uint8) string {
	switch s {
	case schemeOX:
		return "openpgp"
	case schemeLegacyPGP:
		return "x"
	}
	return "encrypted"
}

// checkPayload checks one payload element of scheme s; keyTransport
// reports an OMEMO element without <payload/>.
func checkPayload(s uint8, el *element.Element) (keyTransport bool, err error) {
	switch s {
	case schemeOMEMOLegacy:
		return checkOMEMO(el, false)
	case schemeOMEMO2:
		return checkOMEMO(el, true)
	case schemeOX:
		return false, checkOX(el)
	default:
		return false, checkLegacyPGP(el)
	}
}

// carrier is a kind of plaintext a message child carries outside an
// end-to-end payload.
type carrier uint8

const (
	noCarrier carrier = iota
	carrierSubject
	carrierXHTML
	carrierOOB
	carrierSFS
	carrierReference
	carrierForwarded
)

// plaintextCarrier returns the plaintext c, a child of a message, carries
// outside an end-to-end payload, if any.
func plaintextCarrier(c *element.Element) carrier {
	switch c.Space {
	case stanza.NSClient:
		if c.Local == "subject" && !blank(c) { // an empty one clears a room's subject
			return carrierSubject
		}
	case nsXHTMLIM:
		if c.Local == "html" {
			return carrierXHTML
		}
	case nsOOB:
		if c.Local == "x" {
			return carrierOOB
		}
	case nsSFS:
		if c.Local == "file-sharing" || c.Local == "file-sources" {
			return carrierSFS
		}
	case nsReference:
		if c.Local == "reference" && (c.Attr("uri") != "" || c.FirstElement() != nil) {
			return carrierReference
		}
	case nsForward:
		// A client may forward a message it got (hygiene.go keeps a
		// top-level <forwarded/>): its content is in plain text.
		if c.Local == "forwarded" {
			return carrierForwarded
		}
	}
	return noCarrier
}

// problem is the refusal for plaintext of kind k, beside an end-to-end
// payload or without one.
func (k carrier) problem(beside bool) error {
	if beside {
		switch k {
		case carrierSubject:
			return e2eProblem("plaintext beside the encrypted payload: a subject")
		case carrierXHTML:
			return e2eProblem("plaintext beside the encrypted payload: XHTML-IM")
		case carrierOOB:
			return e2eProblem("plaintext beside the encrypted payload: an out-of-band URL (XEP-0066)")
		case carrierSFS:
			return e2eProblem("plaintext beside the encrypted payload: file sharing (XEP-0447)")
		case carrierReference:
			return e2eProblem("plaintext beside the encrypted payload: a reference with a URL (XEP-0372, XEP-0385)")
		}
		return e2eProblem("plaintext beside the encrypted payload: a forwarded message (XEP-0297)")
	}
	switch k {
	case carrierSubject:
		return e2eProblem("plaintext and no end-to-end encrypted payload: a subject")
	case carrierXHTML:
		return e2eProblem("plaintext and no end-to-end encrypted payload: XHTML-IM")
	case carrierOOB:
		return e2eProblem("plaintext and no end-to-end encrypted payload: an out-of-band URL (XEP-0066)")
	case carrierSFS:
		return e2eProblem("plaintext and no end-to-end encrypted payload: file sharing (XEP-0447)")
	case carrierReference:
		return e2eProblem("plaintext and no end-to-end encrypted payload: a reference with a URL (XEP-0372, XEP-0385)")
	}
	return e2eProblem("plaintext and no end-to-end encrypted payload: a forwarded message (XEP-0297)")
}

// checkOMEMO checks an OMEMO <encrypted/> (XEP-0384): legacy
// (eu.siacs.conversations.axolotl: <key rid/> and <iv/> in the header) or
// OMEMO 2 (<keys jid/> groups of <key rid/>, no <iv/>). A <payload/> is
// optional: without one the element is a key-transport message.
func checkOMEMO(enc *element.Element, v2 bool) (keyTransport bool, err error) {
	ns := enc.Space
	header := enc.Child(ns, "header")
	if header == nil {
		return false, errOMEMONoHeader
	}
	if !isDeviceID(header.Attr("sid")) {
		return false, errOMEMOSID
	}
	keys, iv := 0, false
	for _, n := range header.Nodes {
		c := n.El
		if c == nil || c.Space != ns {
			continue
		}
		switch {
		case c.Local == "key" && !v2:
			if err := checkOMEMOKey(c); err != nil {
				return false, err
			}
			keys++
		case c.Local == "keys" && v2:
			if j, err := stanza.ParseAddress(c.Attr("jid")); err != nil || j.Resourcepart() != "" {
				return false, errOMEMOKeysJID
			}
			for _, m := range c.Nodes {
				if k := m.El; k != nil && k.Space == ns && k.Local == "key" {
					if err := checkOMEMOKey(k); err != nil {
						return false, err
					}
					keys++
				}
			}
		case c.Local == "iv" && !v2:
			if !isBase64(c) {
				return false, errOMEMOIV
			}
			iv = true
		}
	}
	if keys == 0 {
		return false, errOMEMONoKey
	}
	if !v2 && !iv {
		return false, errOMEMOIV
	}
	payloads := 0
	for _, n := range enc.Nodes {
		if c := n.El; c != nil && c.Space == ns && c.Local == "payload" {
			if !isBase64(c) {
				return false, errOMEMOPayload
			}
			payloads++
		}
	}
	return payloads == 0, nil
}

func checkOMEMOKey(k *element.Element) error {
	if !isDeviceID(k.Attr("rid")) {
		return errOMEMORID
	}
	if !isBase64(k) {
		return errOMEMOKey
	}
	return nil
}

// isDeviceID reports whether s is an OMEMO device id: a decimal number
// that fits 32 bits unsigned.
func isDeviceID(s string) bool {
	if s == "" || len(s) > 10 {
		return false
	}
	var v uint64
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
		v = v*10 + uint64(s[i]-'0')
	}
	return v <= 1<<32-1
}

// isBase64 reports whether the content of el is non-empty base64 (RFC 4648
// standard alphabet, padded or not), with white space anywhere ignored, as
// XML producers may wrap it. An element child makes it false.
func isBase64(el *element.Element) bool {
	n, pad := 0, 0
	for _, node := range el.Nodes {
		if node.El != nil {
			return false
		}
		t := node.Text
		for i := 0; i < len(t); i++ {
			switch c := t[i]; {
			case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			case c == '=':
				pad++
			case pad > 0: // data after padding
				return false
			case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '+', c == '/':
				n++
			default:
				return false
			}
		}
	}
	if n == 0 || pad > 2 {
		return false
	}
	if pad > 0 {
		return (n+pad)%4 == 0
	}
	return n%4 != 1
}

// blank reports whether an element holds only white space.
func blank(el *element.Element) bool {
	for _, node := range el.Nodes {
		if node.El != nil || strings.TrimSpace(node.Text) != "" {
			return false
		}
	}
	return true
}

// checkOX checks an XEP-0373 <openpgp/>: base64 of a binary OpenPGP
// message.
func checkOX(el *element.Element) error {
	if !isBase64(el) {
		return errPGPNotBase64
	}
	b64 := make([]byte, 0, len(el.Nodes[0].Text))
	for _, node := range el.Nodes {
		for i := 0; i < len(node.Text); i++ {
			if c := node.Text[i]; c != ' ' && c != '\t' && c != '\r' && c != '\n' {
				b64 = append(b64, c)
			}
		}
	}
	enc := base64.StdEncoding
	if len(b64)%4 != 0 {
		enc = base64.RawStdEncoding
	}
	data := make([]byte, enc.DecodedLen(len(b64)))
	n, err := enc.Decode(data, b64)
	if err != nil {
		return errPGPNotBase64
	}
	return checkOpenPGP(bytes.NewReader(data[:n]))
}

// checkLegacyPGP checks an XEP-0027 <x xmlns='jabber:x:encrypted'/>: an
// ASCII-armored OpenPGP message without its BEGIN and END lines and
// headers (the checksum line may stay), as clients cut it (Dino,
// profanity). A text that kept its armor lines is read as it is.
func checkLegacyPGP(el *element.Element) error {
	text := strings.TrimSpace(el.Text())
	if text == "" {
		return errPGPNotArmor
	}
	if !strings.HasPrefix(text, "-----BEGIN ") {
		text = "-----BEGIN PGP MESSAGE-----\n\n" + text + "\n-----END PGP MESSAGE-----\n"
	}
	block, err := armor.Decode(strings.NewReader(text))
	if err != nil || block.Type != "PGP MESSAGE" {
		return errPGPNotArmor
	}
	return checkOpenPGP(block.Body)
}

// Smallest possible encrypted data packets: SEIPD v1 holds at least a
// cipher block plus two octets of prefix and the 22-octet MDC packet (the
// smallest OpenPGP block is 8 octets); SEIPD v2 and AEAD packets at least
// the final 16-octet authentication tag.
const (
	minSEIPDv1 = 8 + 2 + 22
	minAEAD    = 16
)

// checkOpenPGP reads an OpenPGP message with go-crypto's packet reader
// (RFC 9580 10.3) and checks that it is an encrypted message: one or more
// public-key or symmetric-key encrypted session key packets, then one
// integrity-protected encrypted data packet (SEIPD v1/v2 or AEAD), read to
// its end, and nothing after it. Marker, padding and non-critical unknown
// packets are skipped; nothing is decrypted.
func checkOpenPGP(r io.Reader) error {
	sessionKeys, data := 0, false
	for {
		p, err := packet.Read(r)
		if err == io.EOF {
			break
		}
		if err != nil {
			var unsupported pgperrors.UnsupportedError
			var unknown pgperrors.UnknownPacketTypeError
			switch {
			case errors.As(err, &unknown):
				continue // non-critical (tag 40 to 63), consumed
			case errors.Is(err, io.ErrUnexpectedEOF):
				return errPGPTruncated
			case errors.As(err, &unsupported) && isSessionKey(p) && !data:
				// A session key for an algorithm go-crypto lacks: consumed,
				// and still a session key packet.
				sessionKeys++
				continue
			}
			return errPGPGarbage
		}
		if data {
			switch p.(type) {
			case *packet.Marker, packet.Padding:
				continue
			}
			return errPGPAfterData
		}
		var contents io.Reader
		min := int64(minAEAD)
		switch p := p.(type) {
		case *packet.EncryptedKey, *packet.SymmetricKeyEncrypted:
			sessionKeys++
			continue
		case *packet.Marker, packet.Padding:
			continue
		case *packet.SymmetricallyEncrypted:
			if !p.IntegrityProtected {
				return errPGPNoIntegrity
			}
			if p.Version == 1 {
				min = minSEIPDv1
			}
			contents = p.Contents
		case *packet.AEADEncrypted:
			contents = p.Contents
		default:
			return errPGPNotEncrypted // literal data, compressed data, signatures, keys
		}
		if sessionKeys == 0 {
			return errPGPNoSessionKey
		}
		n, err := io.Copy(io.Discard, contents)
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return errPGPTruncated
			}
			return errPGPGarbage
		}
		if n < min {
			return errPGPShort
		}
		data = true
	}
	switch {
	case data:
		return nil
	case sessionKeys > 0:
		return errPGPNoData
	}
	return errPGPNotEncrypted
}

func isSessionKey(p packet.Packet) bool {
	switch p.(type) {
	case *packet.EncryptedKey, *packet.SymmetricKeyEncrypted:
		return true
	}
	return false
}

// fallbackMarked reports whether an XEP-0428 <fallback/> for one of the
// payload schemes present (or without 'for', as in its version 0.1) marks
// the whole body as fallback: it has no <body/> child (the whole body is
// meant), or a <body/> child without a range or with one that covers the
// body. A fallback for another feature (a reply's quote) does not count.
func fallbackMarked(msg *element.Element, schemes uint8) bool {
	for _, n := range msg.Nodes {
		f := n.El
		if f == nil || f.Space != nsFallback || f.Local != "fallback" {
			continue
		}
		if ns := f.Attr("for"); ns != "" && schemeOf(ns)&schemes == 0 {
			continue
		}
		ranges := false
		for _, m := range f.Nodes {
			b := m.El
			if b == nil || b.Space != nsFallback || b.Local != "body" {
				continue
			}
			ranges = true
			if coversBody(msg, b.Attr("start"), b.Attr("end")) {
				return true
			}
		}
		if !ranges {
			return true
		}
	}
	return false
}

// coversBody reports whether the code point range [start, end) (either
// empty: from the beginning, to the end) covers every body of msg.
func coversBody(msg *element.Element, start, end string) bool {
	if start != "" && start != "0" {
		return false
	}
	if end == "" {
		return true
	}
	e, ok := atoi(end)
	if !ok {
		return false
	}
	for _, n := range msg.Nodes {
		if c := n.El; c != nil && c.Space == stanza.NSClient && c.Local == "body" && utf8.RuneCountInString(c.Text()) > e {
			return false
		}
	}
	return true
}

// atoi parses a small non-negative decimal without allocating.
func atoi(s string) (int, bool) {
	if s == "" || len(s) > 9 {
		return 0, false
	}
	v := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		v = v*10 + int(s[i]-'0')
	}
	return v, true
}

// knownFallback reports whether body is one of the known fallback texts
// of a scheme in schemes.
func knownFallback(body string, schemes uint8) bool {
	body = strings.TrimSpace(body)
	for _, f := range knownFallbacks {
		if f.schemes&schemes != 0 && sameFallback(body, f.text) {
			return true
		}
	}
	return false
}

// sameFallback compares a body with a fallback text, the typographic
// apostrophe (U+2019) and ASCII ' being the same (client forks and
// translations use either).
func sameFallback(body, text string) bool {
	for body != "" && text != "" {
		a, na := utf8.DecodeRuneInString(body)
		b, nb := utf8.DecodeRuneInString(text)
		if a == '’' {
			a = '\''
		}
		if b == '’' {
			b = '\''
		}
		if a != b {
			return false
		}
		body, text = body[na:], text[nb:]
	}
	return body == "" && text == ""
}
