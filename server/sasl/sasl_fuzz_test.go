package sasl

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/secure/precis"

	"github.com/palisade-im/palisade/storage"
)

// The fuzz targets of this file drive whole exchanges with a fixed test
// account, alice / "pencil" (PBKDF2 with one iteration, so that an
// execution costs microseconds), and check what must hold whatever the
// client sends: no panic; every error a *Failure with an RFC 6120 condition;
// no success unless the client proved knowledge of the right password; the
// identity reported is the account that was proven; a finished exchange
// stays finished. Their seed corpora are under testdata/fuzz; go test runs
// them as regression tests.

const (
	fuzzUser     = "alice"
	fuzzPassword = "pencil"
	fuzzNonce    = "srvNONCE0123456789"
)

// fuzzConditions are the conditions an exchange may fail with.
var fuzzConditions = []string{
	Aborted, AccountDisabled, CredentialsExpired, EncryptionRequired, IncorrectEncoding,
	InvalidAuthzid, InvalidMechanism, MalformedRequest, MechanismTooWeak, NotAuthorized,
	TemporaryAuthFailure,
}

// checkFailure fails t unless err is a *Failure with a known condition.
func checkFailure(t *testing.T, step string, err error) *Failure {
	t.Helper()
	var f *Failure
	if !errors.As(err, &f) {
		t.Fatalf("%s: error %T is not a *Failure: %v", step, err, err)
	}
	if !slices.Contains(fuzzConditions, f.Condition) {
		t.Fatalf("%s: unknown condition %q", step, f.Condition)
	}
	return f
}

// checkFinished fails t unless a further Step on a finished exchange fails
// with malformed-request and changes nothing.
func checkFinished(t *testing.T, ex Exchange, identity string) {
	t.Helper()
	out, done, err := ex.Step(context.Background(), []byte("n,,n=alice,r=x"))
	if done || out != nil || checkFailure(t, "step after the end", err).Condition != MalformedRequest {
		t.Fatalf("step after the end: out=%q done=%v err=%v", out, done, err)
	}
	if ex.Identity() != identity {
		t.Fatalf("identity changed after the end: %q, want %q", ex.Identity(), identity)
	}
}

// fuzzSCRAMAccount holds the test account's credentials and salted
// passwords per hash.
type fuzzSCRAMAccount struct {
	creds  map[string]storage.Credentials
	salted map[string][]byte
}

func newFuzzSCRAMAccount(f *testing.F) *fuzzSCRAMAccount {
	a := &fuzzSCRAMAccount{creds: map[string]storage.Credentials{}, salted: map[string][]byte{}}
	for _, h := range []string{SHA1, SHA256} {
		salt := []byte("fuzz-salt-" + h)
		c, err := deriveCredentials(h, fuzzPassword, salt, 1)
		if err != nil {
			f.Fatal(err)
		}
		fn, _ := hashFunc(h)
		s, err := saltPassword(fn, fuzzPassword, salt, 1)
		if err != nil {
			f.Fatal(err)
		}
		a.creds[h], a.salted[h] = c, s
	}
	return a
}

// lookup knows alice; "broken" is a backend failure, everyone else unknown.
func (a *fuzzSCRAMAccount) lookup(_ context.Context, u, h string) (storage.Credentials, error) {
	switch u {
	case fuzzUser:
		return a.creds[h], nil
	case "broken":
		return storage.Credentials{}, errors.New("backend down")
	}
	return storage.Credentials{}, storage.ErrNotFound
}

