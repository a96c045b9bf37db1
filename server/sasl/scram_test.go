package sasl

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/palisade-im/palisade/storage"
)

// rfcVector runs a published SCRAM exchange message by message.
func rfcVector(t *testing.T, hash, salt64, serverNonce string, msgs [4]string) {
	salt, err := base64.StdEncoding.DecodeString(salt64)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := deriveCredentials(hash, "pencil", salt, 4096)
	if err != nil {
		t.Fatal(err)
	}
	var gotUser, gotHash string
	m := SCRAM(hash, false, func(_ context.Context, u, h string) (storage.Credentials, error) {
		gotUser, gotHash = u, h
		return creds, nil
	}).(*scramMechanism)
	m.nonce = func() (string, error) { return serverNonce, nil }

	ctx := context.Background()
	ex := m.Start(Binding{})
	out, done, err := ex.Step(ctx, []byte(msgs[0]))
	if err != nil || done {
		t.Fatalf("client-first: done=%v err=%v", done, err)
	}
	if string(out) != msgs[1] {
		t.Fatalf("server-first = %q, want %q", out, msgs[1])
	}
	if gotUser != "user" || gotHash != hash {
		t.Errorf("lookup(%q, %q)", gotUser, gotHash)
	}
	out, done, err = ex.Step(ctx, []byte(msgs[2]))
	if err != nil || !done {
		t.Fatalf("client-final: done=%v err=%v", done, err)
	}
	if string(out) != msgs[3] {
		t.Fatalf("server-final = %q, want %q", out, msgs[3])
	}
	if ex.Identity() != "user" || ex.Authzid() != "" {
		t.Errorf("Identity %q Authzid %q", ex.Identity(), ex.Authzid())
	}
}

func TestRFC7677Vector(t *testing.T) {
	rfcVector(t, SHA256, "W22ZaJ0SNY7soEsUEjb6gQ==", "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0", [4]string{
		"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
		"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
		"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
		"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
	})
}

func TestRFC5802Vector(t *testing.T) {
	rfcVector(t, SHA1, "QSXCR+Q6sek8bf92", "3rfcNHYJY1ZVvWVs7j", [4]string{
		"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
		"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
		"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
		"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
	})
}

var testBinding = Binding{
	Exporter: bytes.Repeat([]byte{0xe1}, 32),
	EndPoint: bytes.Repeat([]byte{0xe2}, 32),
}

func TestSCRAMRoundTrip(t *testing.T) {
	store := newTestStore(t, map[string]string{"alice": "correct horse", "a,b=c": "p\u00e4ss"})
	for _, hash := range []string{SHA1, SHA256} {
		for _, tc := range []struct {
			name    string
			plus    bool
			cbType  string
			binding Binding
		}{
			{"no-tls", false, "", Binding{}},
			{"tls-not-plus", false, "", testBinding},
			{"plus-exporter", true, cbExporter, testBinding},
			{"plus-endpoint", true, cbEndPoint, testBinding},
			{"plus-endpoint-only", true, cbEndPoint, Binding{EndPoint: testBinding.EndPoint}},
		} {
			t.Run(hash+"/"+tc.name, func(t *testing.T) {
				m := SCRAM(hash, tc.plus, store.lookup)
				wantName := "SCRAM-" + hash
				if tc.plus {
					wantName += "-PLUS"
				}
				if m.Name() != wantName {
					t.Errorf("Name() = %q, want %q", m.Name(), wantName)
				}
				var cbData []byte
				switch tc.cbType {
				case cbExporter:
					cbData = tc.binding.Exporter
				case cbEndPoint:
					cbData = tc.binding.EndPoint
				}
				c := &testClient{hash: hash, user: "Alice", password: "correct horse", authzid: "admin@example.org", cbType: tc.cbType, cbData: cbData}
				ex, err := runSCRAM(t, m, tc.binding, c)
				if err != nil {
					t.Fatal(err)
				}
				if ex.Identity() != "alice" || ex.Authzid() != "admin@example.org" {
					t.Errorf("Identity %q Authzid %q", ex.Identity(), ex.Authzid())
				}

				// A username needing saslname escaping and a non-ASCII password.
				c = &testClient{hash: hash, user: "a,b=c", password: "p\u00e4ss", cbType: tc.cbType, cbData: cbData}
				ex, err = runSCRAM(t, m, tc.binding, c)
				if err != nil {
					t.Fatal(err)
				}
				if ex.Identity() != "a,b=c" {
					t.Errorf("Identity %q", ex.Identity())
				}
			})
		}
	}
}

