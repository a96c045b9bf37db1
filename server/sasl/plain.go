package sasl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"unicode/utf8"

	"golang.org/x/text/secure/precis"
)

// plainMaxField caps each PLAIN field; RFC 4616 requires accepting 255 octets.
const plainMaxField = 1023

type plainMechanism struct {
	check PasswordCheck
}

// Plain returns the PLAIN mechanism (RFC 4616). The authentication identity
// is prepared with UsernameCaseMapped and the password with OpaqueString
// before check sees them. Offering PLAIN only over TLS is the caller's job.
func Plain(check PasswordCheck) Mechanism {
	return &plainMechanism{check: check}
}

// Name returns "PLAIN".
func (m *plainMechanism) Name() string { return "PLAIN" }

// Start begins one PLAIN exchange; channel binding is not used.
func (m *plainMechanism) Start(Binding) Exchange {
	return &plainExchange{check: m.check}
}

type plainExchange struct {
	check     PasswordCheck
	emptySent bool
	finished  bool
	succeeded bool
	username  string
	authzid   string
}

// Step handles the single PLAIN message.
func (e *plainExchange) Step(ctx context.Context, in []byte) ([]byte, bool, error) {
	if e.finished {
		return nil, false, &Failure{Condition: MalformedRequest, Err: errFinished}
	}
	if len(in) == 0 && !e.emptySent {
		e.emptySent = true
		return []byte{}, false, nil
	}
	e.finished = true
	if err := e.verify(ctx, in); err != nil {
		return nil, false, err
	}
	e.succeeded = true
	return nil, true, nil
}

func (e *plainExchange) verify(ctx context.Context, in []byte) error {
	// message = [authzid] UTF8NUL authcid UTF8NUL passwd
	parts := bytes.Split(in, []byte{0})
	if len(parts) != 3 {
		return fail(MalformedRequest, "PLAIN message must have three NUL-separated fields")
	}
	authzid, authcid, passwd := parts[0], parts[1], parts[2]
	switch {
	case len(authcid) == 0 || len(passwd) == 0:
		return fail(MalformedRequest, "empty username or password")
	case len(authzid) > plainMaxField || len(authcid) > plainMaxField || len(passwd) > plainMaxField:
		return fail(MalformedRequest, "PLAIN field too long")
	case !utf8.Valid(authzid) || !utf8.Valid(authcid) || !utf8.Valid(passwd):
		return fail(MalformedRequest, "PLAIN field is not UTF-8")
	}
	user, err := precis.UsernameCaseMapped.String(string(authcid))
	if err != nil {
		return fail(NotAuthorized, "")
	}
	e.username = user
	pass, err := precis.OpaqueString.String(string(passwd))
	if err != nil {
		return fail(NotAuthorized, "")
	}
	if e.check == nil {
		return &Failure{Condition: TemporaryAuthFailure, Err: errors.New("sasl: no password check configured")}
	}
	ok, err := e.check(ctx, user, pass)
	var f *Failure
	if errors.As(err, &f) {
		return f // the check chose the condition (account-disabled, ...)
	}
	if err != nil {
		return &Failure{Condition: TemporaryAuthFailure, Err: fmt.Errorf("sasl: check password: %w", err)}
	}
	if !ok {
		return fail(NotAuthorized, "")
	}
	e.authzid = string(authzid)
	return nil
}

// Identity returns the authenticated username after success.
func (e *plainExchange) Identity() string {
	if !e.succeeded {
		return ""
	}
	return e.username
}

// Authzid returns the requested authorization identity after success.
func (e *plainExchange) Authzid() string {
	if !e.succeeded {
		return ""
	}
	return e.authzid
}

// Username returns the username the client claimed, or "".
func (e *plainExchange) Username() string { return e.username }
