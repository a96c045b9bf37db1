package federation

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test domains and the loopback address each one's server listens on
// (its s2s port is 5269 there).
const (
	PalisadeDomain = "palisade.test"
	PalisadeAddr   = "127.0.0.1"
	PartnerDomain  = "partner.test" // Prosody, a partner
	PartnerAddr    = "127.0.0.2"
	EjDomain       = "ejpartner.test" // ejabberd, a partner
	EjAddr         = "127.0.0.3"
	StrangerDomain = "stranger.test" // a second Prosody, not a partner
	StrangerAddr   = "127.0.0.4"
	// S2SPort is the s2s port of every test server.
	S2SPort = 5269
)

// Addrs maps each test domain to its server's address.
var Addrs = map[string]string{
	PalisadeDomain: PalisadeAddr,
	PartnerDomain:  PartnerAddr,
	EjDomain:       EjAddr,
	StrangerDomain: StrangerAddr,
}

// S2SAddr is domain's s2s endpoint, host:port.
func S2SAddr(domain string) string { return fmt.Sprintf("%s:%d", Addrs[domain], S2SPort) }

// WriteHosts writes an /etc/hosts-format file mapping every test domain to
// its address (and localhost, which ejabberd's control node needs when
// the file replaces /etc/hosts in its mount namespace) to dir/hosts.
func WriteHosts(dir string) (string, error) {
	var b strings.Builder
	b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	for _, d := range []string{PalisadeDomain, PartnerDomain, EjDomain, StrangerDomain} {
		fmt.Fprintf(&b, "%s\t%s\n", Addrs[d], d)
	}
	path := filepath.Join(dir, "hosts")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return "", fmt.Errorf("federation: write hosts file: %w", err)
	}
	return path, nil
}

// lockFile serializes federation tests across test processes: go test
// runs packages in parallel, and every federation test binds the same
// addresses (127.0.0.1-4:5269).
var lockFile = filepath.Join(os.TempDir(), "palisade-federation-tests.lock")

// Lock takes the machine-wide federation test lock for the rest of the
// test (released at cleanup), waiting up to 10 minutes for another test
// process to finish its federation test.
func Lock(t testing.TB) {
	t.Helper()
	f, err := os.OpenFile(lockFile, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		t.Fatalf("federation: lock file: %v", err)
	}
	deadline := time.Now().Add(10 * time.Minute)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			t.Fatalf("federation: lock %s: %v", lockFile, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Cleanup(func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	})
}
