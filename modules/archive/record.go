package archive

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// RecordVersion is the version of the record encoding written by this build.
const RecordVersion = 1

// SaltSize is the size of a record's commitment salt in bytes.
const SaltSize = 16

// Record is the decoded form of a journal record (format version 1).
//
// The stored bytes are one JSON object with exactly these keys, in this
// order, no spaces, strings escaped only where JSON requires it (quote,
// backslash, control characters as \u00XX):
//
//	{"v":1,"time":"2026-12-01T19:00:00.123456789Z","dir":"local","kind":"message",
//	 "from":"alice@example.com/phone","to":"bob@example.com","type":"chat","id":"m1",
//	 ["peer":"partner.example","auth":"sasl-external",] ["flags":["cards"],] "size":123,"enc":"none","salt":"<base64 16 bytes>","commit":"<base64 SHA-256>",
//	 "content":"<message ...>...</message>"}
//
// commit is SHA-256(salt || plaintext content), so that content stored
// encrypted ("enc" EncAESGCMPrefix + epoch, see there) or removed by a purge
// can still be proven: plaintext + salt -> commit -> leaf -> checkpoint. The
// leaf of the record in the Merkle tree is the RFC 6962 hash of the stored
// bytes themselves, so a verifier never needs to re-encode anything.
type Record struct {
	V    int       `json:"v"`
	Time time.Time `json:"time"`
	Dir  string    `json:"dir"`
	Kind string    `json:"kind"`
	From string    `json:"from"`
	To   string    `json:"to"`
	Type string    `json:"type"`
	ID   string    `json:"id"`
	// Peer and Auth are present only on records of stanzas that crossed a
	// partner stream: the peer domain, and how the stream was
	// authenticated ("sasl-external", "dialback", "dialback-pkix"; "" when
	// an outgoing stanza was recorded before its stream was up).
	Peer string `json:"peer,omitempty"`
	Auth string `json:"auth,omitempty"`
	// Flags are present only on records that content rules flagged for
	// review: the rules' names.
	Flags   []string `json:"flags,omitempty"`
	Size    int      `json:"size"`
	Enc     string   `json:"enc"`
	Salt    []byte   `json:"salt"`
	Commit  []byte   `json:"commit"`
	Content string   `json:"content"`
}

// EncNone marks content stored as plaintext.
const EncNone = "none"

// EncAESGCMPrefix starts the enc of content sealed with officer encryption
// at rest: "aes-256-gcm/" + the epoch key's ID. The content is then base64
// of nonce (12 bytes) || AES-256-GCM ciphertext, with the epoch ID as
// additional data; commit and size are still those of the plaintext.
const EncAESGCMPrefix = "aes-256-gcm/"

// appendRecord encodes a version 1 record with plaintext content onto buf.
func appendRecord(buf []byte, t time.Time, dir, kind, from, to, typ, id string, content []byte) ([]byte, error) {
	return appendSealedRecord(buf, t, dir, kind, from, to, typ, id, content, EncNone, nil)
}

// appendSealedRecord encodes a version 1 record onto buf. With enc other
// than EncNone, the stored content is sealed (base64 in the record) and
// plain only feeds the commitment and the size.
func appendSealedRecord(buf []byte, t time.Time, dir, kind, from, to, typ, id string, plain []byte, enc string, sealed []byte) ([]byte, error) {
	return appendRecordVia(buf, t, dir, kind, from, to, typ, id, via{}, plain, enc, sealed)
}

// via is what a record says beside the stanza: the federation peer (the
// peer domain and how its stream was authenticated; zero for local
// traffic) and the content rules that flagged it.
type via struct {
	peer, auth string
	flags      []string
}