func TestSCRAMWrongPasswordAndUnknownUser(t *testing.T) {
	store := newTestStore(t, map[string]string{"alice": "secret"})
	m := SCRAM(SHA256, false, store.lookup)

	_, errWrong := runSCRAM(t, m, Binding{}, &testClient{hash: SHA256, user: "alice", password: "wrong"})
	_, errUnknown := runSCRAM(t, m, Binding{}, &testClient{hash: SHA256, user: "mallory", password: "secret"})
	for _, err := range []error{errWrong, errUnknown} {
		if condition(err) != NotAuthorized {
			t.Errorf("err = %v, want not-authorized", err)
		}
	}
	if errWrong.Error() != errUnknown.Error() {
		t.Errorf("wrong password %q and unknown user %q differ", errWrong, errUnknown)
	}

	// The unknown user's server-first-message looks like a real one and is
	// stable across attempts.
	first := func(user string) string {
		ex := m.Start(Binding{})
		c := &testClient{hash: SHA256, user: user}
		out, _, err := ex.Step(context.Background(), c.first())
		if err != nil {
			t.Fatal(err)
		}
		_, rest, _ := strings.Cut(string(out), ",")
		return rest
	}
	a, b := first("mallory"), first("mallory")
	if a != b {
		t.Errorf("fake salt not stable: %q vs %q", a, b)
	}
	if a == first("eve") {
		t.Error("fake salts of different users are equal")
	}
	if !strings.HasSuffix(a, ",i=4096") || len(a) != len("s=")+24+len(",i=4096") {
		t.Errorf("fake server-first tail %q", a)
	}
	// A username PRECIS rejects also fails only at the proof step.
	_, err := runSCRAM(t, m, Binding{}, &testClient{hash: SHA256, user: "\u0007bell", password: "x"})
	if condition(err) != NotAuthorized {
		t.Errorf("invalid username: err = %v", err)
	}
}

func TestSCRAMChannelBinding(t *testing.T) {
	store := newTestStore(t, map[string]string{"alice": "secret"})
	plain := SCRAM(SHA256, false, store.lookup)
	plus := SCRAM(SHA256, true, store.lookup)
	for _, tc := range []struct {
		name    string
		m       Mechanism
		binding Binding
		c       testClient
		want    string // failure condition, "" for success
	}{
		{"tampered-exporter", plus, testBinding, testClient{cbType: cbExporter, cbData: []byte("other")}, NotAuthorized},
		{"endpoint-data-as-exporter", plus, testBinding, testClient{cbType: cbExporter, cbData: testBinding.EndPoint}, NotAuthorized},
		{"y-downgrade", plain, testBinding, testClient{flag: "y"}, NotAuthorized},
		{"y-without-plus-offered", plain, Binding{}, testClient{flag: "y"}, ""},
		{"n-on-plain-with-tls", plain, testBinding, testClient{flag: "n"}, ""},
		{"p-on-plain", plain, testBinding, testClient{cbType: cbExporter, cbData: testBinding.Exporter}, MalformedRequest},
		{"n-on-plus", plus, testBinding, testClient{flag: "n"}, MalformedRequest},
		{"y-on-plus", plus, testBinding, testClient{flag: "y"}, MalformedRequest},
		{"plus-no-binding", plus, Binding{}, testClient{cbType: cbExporter}, MalformedRequest},
		{"plus-exporter-unavailable", plus, Binding{EndPoint: testBinding.EndPoint}, testClient{cbType: cbExporter}, MalformedRequest},
		{"plus-tls-unique", plus, testBinding, testClient{cbType: "tls-unique", cbData: []byte("x")}, MalformedRequest},
		{"plus-bad-cb-name", plus, testBinding, testClient{cbType: "tls_exporter"}, MalformedRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.c
			c.hash, c.user, c.password = SHA256, "alice", "secret"
			_, err := runSCRAM(t, tc.m, tc.binding, &c)
			if got := condition(err); got != tc.want || (tc.want == "") != (err == nil) {
				t.Errorf("err = %v, want condition %q", err, tc.want)
			}
		})
	}

	// A c= attribute whose GS2 header differs from the one sent first.
	ex := plus.Start(testBinding)
	c := &testClient{hash: SHA256, user: "alice", password: "secret", cbType: cbExporter, cbData: testBinding.Exporter}
	sf, _, err := ex.Step(context.Background(), c.first())
	if err != nil {
		t.Fatal(err)
	}
	c.gs2Header = "n,,"
	c.cbData = nil
	cf, err := c.final(sf)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := ex.Step(context.Background(), cf); condition(err) != NotAuthorized {
		t.Errorf("swapped GS2 header: err = %v", err)
	}
}

