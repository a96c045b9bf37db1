// Package cosignature verifies C2SP tlog-cosignature v1 signatures
// (https://c2sp.org/tlog-cosignature): the Ed25519 cosignatures a
// tlog-witness adds to a checkpoint it found consistent with the last one it
// saw of that log.
//
// A cosignature is a signed-note signature line whose key hash is
// SHA-256(name || "\n" || 0x04 || public key)[:4] and whose signature is a
// big-endian 64-bit POSIX timestamp followed by an Ed25519 signature over
//
//	cosignature/v1
//	time <timestamp>
//	<checkpoint body>
//
// The verifier key is a vkey, name+hash+base64(0x04 || public key).
package cosignature

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"
)

// AlgV1 is the signature type byte of Ed25519 cosignature/v1 keys.
const AlgV1 = 0x04

// sigSize is the signature after the key hash: timestamp and Ed25519.
const sigSize = 8 + ed25519.SignatureSize

// Verifier is a note.Verifier for a witness's cosignature/v1 key.
type Verifier struct {
	name string
	hash uint32
	key  ed25519.PublicKey
}

var _ note.Verifier = (*Verifier)(nil)

// NewVerifier parses a cosignature/v1 verifier key (vkey).
func NewVerifier(vkey string) (*Verifier, error) {
	name, rest, ok1 := strings.Cut(vkey, "+")
	hash16, key64, ok2 := strings.Cut(rest, "+")
	if !ok1 || !ok2 {
		return nil, errors.New("not a verifier key: want name+hash+base64key")
	}
	if !validName(name) {
		return nil, fmt.Errorf("bad key name %q: it must be non-empty UTF-8 without spaces or '+'", name)
	}
	h, err := strconv.ParseUint(hash16, 16, 32)
	if err != nil || len(hash16) != 8 {
		return nil, fmt.Errorf("bad key hash %q: want 8 hex digits", hash16)
	}
	raw, err := base64.StdEncoding.DecodeString(key64)
	if err != nil {
		return nil, fmt.Errorf("bad key: %v", err)
	}
	if len(raw) == 0 || raw[0] != AlgV1 {
		alg := -1
		if len(raw) > 0 {
			alg = int(raw[0])
		}
		return nil, fmt.Errorf("key type %d is not a cosignature/v1 key (type %d)", alg, AlgV1)
	}
	if len(raw) != 1+ed25519.PublicKeySize {
		return nil, fmt.Errorf("key is %d bytes, want %d", len(raw)-1, ed25519.PublicKeySize)
	}
	key := ed25519.PublicKey(raw[1:])
	if KeyHash(name, key) != uint32(h) {
		return nil, fmt.Errorf("key hash %s does not match the name and key", hash16)
	}
	return &Verifier{name: name, hash: uint32(h), key: key}, nil
}

// NewVerifierKey formats the vkey of a witness's Ed25519 public key.
func NewVerifierKey(name string, key ed25519.PublicKey) (string, error) {
	if !validName(name) || len(key) != ed25519.PublicKeySize {
		return "", errors.New("cosignature: bad name or key")
	}
	return fmt.Sprintf("%s+%08x+%s", name, KeyHash(name, key), base64.StdEncoding.EncodeToString(append([]byte{AlgV1}, key...))), nil
}

// KeyHash is the key ID of an Ed25519 cosigner key.
func KeyHash(name string, key ed25519.PublicKey) uint32 {
	h := sha256.New()
	h.Write([]byte(name + "\n"))
	h.Write([]byte{AlgV1})
	h.Write(key)
	return binary.BigEndian.Uint32(h.Sum(nil))
}

// Name implements note.Verifier: the witness's name.
func (v *Verifier) Name() string { return v.name }

// KeyHash implements note.Verifier.
func (v *Verifier) KeyHash() uint32 { return v.hash }

// String returns the vkey.
func (v *Verifier) String() string {
	return fmt.Sprintf("%s+%08x+%s", v.name, v.hash, base64.StdEncoding.EncodeToString(append([]byte{AlgV1}, v.key...)))
}

// Verify implements note.Verifier: sig is what follows the key hash in the
// signature line, timestamp (8 bytes, big-endian) then Ed25519 signature;
// msg is the cosigned note text.
func (v *Verifier) Verify(msg, sig []byte) bool {
	if len(sig) != sigSize {
		return false
	}
	t := binary.BigEndian.Uint64(sig)
	if t > math.MaxInt64 {
		return false
	}
	return ed25519.Verify(v.key, Message(t, msg), sig[8:])
}

// Message is the cosignature/v1 signed message for a checkpoint text at
// time t (POSIX seconds).
func Message(t uint64, text []byte) []byte {
	m := make([]byte, 0, 40+len(text))
	m = append(m, "cosignature/v1\ntime "...)
	m = strconv.AppendUint(m, t, 10)
	m = append(m, '\n')
	return append(m, text...)
}

// Timestamp returns the time a cosignature line's signature says it was
// made (its base64 is note.Signature.Base64).
func Timestamp(sig note.Signature) (time.Time, error) {
	raw, err := base64.StdEncoding.DecodeString(sig.Base64)
	if err != nil || len(raw) != 4+sigSize {
		return time.Time{}, errors.New("cosignature: malformed signature")
	}
	t := binary.BigEndian.Uint64(raw[4:])
	if t > math.MaxInt64 {
		return time.Time{}, errors.New("cosignature: timestamp out of range")
	}
	return time.Unix(int64(t), 0).UTC(), nil
}

// Open checks the cosignatures of v in a signed note (the checkpoint with
// the witness's lines appended): it returns the note and v's signatures,
// an error when none is there, or a *note.InvalidSignatureError when a
// line of v's name and key hash does not verify. Lines of other keys are
// ignored.
func Open(msg []byte, v *Verifier) (*note.Note, []note.Signature, error) {
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		var unv *note.UnverifiedNoteError
		if errors.As(err, &unv) {
			return nil, nil, fmt.Errorf("no cosignature from witness %s", v.name)
		}
		return nil, nil, err
	}
	var sigs []note.Signature
	for _, s := range n.Sigs {
		if s.Name == v.name && s.Hash == v.hash {
			sigs = append(sigs, s)
		}
	}
	if len(sigs) == 0 {
		return nil, nil, fmt.Errorf("no cosignature from witness %s", v.name)
	}
	return n, sigs, nil
}

// Line formats a note signature line ("— name base64\n").
func Line(s note.Signature) string {
	return "\u2014 " + s.Name + " " + s.Base64 + "\n"
}

func validName(name string) bool {
	return name != "" && utf8.ValidString(name) && strings.IndexFunc(name, unicode.IsSpace) < 0 && !strings.Contains(name, "+")
}
