package archive

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/palisade-im/palisade/storage"
	"go.uber.org/zap"
)

// TestOfficerFor: the decrypting key must be one of the officer keys;
// otherwise, or without officer keys, it is refused.
func TestOfficerFor(t *testing.T) {
	a, b := officerKey(t, "alpha"), officerKey(t, "bravo")
	if got, err := OfficerFor(openpgp.EntityList{a}, openpgp.EntityList{b, a}); err != nil || got != a {
		t.Errorf("alpha among the officers: %v, %v", got, err)
	}
	if _, err := OfficerFor(openpgp.EntityList{b}, openpgp.EntityList{a}); err == nil || !strings.Contains(err.Error(), Fingerprint(b)+" is not one of archive.officer_keys") {
		t.Errorf("bravo not configured: %v", err)
	}
	if _, err := OfficerFor(openpgp.EntityList{a}, nil); err == nil {
		t.Error("no officer keys: accepted")
	}
}

// TestCheckAct: a signed act checks with its officer's key; changed
// content, a signature of another act, another signer and a malformed
// signature member are each refused; an unsigned act is no error.
func TestCheckAct(t *testing.T) {
	a, b := officerKey(t, "alpha"), officerKey(t, "bravo")
	desc, _ := json.Marshal(map[string]any{"by": "cli:x", "decrypted": true, "officer": Fingerprint(a), "hits": 3})
	signed, err := signAct(storage.KindSearch, desc, a)
	if err != nil {
		t.Fatal(err)
	}
	if act, err := CheckAct(storage.KindSearch, signed, openpgp.EntityList{b, a}); err != nil || !act.Signed || act.Officer != Fingerprint(a) || !act.Decrypted {
		t.Fatalf("signed act: %+v, %v", act, err)
	}
	if _, err := CheckAct(storage.KindSearch, signed, openpgp.EntityList{b}); !errors.Is(err, ErrUnknownOfficer) {
		t.Errorf("unknown signer: %v", err)
	}
	if _, err := CheckAct(storage.KindExport, signed, openpgp.EntityList{a}); err == nil {
		t.Error("the signature of a search accepted on an export")
	}
	if _, err := CheckAct(storage.KindSearch, bytes.Replace(signed, []byte(`"hits":3`), []byte(`"hits":4`), 1), openpgp.EntityList{a}); err == nil {
		t.Error("changed content accepted")
	}
	// A record naming alpha, signed by bravo.
	forged, err := signAct(storage.KindSearch, desc, b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := CheckAct(storage.KindSearch, forged, openpgp.EntityList{a, b}); err == nil || !strings.Contains(err.Error(), "made by "+Fingerprint(b)) {
		t.Errorf("signer differs from the named officer: %v", err)
	}
	// The signature member not last, or missing.
	if _, err := CheckAct(storage.KindSearch, []byte(`{"officer":"`+Fingerprint(a)+`","hits":3}`), openpgp.EntityList{a}); err == nil {
		t.Error("an officer without signature accepted")
	}
	var v map[string]any
	_ = json.Unmarshal(signed, &v)
	reordered, _ := json.MarshalIndent(v, "", " ") // the same members, encoded otherwise
	if _, err := CheckAct(storage.KindSearch, reordered, openpgp.EntityList{a}); err == nil {
		t.Error("a re-encoded act accepted")
	}
	if act, err := CheckAct(storage.KindExport, []byte(`{"by":"x","decrypted":0}`), nil); err != nil || act.Signed {
		t.Errorf("unsigned act: %+v %v", act, err)
	}
}

// TestVerifyOfficerActs: the journal's signed acts check; a forged one
// (a record naming an officer, signed by someone else) is a problem
// naming its record.
func TestVerifyOfficerActs(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a, b := officerKey(t, "alpha"), officerKey(t, "bravo")
	if _, err := Search(ctx, f.j, SearchOptions{ExportOptions: ExportOptions{Officer: a}}, "cli:x", zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	if _, err := Search(ctx, f.j, SearchOptions{}, "cli:y", zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	desc, _ := json.Marshal(searchRecord{By: "cli:z", Decrypted: true, Officer: Fingerprint(a), SignedAt: time.Now().UTC().Format(time.RFC3339)})
	forged, err := signAct(storage.KindSearch, desc, b)
	if err != nil {
		t.Fatal(err)
	}
	data, err := appendRecord(nil, time.Now(), string(storage.DirLocal), string(storage.KindSearch), "cli:z", "", "", "", forged)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.j.Append(ctx, []storage.JournalRecord{{Time: time.Now(), Direction: storage.DirLocal, Kind: storage.KindSearch, From: "cli:z", Data: data}}); err != nil {
		t.Fatal(err)
	}
	rep, err := VerifyOfficerActs(ctx, f.j, openpgp.EntityList{a})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Signed != 1 || rep.Unsigned != 1 || len(rep.Problems) != 1 || rep.Problems[0].Index != 2 {
		t.Fatalf("report: %+v", rep)
	}
}
