package sasl

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/palisade-im/palisade/storage"
)

// testClient is a minimal SCRAM client for tests. cbType "" sends the flag
// given in flag ("n" when empty); otherwise "p=<cbType>" binding to cbData.
type testClient struct {
	hash     string
	user     string // escaped as a saslname by the client
	password string
	authzid  string
	flag     string
	cbType   string
	cbData   []byte
	nonce    string

	gs2Header string
	bare      string
	serverSig string
}

func (c *testClient) fn() func() hash.Hash {
	fn, err := hashFunc(c.hash)
	if err != nil {
		panic(err)
	}
	return fn
}

func escapeSaslname(s string) string {
	return strings.NewReplacer("=", "=3D", ",", "=2C").Replace(s)
}

func (c *testClient) first() []byte {
	flag := c.flag
	if flag == "" {
		flag = "n"
	}
	if c.cbType != "" {
		flag = "p=" + c.cbType
	}
	c.gs2Header = flag + ","
	if c.authzid != "" {
		c.gs2Header += "a=" + escapeSaslname(c.authzid)
	}
	c.gs2Header += ","
	nonce := c.nonce
	if nonce == "" {
		nonce = "clientnonce0123456789"
	}
	c.bare = "n=" + escapeSaslname(c.user) + ",r=" + nonce
	return []byte(c.gs2Header + c.bare)
}

// final computes the client-final-message for a server-first-message.
func (c *testClient) final(serverFirst []byte) ([]byte, error) {
	var nonce, salt64 string
	iter := -1
	for _, f := range strings.Split(string(serverFirst), ",") {
		switch {
		case strings.HasPrefix(f, "r="):
			nonce = f[2:]
		case strings.HasPrefix(f, "s="):
			salt64 = f[2:]
		case strings.HasPrefix(f, "i="):
			iter, _ = strconv.Atoi(f[2:])
		}
	}
	salt, err := base64.StdEncoding.DecodeString(salt64)
	if err != nil || iter < 1 || nonce == "" {
		return nil, fmt.Errorf("bad server-first-message %q", serverFirst)
	}
	fn := c.fn()
	salted, err := saltPassword(fn, c.password, salt, iter)
	if err != nil {
		return nil, err
	}
	cb := base64.StdEncoding.EncodeToString(append([]byte(c.gs2Header), c.cbData...))
	withoutProof := "c=" + cb + ",r=" + nonce
	return c.finish(salted, string(serverFirst), withoutProof), nil
}

// finish signs withoutProof with the keys derived from salted.
func (c *testClient) finish(salted []byte, serverFirst, withoutProof string) []byte {
	fn := c.fn()
	authMessage := []byte(c.bare + "," + serverFirst + "," + withoutProof)
	clientKey := hmacSum(fn, salted, []byte("Client Key"))
	storedKey, serverKey := keys(fn, salted)
	clientSig := hmacSum(fn, storedKey, authMessage)
	proof := make([]byte, len(clientKey))
	subtle.XORBytes(proof, clientKey, clientSig)
	c.serverSig = "v=" + base64.StdEncoding.EncodeToString(hmacSum(fn, serverKey, authMessage))
	return []byte(withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof))
}

// testStore is an in-memory credential store.
type testStore struct {
	mu    sync.Mutex
	users map[string]map[string]storage.Credentials
	err   error // returned by every lookup when set
}

func newTestStore(t testing.TB, users map[string]string) *testStore {
	t.Helper()
	s := &testStore{users: map[string]map[string]storage.Credentials{}}
	for u, p := range users {
		creds, err := DeriveAll(p, DefaultIterations)
		if err != nil {
			t.Fatal(err)
		}
		s.users[u] = creds
	}
	return s
}

func (s *testStore) lookup(_ context.Context, username, hash string) (storage.Credentials, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return storage.Credentials{}, s.err
	}
	c, ok := s.users[username][hash]
	if !ok {
		return storage.Credentials{}, fmt.Errorf("user %q: %w", username, storage.ErrNotFound)
	}
	return c, nil
}

// condition returns the Failure condition of err, or "" when err is not a
// *Failure.
func condition(err error) string {
	var f *Failure
	if errors.As(err, &f) {
		return f.Condition
	}
	return ""
}

// runSCRAM runs a full exchange and returns the exchange and the first error.
func runSCRAM(t *testing.T, m Mechanism, b Binding, c *testClient) (Exchange, error) {
	t.Helper()
	ctx := context.Background()
	ex := m.Start(b)
	sf, done, err := ex.Step(ctx, c.first())
	if err != nil {
		return ex, err
	}
	if done {
		t.Fatal("done after client-first-message")
	}
	cf, err := c.final(sf)
	if err != nil {
		t.Fatal(err)
	}
	out, done, err := ex.Step(ctx, cf)
	if err != nil {
		return ex, err
	}
	if !done {
		t.Fatal("not done after client-final-message")
	}
	if string(out) != c.serverSig {
		t.Fatalf("server-final-message %q, want %q", out, c.serverSig)
	}
	return ex, nil
}
