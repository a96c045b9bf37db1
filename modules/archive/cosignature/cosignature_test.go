package cosignature

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"filippo.io/torchwood"
	"golang.org/x/mod/sumdb/note"
)

const checkpointText = "example.com/log\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"

// signedCheckpoint returns the checkpoint signed by the log's own key.
func signedCheckpoint(t *testing.T) []byte {
	t.Helper()
	skey, _, err := note.GenerateKey(rand.Reader, "example.com/log")
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := note.Sign(&note.Note{Text: checkpointText}, s)
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

// TestTorchwoodCosignature verifies what torchwood's signer (the one
// litewitness uses) produces, and refuses it once anything changed.
func TestTorchwoodCosignature(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ts, err := torchwood.NewCosignatureSigner("witness.example/w1", priv)
	if err != nil {
		t.Fatal(err)
	}
	vkey := ts.Verifier().String()
	if mine, err := NewVerifierKey("witness.example/w1", pub); err != nil || mine != vkey {
		t.Fatalf("NewVerifierKey = %q, %v; torchwood says %q", mine, err, vkey)
	}
	v, err := NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	if v.Name() != "witness.example/w1" || v.KeyHash() != ts.KeyHash() || v.String() != vkey {
		t.Fatalf("verifier %s %08x, signer %08x", v.Name(), v.KeyHash(), ts.KeyHash())
	}
	before := time.Now().Unix()
	cosigned, err := note.Sign(&note.Note{Text: checkpointText}, ts)
	if err != nil {
		t.Fatal(err)
	}
	// The witness answers with its lines; the log appends them to its note.
	_, lines, _ := strings.Cut(string(cosigned), "\n\n")
	msg := append(signedCheckpoint(t), lines...)
	n, sigs, err := Open(msg, v)
	if err != nil {
		t.Fatalf("Open: %v\n%s", err, msg)
	}
	if n.Text != checkpointText || len(sigs) != 1 || Line(sigs[0]) != lines {
		t.Fatalf("sigs %+v, line %q want %q", sigs, Line(sigs[0]), lines)
	}
	at, err := Timestamp(sigs[0])
	if err != nil || at.Unix() < before || at.Unix() > time.Now().Unix() {
		t.Fatalf("timestamp %v (%v), signed after %d", at, err, before)
	}

	// The checkpoint changed under the cosignature.
	other := strings.Replace(string(msg), "\n5\n", "\n6\n", 1)
	if _, _, err := Open([]byte(other), v); !isInvalid(err) {
		t.Errorf("changed size: %v", err)
	}
	// The timestamp changed: the signature covers it.
	raw, _ := base64.StdEncoding.DecodeString(sigs[0].Base64)
	binary.BigEndian.PutUint64(raw[4:], uint64(at.Unix()+1))
	moved := strings.Replace(string(msg), sigs[0].Base64, base64.StdEncoding.EncodeToString(raw), 1)
	if _, _, err := Open([]byte(moved), v); !isInvalid(err) {
		t.Errorf("changed timestamp: %v", err)
	}
	// Another witness's key: its lines are ignored, so none is found.
	pub2, _, _ := ed25519.GenerateKey(rand.Reader)
	vk2, _ := NewVerifierKey("witness.example/w2", pub2)
	v2, _ := NewVerifier(vk2)
	if _, _, err := Open(msg, v2); err == nil || !strings.Contains(err.Error(), "no cosignature from witness witness.example/w2") {
		t.Errorf("other witness: %v", err)
	}
	// The same name with another key: a different key hash, ignored too.
	vk3, _ := NewVerifierKey("witness.example/w1", pub2)
	v3, _ := NewVerifier(vk3)
	if _, _, err := Open(msg, v3); err == nil || !strings.Contains(err.Error(), "no cosignature") {
		t.Errorf("same name, other key: %v", err)
	}
	// A forged line under the right name and key hash.
	forged := make([]byte, len(raw))
	copy(forged, raw)
	forged[len(forged)-1] ^= 1
	bad := strings.Replace(string(msg), sigs[0].Base64, base64.StdEncoding.EncodeToString(forged), 1)
	if _, _, err := Open([]byte(bad), v); !isInvalid(err) {
		t.Errorf("forged signature: %v", err)
	}
}

// TestHandMadeCosignature builds a cosignature from the spec's message
// format with crypto/ed25519 alone.
func TestHandMadeCosignature(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	vkey, _ := NewVerifierKey("w.example", pub)
	v, err := NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	const ts = 1679315147
	m := "cosignature/v1\ntime 1679315147\n" + checkpointText
	if got := string(Message(ts, []byte(checkpointText))); got != m {
		t.Fatalf("Message = %q", got)
	}
	sig := binary.BigEndian.AppendUint64(nil, ts)
	sig = append(sig, ed25519.Sign(priv, []byte(m))...)
	if !v.Verify([]byte(checkpointText), sig) {
		t.Fatal("hand-made cosignature refused")
	}
	if v.Verify([]byte(checkpointText), sig[:len(sig)-1]) {
		t.Error("short signature accepted")
	}
	big := binary.BigEndian.AppendUint64(nil, 1<<63)
	if v.Verify([]byte(checkpointText), append(big, sig[8:]...)) {
		t.Error("timestamp past 2^63-1 accepted")
	}
	// A plain Ed25519 note signature of the text is not a cosignature.
	if v.Verify([]byte(checkpointText), append(binary.BigEndian.AppendUint64(nil, ts), ed25519.Sign(priv, []byte(checkpointText))...)) {
		t.Error("signature without the cosignature/v1 header accepted")
	}
}

func TestNewVerifierErrors(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	good, _ := NewVerifierKey("w.example", pub)
	name, rest, _ := strings.Cut(good, "+")
	hash, key, _ := strings.Cut(rest, "+")
	_, noteVkey, _ := note.GenerateKey(rand.Reader, "w.example")
	for _, tc := range []struct{ vkey, want string }{
		{"w.example", "not a verifier key"},
		{"w x+" + hash + "+" + key, "bad key name"},
		{name + "+1234+" + key, "bad key hash"},
		{name + "+" + hash + "+!!", "bad key"},
		{"w.other+" + hash + "+" + key, "does not match"},
		{noteVkey, "is not a cosignature/v1 key"},
		{name + "+" + hash + "+" + base64.StdEncoding.EncodeToString(append([]byte{AlgV1}, pub[:16]...)), "key is 16 bytes"},
	} {
		if _, err := NewVerifier(tc.vkey); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewVerifier(%q) = %v, want %q", tc.vkey, err, tc.want)
		}
	}
}

func isInvalid(err error) bool {
	var inv *note.InvalidSignatureError
	return errors.As(err, &inv)
}
