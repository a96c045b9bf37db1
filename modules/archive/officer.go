package archive

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/palisade-im/palisade/storage"
)

// Officer acts (exports and searches that decrypt) are signed with the
// officer's private key, the one that decrypts: the record names a proven
// officer, not a free-text --by.
//
// The record's content is the act's JSON description with two members
// more: "officer" (the officer key's primary fingerprint, upper-case hex)
// and "signed_at" inside the description, and, last, "officer_sig": the
// base64 of an OpenPGP detached signature (binary) made by that key over
//
//	"palisade officer act v1\n" + kind + "\n" + D
//
// where D is the content with its final `,"officer_sig":"..."` member
// removed (the description as signed, ending in "}"). A verifier thus
// never re-encodes anything: it cuts the member and checks the bytes.

// officerSigMember starts the signature member, always the content's last.
const officerSigMember = `,"officer_sig":"`

// actMessage is what an officer signs for an act of kind with description
// desc.
func actMessage(kind storage.RecordKind, desc []byte) []byte {
	msg := make([]byte, 0, 32+len(kind)+len(desc))
	msg = append(msg, "palisade officer act v1\n"...)
	msg = append(msg, kind...)
	msg = append(msg, '\n')
	return append(msg, desc...)
}

// Fingerprint is an OpenPGP key's primary fingerprint, upper-case hex.
func Fingerprint(e *openpgp.Entity) string {
	return fmt.Sprintf("%X", e.PrimaryKey.Fingerprint)
}

// OfficerFor returns the entity of decryptKey (an officer's private key)
// whose primary key is one of the configured officer public keys
// (archive.officer_keys): the officer who decrypts, and signs the act. A
// key that is none of them is refused, before anything is decrypted.
func OfficerFor(decryptKey, officers openpgp.EntityList) (*openpgp.Entity, error) {
	if len(officers) == 0 {
		return nil, errors.New("archive: no archive.officer_keys are configured: a decrypting act must be made with one of them")
	}
	known := map[string]bool{}
	for _, o := range officers {
		known[Fingerprint(o)] = true
	}
	var tried []string
	for _, e := range decryptKey {
		fpr := Fingerprint(e)
		if !known[fpr] {
			tried = append(tried, fpr)
			continue
		}
		if _, ok := e.SigningKey(time.Now()); !ok {
			return nil, fmt.Errorf("archive: officer key %s has no valid signing key: the act could not be signed", fpr)
		}
		return e, nil
	}
	return nil, fmt.Errorf("archive: the decryption key %s is not one of archive.officer_keys: refused", strings.Join(tried, ", "))
}

// signAct signs desc (a JSON object, the act's description) as an act of
// kind by officer and returns the record content: desc with the
// officer_sig member appended.
func signAct(kind storage.RecordKind, desc []byte, officer *openpgp.Entity) ([]byte, error) {
	if len(desc) < 2 || desc[len(desc)-1] != '}' {
		return nil, errors.New("archive: sign act: the description is not a JSON object")
	}
	var sig bytes.Buffer
	if err := openpgp.DetachSign(&sig, officer, bytes.NewReader(actMessage(kind, desc)), pgpConfig); err != nil {
		return nil, fmt.Errorf("archive: sign act: %w", err)
	}
	out := make([]byte, 0, len(desc)+len(officerSigMember)+base64.StdEncoding.EncodedLen(sig.Len())+2)
	out = append(out, desc[:len(desc)-1]...)
	out = append(out, officerSigMember...)
	out = base64.StdEncoding.AppendEncode(out, sig.Bytes())
	return append(out, `"}`...), nil
}

// OfficerAct is what CheckAct found in an act's content.
type OfficerAct struct {
	// Signed tells that the content carries an officer signature.
	Signed bool
	// Officer is the fingerprint the content names.
	Officer string
	// Decrypted tells that the act decrypted records.
	Decrypted bool
}

// ErrUnknownOfficer is CheckAct's error for a signature by a key that is
// not one of the officer keys given.
var ErrUnknownOfficer = errors.New("signed by a key that is not one of archive.officer_keys")

