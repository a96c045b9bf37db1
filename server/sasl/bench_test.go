package sasl

import (
	"context"
	"testing"
)

// BenchmarkSCRAMSHA256Login measures the server's side of a complete
// SCRAM-SHA-256 login. The client messages are precomputed with a fixed
// server nonce, so the client's PBKDF2 is not part of the measurement.
func BenchmarkSCRAMSHA256Login(b *testing.B) {
	store := newTestStore(b, map[string]string{"alice": "secret"})
	m := SCRAM(SHA256, false, store.lookup).(*scramMechanism)
	m.nonce = func() (string, error) { return "fixedservernonce0123456789abcdef", nil }
	c := &testClient{hash: SHA256, user: "alice", password: "secret"}
	first := c.first()
	sf, _, err := m.Start(Binding{}).Step(context.Background(), first)
	if err != nil {
		b.Fatal(err)
	}
	final, err := c.final(sf)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		ex := m.Start(Binding{})
		if _, _, err := ex.Step(ctx, first); err != nil {
			b.Fatal(err)
		}
		if _, done, err := ex.Step(ctx, final); !done || err != nil {
			b.Fatal(done, err)
		}
	}
}

// BenchmarkNewCredentials measures deriving SCRAM-SHA-256 credentials with
// DefaultIterations.
func BenchmarkNewCredentials(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewCredentials(SHA256, "correct horse battery staple", DefaultIterations); err != nil {
			b.Fatal(err)
		}
	}
}
