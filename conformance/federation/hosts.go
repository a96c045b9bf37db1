package federation

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
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