func TestSCRAMMalformedClientFirst(t *testing.T) {
	store := newTestStore(t, map[string]string{"alice": "secret"})
	m := SCRAM(SHA256, false, store.lookup)
	for _, msg := range []string{
		"n",
		"n,",
		"x,,n=alice,r=abc",
		"F,n,,n=alice,r=abc",
		"p,,n=alice,r=abc",
		"n,,m=ext,n=alice,r=abc",
		"n,,n=alice",
		"n,,r=abc,n=alice",
		"n,,n=,r=abc",
		"n,,n=al=ice,r=abc",
		"n,,n=al=2,r=abc",
		"n,a=,n=alice,r=abc",
		"n,b=x,n=alice,r=abc",
		"n,a=x=y,n=alice,r=abc",
		"n,,n=alice,r=",
		"n,,n=alice,r=a b",
		"n,,n=alice,r=abc,=x",
		"n,,n=alice,r=abc,1=x",
		"n,,n=alice,r=abc,x",
		"n,,n=alice\x00,r=abc",
		"n,,n=alice\xff,r=abc",
		"n,,n=alice,r=abc,x=" + strings.Repeat("a", maxMessage),
	} {
		ex := m.Start(Binding{})
		out, done, err := ex.Step(context.Background(), []byte(msg))
		if condition(err) != MalformedRequest || done || out != nil {
			t.Errorf("%q: out=%q done=%v err=%v, want malformed-request", msg, out, done, err)
		}
		if _, _, err := ex.Step(context.Background(), []byte("n,,n=alice,r=abc")); err == nil {
			t.Errorf("%q: Step after failure succeeded", msg)
		}
	}
	// Extensions after the nonce are allowed and ignored.
	ex := m.Start(Binding{})
	if _, _, err := ex.Step(context.Background(), []byte("n,,n=alice,r=abc,x=1")); err != nil {
		t.Errorf("extension: %v", err)
	}
}

func TestSCRAMMalformedClientFinal(t *testing.T) {
	store := newTestStore(t, map[string]string{"alice": "secret"})
	m := SCRAM(SHA256, false, store.lookup).(*scramMechanism)
	m.nonce = func() (string, error) { return "SERVER", nil }
	proof := base64.StdEncoding.EncodeToString(make([]byte, 32))
	for _, tc := range []struct{ msg, want string }{
		{"", MalformedRequest},
		{"c=biws,r=abcSERVER", MalformedRequest},
		{"c=biws,r=abcSERVER,p=", MalformedRequest},
		{"c=biws,r=abcSERVER,p=!!!!", MalformedRequest},
		{"c=biws,r=abcSERVER,p=" + base64.StdEncoding.EncodeToString(make([]byte, 20)), MalformedRequest},
		{"c=biws,r=abcSERVER,p=" + proof + ",x=1", MalformedRequest},
		{"r=abcSERVER,c=biws,p=" + proof, MalformedRequest},
		{"c=biws,p=" + proof, MalformedRequest},
		{"c=biws,r=abcSERVER,1=1,p=" + proof, MalformedRequest},
		{"c=biws,r=abcSERVER\x00,p=" + proof, MalformedRequest},
		{"c=biws,r=abcOTHER,p=" + proof, NotAuthorized},
		{"c=eSws,r=abcSERVER,p=" + proof, NotAuthorized},
		{"c=biws,r=abcSERVER,p=" + proof, NotAuthorized},
		{"c=biws,r=abcSERVER,x=ext,p=" + proof, NotAuthorized},
	} {
		ex := m.Start(Binding{})
		if _, _, err := ex.Step(context.Background(), []byte("n,,n=alice,r=abc")); err != nil {
			t.Fatal(err)
		}
		out, done, err := ex.Step(context.Background(), []byte(tc.msg))
		if condition(err) != tc.want || done || out != nil {
			t.Errorf("%q: out=%q done=%v err=%v, want %s", tc.msg, out, done, err, tc.want)
		}
		if ex.Identity() != "" {
			t.Errorf("%q: Identity %q after failure", tc.msg, ex.Identity())
		}
	}
}

func TestSCRAMEmptyInitialResponse(t *testing.T) {
	store := newTestStore(t, map[string]string{"alice": "secret"})
	m := SCRAM(SHA256, false, store.lookup)
	ex := m.Start(Binding{})
	out, done, err := ex.Step(context.Background(), nil)
	if err != nil || done || out == nil || len(out) != 0 {
		t.Fatalf("empty initial response: out=%q done=%v err=%v", out, done, err)
	}
	c := &testClient{hash: SHA256, user: "alice", password: "secret"}
	sf, _, err := ex.Step(context.Background(), c.first())
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := c.final(sf)
	if _, done, err := ex.Step(context.Background(), cf); !done || err != nil {
		t.Fatalf("done=%v err=%v", done, err)
	}
	// Finished: further steps fail.
	if _, _, err := ex.Step(context.Background(), cf); condition(err) != MalformedRequest {
		t.Errorf("Step after success: %v", err)
	}
	if ex.Identity() != "alice" {
		t.Errorf("Identity %q", ex.Identity())
	}

	ex = m.Start(Binding{})
	ex.Step(context.Background(), nil)
	if _, _, err := ex.Step(context.Background(), []byte{}); condition(err) != MalformedRequest {
		t.Errorf("second empty message: %v", err)
	}
}

