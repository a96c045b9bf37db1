package sasl

import (
	"bytes"
	"testing"
)

func TestNewCredentials(t *testing.T) {
	for hash, size := range map[string]int{SHA1: 20, SHA256: 32} {
		a, err := NewCredentials(hash, "pencil", 0)
		if err != nil {
			t.Fatal(err)
		}
		b, err := NewCredentials(hash, "pencil", 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(a.Salt) != 16 || a.Iterations != DefaultIterations || b.Iterations != 100 {
			t.Errorf("%s: salt %d bytes, iterations %d/%d", hash, len(a.Salt), a.Iterations, b.Iterations)
		}
		if len(a.StoredKey) != size || len(a.ServerKey) != size {
			t.Errorf("%s: key sizes %d/%d", hash, len(a.StoredKey), len(a.ServerKey))
		}
		if bytes.Equal(a.Salt, b.Salt) || bytes.Equal(a.StoredKey, b.StoredKey) {
			t.Errorf("%s: salts not random", hash)
		}
		for pw, want := range map[string]bool{"pencil": true, "Pencil": false, "pencil ": false} {
			ok, err := VerifyPassword(hash, a, pw)
			if err != nil || ok != want {
				t.Errorf("%s: VerifyPassword(%q) = %v, %v", hash, pw, ok, err)
			}
		}
	}
	for _, tc := range []struct {
		hash, pw string
		iter     int
	}{
		{"SHA-512", "pencil", 1},
		{"sha-256", "pencil", 1},
		{SHA256, "", 1},
		{SHA256, "\u0007", 1},
		{SHA256, "pencil", -1},
	} {
		if _, err := NewCredentials(tc.hash, tc.pw, tc.iter); err == nil {
			t.Errorf("NewCredentials(%q, %q, %d) succeeded", tc.hash, tc.pw, tc.iter)
		}
	}
}

func TestDeriveAll(t *testing.T) {
	all, err := DeriveAll("correct horse", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || len(all[SHA1].StoredKey) != 20 || len(all[SHA256].StoredKey) != 32 {
		t.Fatalf("DeriveAll = %+v", all)
	}
	if bytes.Equal(all[SHA1].Salt, all[SHA256].Salt) {
		t.Error("hashes share a salt")
	}
	if _, err := DeriveAll("", 10); err == nil {
		t.Error("empty password accepted")
	}
}

func TestPasswordPreparation(t *testing.T) {
	// OpaqueString maps non-ASCII spaces to U+0020 and applies NFC.
	c, err := NewCredentials(SHA256, "a b\u00e9", 1)
	if err != nil {
		t.Fatal(err)
	}
	ok, err := VerifyPassword(SHA256, c, "a\u00a0be\u0301")
	if err != nil || !ok {
		t.Errorf("prepared equivalent password rejected: %v %v", ok, err)
	}
}

func TestVerifyPasswordBadCredentials(t *testing.T) {
	c, err := NewCredentials(SHA256, "pencil", 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyPassword(SHA1, c, "pencil"); err == nil {
		t.Error("SHA-256 credentials verified as SHA-1")
	}
	c.Iterations = 0
	if _, err := VerifyPassword(SHA256, c, "pencil"); err == nil {
		t.Error("zero iterations accepted")
	}
}