// CheckAct checks the officer signature of an act's record content
// (kind export or search) against the officer public keys. An unsigned
// act is no error (acts without decryption are recorded under --by); a
// signature that does not verify, or one by a key not among officers
// (ErrUnknownOfficer), is.
func CheckAct(kind storage.RecordKind, content []byte, officers openpgp.EntityList) (OfficerAct, error) {
	var v struct {
		Officer   string `json:"officer"`
		Sig       string `json:"officer_sig"`
		Decrypted any    `json:"decrypted"`
	}
	if err := json.Unmarshal(content, &v); err != nil {
		return OfficerAct{}, fmt.Errorf("act content: %w", err)
	}
	act := OfficerAct{Officer: v.Officer}
	switch d := v.Decrypted.(type) {
	case bool:
		act.Decrypted = d
	case float64:
		act.Decrypted = d > 0
	}
	if v.Sig == "" && v.Officer == "" {
		return act, nil
	}
	act.Signed = true
	suffix := officerSigMember + v.Sig + `"}`
	if v.Sig == "" || !bytes.HasSuffix(content, []byte(suffix)) {
		return act, errors.New("officer signature: the content does not end with its officer_sig member")
	}
	sig, err := base64.StdEncoding.DecodeString(v.Sig)
	if err != nil {
		return act, fmt.Errorf("officer signature: %w", err)
	}
	desc := append(bytes.Clone(content[:len(content)-len(suffix)]), '}')
	signer, err := openpgp.CheckDetachedSignature(officers, bytes.NewReader(actMessage(kind, desc)), bytes.NewReader(sig), pgpConfig)
	if errors.Is(err, pgperrors.ErrUnknownIssuer) {
		return act, fmt.Errorf("officer %s: %w", v.Officer, ErrUnknownOfficer)
	}
	if err != nil {
		return act, fmt.Errorf("officer signature of %s does not verify: %w", v.Officer, err)
	}
	if got := Fingerprint(signer); got != v.Officer {
		return act, fmt.Errorf("officer signature made by %s, the record names %s", got, v.Officer)
	}
	return act, nil
}

// OfficerReport is the result of VerifyOfficerActs.
type OfficerReport struct {
	// Signed counts the acts with a valid officer signature; Unsigned the
	// acts without one (recorded under --by).
	Signed, Unsigned int
	// UnsignedDecrypting are the seqs of acts that decrypted without an
	// officer signature (journaled before acts were signed).
	UnsignedDecrypting []int64
	Problems           []Problem
}

// VerifyOfficerActs checks the officer signature of every export and
// search record of the journal against the officer public keys: a bad
// signature, or one by an unknown signer, is a problem naming the record.
func VerifyOfficerActs(ctx context.Context, j storage.Journal, officers openpgp.EntityList) (OfficerReport, error) {
	var rep OfficerReport
	head, err := j.TreeHead(ctx)
	if err != nil {
		return rep, err
	}
	err = j.Records(ctx, 0, head.Size, func(r storage.JournalRecord) error {
		if (r.Kind != storage.KindExport && r.Kind != storage.KindSearch) || r.Purged {
			return nil
		}
		rec, err := DecodeRecord(r.Data)
		if err != nil {
			return nil // Verify reports records that do not decode
		}
		act, err := CheckAct(r.Kind, []byte(rec.Content), officers)
		switch {
		case err != nil:
			if len(rep.Problems) < maxProblems {
				rep.Problems = append(rep.Problems, Problem{Index: r.Seq, Msg: fmt.Sprintf("%s act: %v", r.Kind, err)})
			}
		case act.Signed:
			rep.Signed++
		default:
			rep.Unsigned++
			if act.Decrypted {
				rep.UnsignedDecrypting = append(rep.UnsignedDecrypting, r.Seq)
			}
		}
		return nil
	})
	return rep, err
}

// appendSignedEvent is appendEvent for an act signed by officer.
func appendSignedEvent(ctx context.Context, j storage.Journal, kind storage.RecordKind, actor string, v any, officer *openpgp.Entity) (int64, error) {
	desc, err := json.Marshal(v)
	if err != nil {
		return 0, err
	}
	content, err := signAct(kind, desc, officer)
	if err != nil {
		return 0, err
	}
	return appendEventContent(ctx, j, kind, actor, content)
}
