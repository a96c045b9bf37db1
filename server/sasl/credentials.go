package sasl

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"hash"
	"sync"

	"golang.org/x/text/secure/precis"

	"github.com/palisade-im/palisade/storage"
)

// DefaultIterations is the PBKDF2 iteration count for new credentials, the
// minimum RFC 7677 recommends.
const DefaultIterations = 4096

// Hash names used as keys of storage.User.SCRAM.
const (
	SHA1   = "SHA-1"
	SHA256 = "SHA-256"
)

// saltLen is the length of generated salts.
const saltLen = 16

// hashFunc returns the hash constructor for a SCRAM hash name.
func hashFunc(name string) (func() hash.Hash, error) {
	switch name {
	case SHA1:
		return sha1.New, nil
	case SHA256:
		return sha256.New, nil
	}
	return nil, fmt.Errorf("sasl: unsupported hash %q", name)
}

// NewCredentials derives SCRAM credentials for password with the named hash
// ("SHA-1" or "SHA-256"), a random 16-byte salt and the given PBKDF2 iteration
// count (DefaultIterations when 0). The password is prepared with the PRECIS
// OpaqueString profile; an empty or invalid password is an error.
func NewCredentials(hash string, password string, iterations int) (storage.Credentials, error) {
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return storage.Credentials{}, fmt.Errorf("sasl: generate salt: %w", err)
	}
	return deriveCredentials(hash, password, salt, iterations)
}

// DeriveAll derives credentials for every supported hash, keyed by hash name
// as storage.User.SCRAM expects, each with its own salt.
func DeriveAll(password string, iterations int) (map[string]storage.Credentials, error) {
	out := make(map[string]storage.Credentials, 2)
	for _, h := range []string{SHA1, SHA256} {
		c, err := NewCredentials(h, password, iterations)
		if err != nil {
			return nil, err
		}
		out[h] = c
	}
	return out, nil
}

// VerifyPassword reports whether password matches credentials derived with
// the named hash. It costs one PBKDF2 derivation.
func VerifyPassword(hash string, creds storage.Credentials, password string) (bool, error) {
	fn, err := hashFunc(hash)
	if err != nil {
		return false, err
	}
	if err := checkCredentials(creds, fn().Size()); err != nil {
		return false, err
	}
	salted, err := saltPassword(fn, password, creds.Salt, creds.Iterations)
	if err != nil {
		return false, err
	}
	stored, _ := keys(fn, salted)
	return subtle.ConstantTimeCompare(stored, creds.StoredKey) == 1, nil
}

// CheckWithCredentials returns a PasswordCheck for PLAIN that verifies
// passwords against SCRAM credentials of the named hash found by lookup. An
// unknown user costs the same PBKDF2 derivation as a known one.
func CheckWithCredentials(hash string, lookup CredentialLookup) PasswordCheck {
	return func(ctx context.Context, username, password string) (bool, error) {
		creds, err := lookup(ctx, username, hash)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			creds = fakeCredentials(hash, username)
			_, _ = VerifyPassword(hash, creds, password)
			return false, nil
		case err != nil:
			return false, fmt.Errorf("sasl: look up credentials: %w", err)
		}
		return VerifyPassword(hash, creds, password)
	}
}

// deriveCredentials derives credentials with a given salt.
func deriveCredentials(hash, password string, salt []byte, iterations int) (storage.Credentials, error) {
	fn, err := hashFunc(hash)
	if err != nil {
		return storage.Credentials{}, err
	}
	if iterations == 0 {
		iterations = DefaultIterations
	}
	if iterations < 1 {
		return storage.Credentials{}, fmt.Errorf("sasl: invalid iteration count %d", iterations)
	}
	salted, err := saltPassword(fn, password, salt, iterations)
	if err != nil {
		return storage.Credentials{}, err
	}
	stored, server := keys(fn, salted)
	return storage.Credentials{
		Salt:       append([]byte(nil), salt...),
		Iterations: iterations,
		StoredKey:  stored,
		ServerKey:  server,
	}, nil
}

// saltPassword computes SaltedPassword = Hi(Normalize(password), salt, i).
func saltPassword(fn func() hash.Hash, password string, salt []byte, iterations int) ([]byte, error) {
	prepared, err := precis.OpaqueString.String(password)
	if err != nil {
		return nil, fmt.Errorf("sasl: prepare password: %w", err)
	}
	salted, err := pbkdf2.Key(fn, prepared, salt, iterations, fn().Size())
	if err != nil {
		return nil, fmt.Errorf("sasl: derive salted password: %w", err)
	}
	return salted, nil
}

// keys computes StoredKey = H(HMAC(SaltedPassword, "Client Key")) and
// ServerKey = HMAC(SaltedPassword, "Server Key").
func keys(fn func() hash.Hash, salted []byte) (stored, server []byte) {
	clientKey := hmacSum(fn, salted, []byte("Client Key"))
	h := fn()
	h.Write(clientKey)
	return h.Sum(nil), hmacSum(fn, salted, []byte("Server Key"))
}

func hmacSum(fn func() hash.Hash, key []byte, parts ...[]byte) []byte {
	m := hmac.New(fn, key)
	for _, p := range parts {
		m.Write(p)
	}
	return m.Sum(nil)
}

// checkCredentials rejects stored credentials that cannot be used.
func checkCredentials(c storage.Credentials, size int) error {
	switch {
	case len(c.Salt) == 0:
		return errors.New("sasl: stored credentials have no salt")
	case c.Iterations < 1:
		return fmt.Errorf("sasl: stored credentials have iteration count %d", c.Iterations)
	case len(c.StoredKey) != size || len(c.ServerKey) != size:
		return errors.New("sasl: stored credentials have keys of the wrong length")
	}
	return nil
}

// fakeSaltKey is the per-process key from which salts of unknown users are
// derived, so that repeated attempts see a stable salt.
var fakeSaltKey = sync.OnceValue(func() []byte {
	k := make([]byte, 32)
	_, _ = rand.Read(k) // crypto/rand.Read never fails on supported platforms
	return k
})

// fakeCredentials returns credentials for a user that does not exist: a salt
// derived from the username, DefaultIterations, and keys no proof matches in
// practice (they are random-looking values nobody knows the preimage of).
func fakeCredentials(hash, username string) storage.Credentials {
	fn, err := hashFunc(hash)
	if err != nil {
		fn = sha256.New
	}
	mac := hmacSum(sha256.New, fakeSaltKey(), []byte("salt\x00"+hash+"\x00"+username))
	keys := hmacSum(fn, fakeSaltKey(), []byte("keys\x00"+hash+"\x00"+username))
	return storage.Credentials{
		Salt:       mac[:saltLen],
		Iterations: DefaultIterations,
		StoredKey:  keys,
		ServerKey:  keys,
	}
}