// FuzzSCRAM runs a SCRAM exchange with a fuzzed client-first-message and
// either a fuzzed client-final-message (mode bit 1 clear) or one the test
// signs itself with a fuzzed password over the fuzzed extensions in final
// (mode bit 1 set). Mode bits 2-3 pick the mechanism, bit 4 whether the
// connection has channel-binding data.
func FuzzSCRAM(f *testing.F) {
	acct := newFuzzSCRAMAccount(f)
	type mech struct {
		m    *scramMechanism
		hash string
	}
	var mechs []mech
	for _, c := range []struct {
		hash string
		plus bool
	}{{SHA256, false}, {SHA1, false}, {SHA256, true}, {SHA1, true}} {
		m := SCRAM(c.hash, c.plus, acct.lookup).(*scramMechanism)
		m.nonce = func() (string, error) { return fuzzNonce, nil }
		mechs = append(mechs, mech{m, c.hash})
	}
	f.Add([]byte("n,,n=alice,r=rOprNGfwEbeRWgbNEkqO"), []byte(""), fuzzPassword, byte(0x02))
	f.Add([]byte("n,a=bob@localhost,n=alice,r=abc"), []byte("c=biws,r=abc"+fuzzNonce+",p=AAAA"), "", byte(0x00))

	f.Fuzz(func(t *testing.T, first, final []byte, password string, mode byte) {
		mc := mechs[int(mode>>2)&3]
		var b Binding
		if mode&0x10 != 0 {
			b = testBinding
		}
		ctx := context.Background()
		ex := mc.m.Start(b)

		out, done, err := ex.Step(ctx, first)
		if done {
			t.Fatalf("done after the client-first-message: out=%q", out)
		}
		if err != nil {
			checkFailure(t, "client-first", err)
			if out != nil || ex.Identity() != "" || ex.Authzid() != "" {
				t.Fatalf("failed client-first: out=%q identity=%q authzid=%q", out, ex.Identity(), ex.Authzid())
			}
			checkFinished(t, ex, "")
			return
		}
		if len(first) == 0 {
			// No initial response: an empty challenge, then final is the
			// client-first-message, which must not be empty.
			if out == nil || len(out) != 0 {
				t.Fatalf("challenge %q for an empty initial response", out)
			}
			out, done, err = ex.Step(ctx, final)
			switch {
			case done:
				t.Fatalf("done after the client-first-message: out=%q", out)
			case err != nil:
				checkFailure(t, "client-first after an empty challenge", err)
			case len(final) == 0:
				t.Fatalf("second empty message accepted: out=%q", out)
			}
			return
		}

		// server-first-message = r=<client nonce><server nonce>,s=<salt>,i=<count>
		msg := string(first)
		gs2End := strings.Index(msg, ",")
		gs2End += 1 + strings.Index(msg[gs2End+1:], ",")
		gs2Header, bare := msg[:gs2End+1], msg[gs2End+1:]
		fields := strings.Split(bare, ",")
		clientNonce := fields[1][2:]
		creds := acct.creds[mc.hash]
		known := ex.Username() == fuzzUser
		if known {
			want := "r=" + clientNonce + fuzzNonce + ",s=" + base64.StdEncoding.EncodeToString(creds.Salt) + ",i=1"
			if string(out) != want {
				t.Fatalf("server-first = %q, want %q", out, want)
			}
		} else if !strings.HasPrefix(string(out), "r="+clientNonce+fuzzNonce+",s=") || !strings.HasSuffix(string(out), ",i=4096") {
			t.Fatalf("server-first for unknown user %q = %q", ex.Username(), out)
		}
		if u := ex.Username(); u != "" {
			if p, err := precis.UsernameCaseMapped.String(u); err != nil || p != u {
				t.Fatalf("Username %q is not prepared", u)
			}
		}
		serverFirst := string(out)

		var cbData []byte
		switch {
		case strings.HasPrefix(gs2Header, "p="+cbExporter+","):
			cbData = b.Exporter
		case strings.HasPrefix(gs2Header, "p="+cbEndPoint+","):
			cbData = b.EndPoint
		}
		fn := mc.m.fn
		// sign returns withoutProof + ",p=" + the proof alice's password
		// (salted) gives, and the server signature that goes with it.
		sign := func(salted []byte, withoutProof string) (string, string) {
			authMessage := []byte(bare + "," + serverFirst + "," + withoutProof)
			clientKey := hmacSum(fn, salted, []byte("Client Key"))
			storedKey, serverKey := keys(fn, salted)
			proof := make([]byte, len(clientKey))
			subtle.XORBytes(proof, clientKey, hmacSum(fn, storedKey, authMessage))
			return withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof),
				"v=" + base64.StdEncoding.EncodeToString(hmacSum(fn, serverKey, authMessage))
		}

		var clientFinal, wantSig string
		signed := mode&0x02 != 0
		if signed {
			withoutProof := "c=" + base64.StdEncoding.EncodeToString(append([]byte(gs2Header), cbData...)) + ",r=" + clientNonce + fuzzNonce
			if len(final) > 0 {
				withoutProof += "," + string(final)
			}
			salted, err := saltPassword(fn, password, creds.Salt, 1)
			if err != nil {
				salted = make([]byte, fn().Size()) // an unpreparable password proves nothing
			}
			clientFinal, wantSig = sign(salted, withoutProof)
		} else {
			clientFinal = string(final)
		}

		out, done, err = ex.Step(ctx, []byte(clientFinal))
		if err != nil {
			checkFailure(t, "client-final", err)
			if done || out != nil || ex.Identity() != "" || ex.Authzid() != "" {
				t.Fatalf("failed client-final: out=%q done=%v identity=%q authzid=%q", out, done, ex.Identity(), ex.Authzid())
			}
			// A correctly signed message from alice with the right password
			// and no extensions must succeed.
			if signed && known && len(final) == 0 {
				if ok, _ := VerifyPassword(mc.hash, creds, password); ok {
					t.Fatalf("right password refused: %v", err)
				}
			}
			checkFinished(t, ex, "")
			return
		}
		if !done {
			t.Fatalf("client-final neither failed nor finished: out=%q", out)
		}

		// Success: only alice, only with the proof her password gives.
		if !known || ex.Identity() != fuzzUser {
			t.Fatalf("success as %q (claimed %q)", ex.Identity(), ex.Username())
		}
		i := strings.LastIndex(clientFinal, ",p=")
		rightFinal, rightSig := sign(acct.salted[mc.hash], clientFinal[:i])
		if clientFinal != rightFinal {
			t.Fatalf("success with a wrong proof: %q, want %q", clientFinal, rightFinal)
		}
		if string(out) != rightSig || (signed && string(out) != wantSig) {
			t.Fatalf("server-final = %q, want %q", out, rightSig)
		}
		if signed {
			if ok, _ := VerifyPassword(mc.hash, creds, password); !ok {
				t.Fatalf("success with the wrong password %q", password)
			}
		}
		// The authzid reported is the one the client asked for, decoded.
		if a, ok := strings.CutPrefix(gs2Header[strings.Index(gs2Header, ",")+1:len(gs2Header)-1], "a="); ok {
			want, _ := decodeSaslname(a)
			if ex.Authzid() != want {
				t.Fatalf("Authzid = %q, want %q", ex.Authzid(), want)
			}
		} else if ex.Authzid() != "" {
			t.Fatalf("Authzid = %q without a= in %q", ex.Authzid(), gs2Header)
		}
		checkFinished(t, ex, fuzzUser)
	})
}