// appendRecordVia is appendSealedRecord for a stanza that crossed a
// partner stream or was flagged: "peer" and "auth" follow "id" when
// v.peer is set, then "flags" when v.flags is not empty.
func appendRecordVia(buf []byte, t time.Time, dir, kind, from, to, typ, id string, v via, plain []byte, enc string, sealed []byte) ([]byte, error) {
	content := plain
	var salt [SaltSize]byte
	if _, err := rand.Read(salt[:]); err != nil {
		return buf, fmt.Errorf("archive: record salt: %w", err)
	}
	commit := Commitment(salt[:], content)
	buf = append(buf, `{"v":`...)
	buf = strconv.AppendInt(buf, RecordVersion, 10)
	buf = append(buf, `,"time":"`...)
	buf = t.UTC().AppendFormat(buf, time.RFC3339Nano)
	buf = append(buf, `","dir":`...)
	buf = appendJSONString(buf, dir)
	buf = append(buf, `,"kind":`...)
	buf = appendJSONString(buf, kind)
	buf = append(buf, `,"from":`...)
	buf = appendJSONString(buf, from)
	buf = append(buf, `,"to":`...)
	buf = appendJSONString(buf, to)
	buf = append(buf, `,"type":`...)
	buf = appendJSONString(buf, typ)
	buf = append(buf, `,"id":`...)
	buf = appendJSONString(buf, id)
	if v.peer != "" {
		buf = append(buf, `,"peer":`...)
		buf = appendJSONString(buf, v.peer)
		buf = append(buf, `,"auth":`...)
		buf = appendJSONString(buf, v.auth)
	}
	if len(v.flags) > 0 {
		buf = append(buf, `,"flags":[`...)
		for i, f := range v.flags {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = appendJSONString(buf, f)
		}
		buf = append(buf, ']')
	}
	buf = append(buf, `,"size":`...)
	buf = strconv.AppendInt(buf, int64(len(content)), 10)
	buf = append(buf, `,"enc":`...)
	buf = appendJSONString(buf, enc)
	buf = append(buf, `,"salt":"`...)
	buf = base64.StdEncoding.AppendEncode(buf, salt[:])
	buf = append(buf, `","commit":"`...)
	buf = base64.StdEncoding.AppendEncode(buf, commit[:])
	buf = append(buf, `","content":`...)
	if enc == EncNone {
		buf = appendJSONString(buf, content)
	} else {
		buf = append(buf, '"')
		buf = base64.StdEncoding.AppendEncode(buf, sealed)
		buf = append(buf, '"')
	}
	return append(buf, '}'), nil
}

// Commitment is the salted commitment to a record's plaintext content.
func Commitment(salt, content []byte) [sha256.Size]byte {
	h := sha256.New()
	h.Write(salt)
	h.Write(content)
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// DecodeRecord parses stored record bytes and checks what can be checked
// without keys: the version, and for plaintext content its commitment.
func DecodeRecord(data []byte) (Record, error) {
	var r Record
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	if err := d.Decode(&r); err != nil {
		return r, fmt.Errorf("archive: record does not decode: %w", err)
	}
	if d.More() {
		return r, errors.New("archive: record has trailing data")
	}
	if r.V != RecordVersion {
		return r, fmt.Errorf("archive: record version %d, this build reads %d", r.V, RecordVersion)
	}
	if len(r.Salt) != SaltSize {
		return r, fmt.Errorf("archive: record salt has %d bytes", len(r.Salt))
	}
	if r.Enc != EncNone && !strings.HasPrefix(r.Enc, EncAESGCMPrefix) {
		return r, fmt.Errorf("archive: record content encoding %q unknown", r.Enc)
	}
	if r.Enc == EncNone {
		c := Commitment(r.Salt, []byte(r.Content))
		if subtle.ConstantTimeCompare(c[:], r.Commit) != 1 {
			return r, errors.New("archive: record content does not match its commitment")
		}
		if r.Size != len(r.Content) {
			return r, fmt.Errorf("archive: record size %d, content has %d bytes", r.Size, len(r.Content))
		}
	}
	return r, nil
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string, escaping only what JSON
// requires; invalid UTF-8 becomes U+FFFD.
func appendJSONString[T string | []byte](buf []byte, s T) []byte {
	buf = append(buf, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			buf = append(buf, s[start:i]...)
			switch c {
			case '"', '\\':
				buf = append(buf, '\\', c)
			default:
				buf = append(buf, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		// A short conversion that does not escape stays on the stack.
		r, size := utf8.DecodeRuneInString(string(s[i:min(i+utf8.UTFMax, len(s))]))
		if r == utf8.RuneError && size == 1 {
			buf = append(buf, s[start:i]...)
			buf = append(buf, "\ufffd"...)
			i++
			start = i
			continue
		}
		i += size
	}
	buf = append(buf, s[start:]...)
	return append(buf, '"')
}
