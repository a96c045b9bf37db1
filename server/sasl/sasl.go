// Package sasl implements the server side of the SASL mechanisms Palisade
// offers: SCRAM-SHA-1, SCRAM-SHA-256 and their -PLUS variants with the
// tls-exporter and tls-server-end-point channel bindings (RFC 5802, RFC 7677,
// RFC 9266, RFC 5929), and PLAIN (RFC 4616).
//
// SCRAM verifies against the stored StoredKey and ServerKey only; the salted
// password is never needed. Usernames are prepared with the PRECIS
// UsernameCaseMapped profile (RFC 8265), the profile of XMPP localparts, so
// "Alice" authenticates as "alice". Passwords are prepared with the PRECIS
// OpaqueString profile.
//
// The package knows nothing of XML: the caller base64-decodes the client's
// data, feeds it to Exchange.Step and encodes the answer into a <challenge/>,
// <success/> or, for a *Failure, a <failure/> with its condition.
package sasl

import (
	"context"
	"errors"

	"github.com/palisade-im/palisade/storage"
)

// Failure conditions of RFC 6120 section 6.5.
const (
	Aborted              = "aborted"
	AccountDisabled      = "account-disabled"
	CredentialsExpired   = "credentials-expired"
	EncryptionRequired   = "encryption-required"
	IncorrectEncoding    = "incorrect-encoding"
	InvalidAuthzid       = "invalid-authzid"
	InvalidMechanism     = "invalid-mechanism"
	MalformedRequest     = "malformed-request"
	MechanismTooWeak     = "mechanism-too-weak"
	NotAuthorized        = "not-authorized"
	TemporaryAuthFailure = "temporary-auth-failure"
)

// maxMessage caps the size of one client message.
const maxMessage = 4096

// Binding is the channel-binding data of the TLS connection the exchange runs
// over. A nil field means that binding type is not available.
type Binding struct {
	// Exporter is the RFC 9266 tls-exporter value.
	Exporter []byte
	// EndPoint is the RFC 5929 tls-server-end-point value.
	EndPoint []byte
}

// available reports whether any channel binding is available.
func (b Binding) available() bool {
	return len(b.Exporter) > 0 || len(b.EndPoint) > 0
}

// CredentialLookup returns the SCRAM credentials of a user (a prepared
// localpart) for a hash name ("SHA-1", "SHA-256"), or an error wrapping
// storage.ErrNotFound when there are none.
type CredentialLookup func(ctx context.Context, username, hash string) (storage.Credentials, error)

// PasswordCheck verifies a plaintext password (PLAIN): ok=false for a wrong
// password or unknown user; err for a backend failure (reported as
// temporary-auth-failure), or a *Failure to answer with its condition.
type PasswordCheck func(ctx context.Context, username, password string) (ok bool, err error)

// Mechanism is a server SASL mechanism; Start begins one exchange.
type Mechanism interface {
	// Name is the mechanism name advertised in <mechanisms/>.
	Name() string
	// Start begins an authentication attempt on a connection with the given
	// channel-binding data.
	Start(b Binding) Exchange
}

// Exchange runs one authentication attempt. It is not safe for concurrent use.
type Exchange interface {
	// Step takes the client's data (already base64-decoded; nil or empty for
	// no initial response) and returns the server's challenge or additional
	// data; done=true with err=nil means success (out may hold success data).
	// Errors are *Failure values; after one the exchange is finished.
	Step(ctx context.Context, in []byte) (out []byte, done bool, err error)
	// Identity is the authenticated username (the prepared localpart) after
	// success.
	Identity() string
	// Authzid is the requested authorization identity, if any, after
	// success. The caller decides whether Identity may act as it.
	Authzid() string
	// Username is the prepared username the client claimed, known once its
	// first message was parsed, success or not (for audit and lockout).
	Username() string
}

// Failure is a SASL failure with its RFC 6120 section 6.5 condition, optional
// human-readable text for the client and an optional underlying error for
// logs (never sent to the client).
type Failure struct {
	Condition string // e.g. "not-authorized"
	Text      string // optional <text/> for the client
	Err       error  // cause, for logs only
}

// Error describes the failure.
func (f *Failure) Error() string {
	s := "sasl: " + f.Condition
	if f.Text != "" {
		s += ": " + f.Text
	}
	if f.Err != nil {
		s += ": " + f.Err.Error()
	}
	return s
}

// Unwrap returns the underlying error.
func (f *Failure) Unwrap() error { return f.Err }

func fail(cond, text string) *Failure {
	return &Failure{Condition: cond, Text: text}
}

// errFinished is the cause reported when Step is called on a finished exchange.
var errFinished = errors.New("exchange already finished")
