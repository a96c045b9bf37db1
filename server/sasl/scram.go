package sasl

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/secure/precis"

	"github.com/palisade-im/palisade/storage"
)

// serverNonceLen is the number of random bytes in the server's nonce part.
const serverNonceLen = 24

// Channel-binding type names (RFC 9266, RFC 5929).
const (
	cbExporter = "tls-exporter"
	cbEndPoint = "tls-server-end-point"
)

type scramMechanism struct {
	name   string
	hash   string
	fn     func() hash.Hash
	plus   bool
	lookup CredentialLookup
	// nonce, when set, replaces the random server nonce part (tests only).
	nonce func() (string, error)
}

// SCRAM returns the server mechanism SCRAM-<hash> or, with plus,
// SCRAM-<hash>-PLUS, for hash "SHA-1" or "SHA-256"; it panics on any other
// hash name. Credentials come from lookup; an unknown user is answered with a
// stable fake salt and fails at the proof step exactly like a wrong password.
//
// Channel binding follows RFC 5802 section 6: a -PLUS exchange requires the
// client to bind to "tls-exporter" or "tls-server-end-point" with data present
// in the Binding. A plain exchange fails when the client says "y" (it supports
// binding but believes the server does not) while its Binding has data, so the
// caller must pass a Binding with data exactly when it advertises -PLUS
// mechanisms on the connection, and an empty Binding otherwise.
func SCRAM(hash string, plus bool, lookup CredentialLookup) Mechanism {
	fn, err := hashFunc(hash)
	if err != nil {
		panic(err)
	}
	name := "SCRAM-" + hash
	if plus {
		name += "-PLUS"
	}
	return &scramMechanism{name: name, hash: hash, fn: fn, plus: plus, lookup: lookup}
}

// Name returns the mechanism name, e.g. "SCRAM-SHA-256-PLUS".
func (m *scramMechanism) Name() string { return m.name }

// Start begins one SCRAM exchange.
func (m *scramMechanism) Start(b Binding) Exchange {
	return &scramExchange{m: m, b: b}
}

type scramState int

const (
	scramInit      scramState = iota // expecting client-first-message
	scramEmptySent                   // sent an empty challenge, expecting client-first-message
	scramFirstDone                   // sent server-first-message, expecting client-final-message
	scramSucceeded                   // done, successfully
	scramFailed                      // done, failed
)

type scramExchange struct {
	m     *scramMechanism
	b     Binding
	state scramState

	gs2Header       string // including the trailing comma
	cbData          []byte
	clientFirstBare string
	serverFirst     string
	nonce           string // client nonce + server nonce
	creds           storage.Credentials
	unknown         bool // the user does not exist: fail at the proof step
	username        string
	authzid         string
}

// Step advances the exchange.
func (e *scramExchange) Step(ctx context.Context, in []byte) ([]byte, bool, error) {
	switch e.state {
	case scramInit, scramEmptySent:
		if len(in) == 0 {
			if e.state == scramInit {
				e.state = scramEmptySent
				return []byte{}, false, nil
			}
			return e.fail(fail(MalformedRequest, "empty client-first-message"))
		}
		out, err := e.clientFirst(ctx, in)
		if err != nil {
			return e.fail(err)
		}
		e.state = scramFirstDone
		return out, false, nil
	case scramFirstDone:
		out, err := e.clientFinal(in)
		if err != nil {
			return e.fail(err)
		}
		e.state = scramSucceeded
		return out, true, nil
	default:
		return nil, false, &Failure{Condition: MalformedRequest, Err: errFinished}
	}
}

func (e *scramExchange) fail(err error) ([]byte, bool, error) {
	e.state = scramFailed
	var f *Failure
	if !errors.As(err, &f) {
		err = &Failure{Condition: TemporaryAuthFailure, Err: err}
	}
	return nil, false, err
}

// Identity returns the authenticated username after success.
func (e *scramExchange) Identity() string {
	if e.state != scramSucceeded {
		return ""
	}
	return e.username
}

// Authzid returns the requested authorization identity after success.
func (e *scramExchange) Authzid() string {
	if e.state != scramSucceeded {
		return ""
	}
	return e.authzid
}

// checkMessage applies the limits common to both client messages.
func checkMessage(in []byte, what string) error {
	switch {
	case len(in) > maxMessage:
		return fail(MalformedRequest, what+" too long")
	case !utf8.Valid(in):
		return fail(MalformedRequest, what+" is not UTF-8")
	case strings.IndexByte(string(in), 0) >= 0:
		return fail(MalformedRequest, what+" contains NUL")
	}
	return nil
}