// FuzzPLAIN runs a PLAIN exchange with a fuzzed message (or, when it is
// empty, an empty challenge and then the second input) against a check that
// verifies alice's password with the SCRAM verifier, refuses "disabled" with
// account-disabled and fails for "broken" as a backend would.
func FuzzPLAIN(f *testing.F) {
	acct := newFuzzSCRAMAccount(f)
	errDown := errors.New("backend down")
	// plain returns the mechanism and the usernames its check was called with.
	plain := func() (Mechanism, *[]string) {
		var calls []string
		return Plain(func(_ context.Context, u, p string) (bool, error) {
			calls = append(calls, u)
			switch u {
			case fuzzUser:
				return VerifyPassword(SHA256, acct.creds[SHA256], p)
			case "disabled":
				return false, &Failure{Condition: AccountDisabled}
			case "broken":
				return false, errDown
			}
			return false, nil
		}), &calls
	}
	wantPass, _ := precis.OpaqueString.String(fuzzPassword)
	f.Add([]byte("\x00alice\x00pencil"), []byte(nil))
	f.Add([]byte(nil), []byte("bob@localhost\x00alice\x00pencil"))

	f.Fuzz(func(t *testing.T, in, second []byte) {
		m, callsp := plain()
		ctx := context.Background()
		ex := m.Start(Binding{})
		msg := in
		out, done, err := ex.Step(ctx, in)
		if len(in) == 0 {
			if err != nil || done || out == nil || len(out) != 0 {
				t.Fatalf("empty initial response: out=%q done=%v err=%v", out, done, err)
			}
			msg = second
			out, done, err = ex.Step(ctx, second)
		}
		if out != nil {
			t.Fatalf("PLAIN answered %q", out)
		}

		// What RFC 4616 says the message means.
		parts := bytes.Split(msg, []byte{0})
		wellFormed := len(parts) == 3 && len(parts[1]) > 0 && len(parts[2]) > 0 &&
			len(parts[0]) <= plainMaxField && len(parts[1]) <= plainMaxField && len(parts[2]) <= plainMaxField &&
			utf8Valid(parts...)
		var user, pass string
		var userErr, passErr error
		if wellFormed {
			user, userErr = precis.UsernameCaseMapped.String(string(parts[1]))
			pass, passErr = precis.OpaqueString.String(string(parts[2]))
		}
		right := wellFormed && userErr == nil && passErr == nil && user == fuzzUser && pass == wantPass

		if err != nil {
			fl := checkFailure(t, "PLAIN", err)
			if done || ex.Identity() != "" || ex.Authzid() != "" {
				t.Fatalf("failed exchange: done=%v identity=%q authzid=%q", done, ex.Identity(), ex.Authzid())
			}
			switch {
			case right:
				t.Fatalf("right password refused: %v", err)
			case !wellFormed && fl.Condition != MalformedRequest:
				t.Fatalf("malformed message %q answered %q", msg, fl.Condition)
			case wellFormed && userErr == nil && passErr == nil && user == "disabled" && fl.Condition != AccountDisabled:
				t.Fatalf("disabled account answered %v", err)
			case wellFormed && userErr == nil && passErr == nil && user == "broken" && (fl.Condition != TemporaryAuthFailure || !errors.Is(err, errDown)):
				t.Fatalf("backend failure answered %v", err)
			}
			if calls := *callsp; len(calls) > 0 && (!wellFormed || userErr != nil || passErr != nil || calls[0] != user) {
				t.Fatalf("check called with %q for %q", calls, msg)
			}
			checkFinished(t, ex, "")
			return
		}
		if !done {
			t.Fatalf("neither done nor failed on %q", msg)
		}
		if !right {
			t.Fatalf("success for %q", msg)
		}
		if ex.Identity() != fuzzUser || ex.Authzid() != string(parts[0]) {
			t.Fatalf("Identity %q Authzid %q for %q", ex.Identity(), ex.Authzid(), msg)
		}
		checkFinished(t, ex, fuzzUser)
	})
}

func utf8Valid(parts ...[]byte) bool {
	for _, p := range parts {
		if !utf8.Valid(p) {
			return false
		}
	}
	return true
}
