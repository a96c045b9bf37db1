package server

import (
	"os"
	"path/filepath"
	"testing"
)

// The admin token file is created 0600, kept across starts, and replaced
// when others could read it or it is damaged.
func TestAdminTokenFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, AdminTokenFile)
	tok, replaced, err := LoadOrCreateAdminToken(dir)
	if err != nil || replaced || len(tok) != 2*adminTokenBytes {
		t.Fatalf("first start: %q %v %v", tok, replaced, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	if again, replaced, err := LoadOrCreateAdminToken(dir); err != nil || replaced || again != tok {
		t.Fatalf("second start: %q %v %v, want the same token", again, replaced, err)
	}
	if read, err := ReadAdminToken(dir); err != nil || read != tok {
		t.Fatalf("ReadAdminToken: %q %v", read, err)
	}
	for _, damage := range []func() error{
		func() error { return os.Chmod(path, 0o644) },
		func() error { return os.WriteFile(path, []byte("short\n"), 0o600) },
	} {
		if err := damage(); err != nil {
			t.Fatal(err)
		}
		next, replaced, err := LoadOrCreateAdminToken(dir)
		if err != nil || !replaced || next == tok || len(next) != 2*adminTokenBytes {
			t.Fatalf("after damage: %q %v %v, want a new token", next, replaced, err)
		}
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("replaced file mode %v, %v", fi.Mode().Perm(), err)
		}
		tok = next
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/hostname", path); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateAdminToken(dir); err == nil {
		t.Fatal("a symlink was taken as the token file")
	}
	if _, err := ReadAdminToken(t.TempDir()); err == nil {
		t.Fatal("ReadAdminToken without a file")
	}
}