// clientFirst handles the client-first-message and returns the
// server-first-message.
func (e *scramExchange) clientFirst(ctx context.Context, in []byte) ([]byte, error) {
	if err := checkMessage(in, "client-first-message"); err != nil {
		return nil, err
	}
	msg := string(in)

	// gs2-header = gs2-cbind-flag "," [ authzid ] ","
	flag, rest, ok1 := strings.Cut(msg, ",")
	authz, bare, ok2 := strings.Cut(rest, ",")
	if !ok1 || !ok2 {
		return nil, fail(MalformedRequest, "missing GS2 header")
	}
	e.gs2Header = msg[:len(flag)+len(authz)+2]
	if authz != "" {
		v, ok := strings.CutPrefix(authz, "a=")
		if !ok {
			return nil, fail(MalformedRequest, "invalid GS2 header")
		}
		if e.authzid, ok = decodeSaslname(v); !ok {
			return nil, fail(MalformedRequest, "invalid authzid encoding")
		}
	}
	if err := e.channelBinding(flag); err != nil {
		return nil, err
	}

	// client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]
	e.clientFirstBare = bare
	fields := strings.Split(bare, ",")
	if strings.HasPrefix(fields[0], "m=") {
		return nil, fail(MalformedRequest, "unsupported mandatory extension")
	}
	if len(fields) < 2 || !strings.HasPrefix(fields[0], "n=") || !strings.HasPrefix(fields[1], "r=") {
		return nil, fail(MalformedRequest, "invalid client-first-message")
	}
	if err := checkExtensions(fields[2:]); err != nil {
		return nil, err
	}
	rawUser, ok := decodeSaslname(fields[0][2:])
	if !ok {
		return nil, fail(MalformedRequest, "invalid username encoding")
	}
	clientNonce := fields[1][2:]
	if !validNonce(clientNonce) {
		return nil, fail(MalformedRequest, "invalid nonce")
	}

	if err := e.credentials(ctx, rawUser); err != nil {
		return nil, err
	}

	serverNonce, err := e.serverNonce()
	if err != nil {
		return nil, err
	}
	e.nonce = clientNonce + serverNonce
	e.serverFirst = "r=" + e.nonce +
		",s=" + base64.StdEncoding.EncodeToString(e.creds.Salt) +
		",i=" + strconv.Itoa(e.creds.Iterations)
	return []byte(e.serverFirst), nil
}

// channelBinding applies the RFC 5802 section 6 rules to the gs2-cbind-flag
// and selects the channel-binding data.
func (e *scramExchange) channelBinding(flag string) error {
	switch {
	case flag == "n":
		if e.m.plus {
			return fail(MalformedRequest, e.m.name+" requires channel binding")
		}
	case flag == "y":
		if e.m.plus {
			return fail(MalformedRequest, e.m.name+" requires channel binding")
		}
		if e.b.available() {
			return fail(NotAuthorized, "channel binding downgrade detected")
		}
	case strings.HasPrefix(flag, "p="):
		name := flag[2:]
		if !validCBName(name) {
			return fail(MalformedRequest, "invalid channel binding type")
		}
		if !e.m.plus {
			return fail(MalformedRequest, "channel binding requires a -PLUS mechanism")
		}
		switch name {
		case cbExporter:
			e.cbData = e.b.Exporter
		case cbEndPoint:
			e.cbData = e.b.EndPoint
		}
		if len(e.cbData) == 0 {
			return fail(MalformedRequest, "unsupported channel binding type")
		}
	default:
		return fail(MalformedRequest, "invalid GS2 header")
	}
	return nil
}

// credentials prepares the username and fetches its credentials, or fake
// ones for a user that cannot exist or does not.
func (e *scramExchange) credentials(ctx context.Context, rawUser string) error {
	user, err := precis.UsernameCaseMapped.String(rawUser)
	if err != nil {
		// No account can have this name; carry on as for an unknown user.
		e.unknown = true
		e.creds = fakeCredentials(e.m.hash, rawUser)
		return nil
	}
	e.username = user
	if e.m.lookup == nil {
		return &Failure{Condition: TemporaryAuthFailure, Err: errors.New("sasl: no credential lookup configured")}
	}
	creds, err := e.m.lookup(ctx, user, e.m.hash)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		e.unknown = true
		e.creds = fakeCredentials(e.m.hash, user)
		return nil
	case err != nil:
		return &Failure{Condition: TemporaryAuthFailure, Err: fmt.Errorf("sasl: look up %s credentials: %w", e.m.hash, err)}
	}
	if err := checkCredentials(creds, e.m.fn().Size()); err != nil {
		return &Failure{Condition: TemporaryAuthFailure, Err: err}
	}
	e.creds = creds
	return nil
}