func TestSCRAMBackendFailure(t *testing.T) {
	store := newTestStore(t, map[string]string{"alice": "secret"})
	backend := errors.New("database is locked")
	store.err = backend
	m := SCRAM(SHA256, false, store.lookup)
	c := &testClient{hash: SHA256, user: "alice"}
	_, _, err := m.Start(Binding{}).Step(context.Background(), c.first())
	if condition(err) != TemporaryAuthFailure || !errors.Is(err, backend) {
		t.Errorf("err = %v, want temporary-auth-failure wrapping the backend error", err)
	}

	corrupt := SCRAM(SHA256, false, func(context.Context, string, string) (storage.Credentials, error) {
		return storage.Credentials{Salt: []byte("s"), Iterations: 4096, StoredKey: []byte("short")}, nil
	})
	if _, _, err := corrupt.Start(Binding{}).Step(context.Background(), c.first()); condition(err) != TemporaryAuthFailure {
		t.Errorf("corrupt credentials: %v", err)
	}
	if _, _, err := SCRAM(SHA1, false, nil).Start(Binding{}).Step(context.Background(), c.first()); condition(err) != TemporaryAuthFailure {
		t.Errorf("nil lookup: %v", err)
	}
}

func TestSCRAMUnsupportedHashPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("SCRAM with SHA-512 did not panic")
		}
	}()
	SCRAM("SHA-512", false, nil)
}

func TestFailureError(t *testing.T) {
	inner := errors.New("boom")
	f := &Failure{Condition: TemporaryAuthFailure, Text: "try later", Err: inner}
	if f.Error() != "sasl: temporary-auth-failure: try later: boom" {
		t.Errorf("Error() = %q", f.Error())
	}
	if !errors.Is(f, inner) {
		t.Error("Unwrap does not reach the cause")
	}
}

func FuzzSCRAMClientFirst(f *testing.F) {
	f.Add([]byte("n,,n=user,r=rOprNGfwEbeRWgbNEkqO"), []byte("c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="))
	f.Add([]byte("p=tls-exporter,a=admin,n=user,r=abc"), []byte("c=cD10bHMtZXhwb3J0ZXIsYT1hZG1pbiw=,r=abc,p=AAAA"))
	f.Add([]byte("y,,n=us=2Cer,r=abc,x=1"), []byte("c=eSws,r=abc,x=y,p="))
	f.Add([]byte("n,,m=x,n=user,r=abc"), []byte(""))
	f.Add([]byte("n,a=,n=,r="), []byte(",p=,p="))
	f.Add([]byte("p=tls-server-end-point,,n=\xff,r=\x00"), []byte("c=,r=,p=="))
	f.Add([]byte(""), []byte(nil))
	creds, err := deriveCredentials(SHA256, "pencil", []byte("fuzzsalt"), 1)
	if err != nil {
		f.Fatal(err)
	}
	lookup := func(_ context.Context, u, _ string) (storage.Credentials, error) {
		if u == "user" {
			return creds, nil
		}
		return storage.Credentials{}, storage.ErrNotFound
	}
	mechs := []Mechanism{SCRAM(SHA256, false, lookup), SCRAM(SHA256, true, lookup), SCRAM(SHA1, true, lookup)}
	f.Fuzz(func(t *testing.T, first, final []byte) {
		for _, m := range mechs {
			for _, b := range []Binding{{}, testBinding} {
				ex := m.Start(b)
				out, done, err := ex.Step(context.Background(), first)
				if done {
					t.Fatal("done after the first message")
				}
				if err != nil {
					if condition(err) == "" {
						t.Fatalf("error is not a *Failure: %v", err)
					}
					continue
				}
				if len(out) > 2*maxMessage {
					t.Fatalf("server-first of %d bytes", len(out))
				}
				out, done, err = ex.Step(context.Background(), final)
				if err != nil && condition(err) == "" {
					t.Fatalf("error is not a *Failure: %v", err)
				}
				if done && (err != nil || !bytes.HasPrefix(out, []byte("v="))) {
					t.Fatalf("done with out=%q err=%v", out, err)
				}
			}
		}
	})
}