func (e *scramExchange) serverNonce() (string, error) {
	if e.m.nonce != nil {
		return e.m.nonce()
	}
	b := make([]byte, serverNonceLen)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("sasl: generate nonce: %w", err)
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// clientFinal verifies the client-final-message and returns the
// server-final-message.
func (e *scramExchange) clientFinal(in []byte) ([]byte, error) {
	if err := checkMessage(in, "client-final-message"); err != nil {
		return nil, err
	}
	msg := string(in)

	// client-final-message = channel-binding "," nonce ["," extensions] "," proof
	i := strings.LastIndex(msg, ",p=")
	if i < 0 {
		return nil, fail(MalformedRequest, "missing proof")
	}
	withoutProof, proofB64 := msg[:i], msg[i+3:]
	fields := strings.Split(withoutProof, ",")
	if len(fields) < 2 || !strings.HasPrefix(fields[0], "c=") || !strings.HasPrefix(fields[1], "r=") || strings.Contains(proofB64, ",") {
		return nil, fail(MalformedRequest, "invalid client-final-message")
	}
	if err := checkExtensions(fields[2:]); err != nil {
		return nil, err
	}
	proof, err := base64.StdEncoding.Strict().DecodeString(proofB64)
	if err != nil || len(proof) != e.m.fn().Size() {
		return nil, fail(MalformedRequest, "invalid proof")
	}

	cb := make([]byte, 0, len(e.gs2Header)+len(e.cbData))
	cb = append(append(cb, e.gs2Header...), e.cbData...)
	if subtle.ConstantTimeCompare([]byte(fields[0][2:]), []byte(base64.StdEncoding.EncodeToString(cb))) != 1 {
		return nil, fail(NotAuthorized, "channel binding mismatch")
	}
	if fields[1][2:] != e.nonce {
		return nil, fail(NotAuthorized, "nonce mismatch")
	}

	authMessage := []byte(e.clientFirstBare + "," + e.serverFirst + "," + withoutProof)
	clientSig := hmacSum(e.m.fn, e.creds.StoredKey, authMessage)
	clientKey := make([]byte, len(proof))
	subtle.XORBytes(clientKey, proof, clientSig)
	h := e.m.fn()
	h.Write(clientKey)
	match := subtle.ConstantTimeCompare(h.Sum(nil), e.creds.StoredKey) == 1
	serverSig := hmacSum(e.m.fn, e.creds.ServerKey, authMessage)
	if !match || e.unknown {
		return nil, fail(NotAuthorized, "")
	}
	return []byte("v=" + base64.StdEncoding.EncodeToString(serverSig)), nil
}

// decodeSaslname reverses the RFC 5802 saslname escaping (=2C for ",", =3D
// for "="); it fails on an empty name or any other "=".
func decodeSaslname(s string) (string, bool) {
	if s == "" {
		return "", false
	}
	if !strings.Contains(s, "=") {
		return s, true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '=' {
			b.WriteByte(s[i])
			continue
		}
		switch {
		case strings.HasPrefix(s[i:], "=2C"):
			b.WriteByte(',')
		case strings.HasPrefix(s[i:], "=3D"):
			b.WriteByte('=')
		default:
			return "", false
		}
		i += 2
	}
	return b.String(), true
}

// validNonce reports whether s is a non-empty run of printable ASCII other
// than ",".
func validNonce(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e || s[i] == ',' {
			return false
		}
	}
	return true
}

// validCBName reports whether s is a cb-name: 1*(ALPHA / DIGIT / "." / "-").
func validCBName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// checkExtensions validates optional attr-val extensions, which are ignored.
func checkExtensions(fields []string) error {
	for _, f := range fields {
		if len(f) < 2 || f[1] != '=' || !(f[0] >= 'a' && f[0] <= 'z' || f[0] >= 'A' && f[0] <= 'Z') {
			return fail(MalformedRequest, "invalid attribute")
		}
	}
	return nil
}

// Username returns the username the client claimed, or "".
func (e *scramExchange) Username() string { return e.username }
