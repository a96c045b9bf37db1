package ldaptest

import (
	"os/exec"
	"strings"
	"testing"
)

// TestStart checks that the instance serves the seeded people to the
// service account and refuses a wrong password, with Debian's ldapsearch.
func TestStart(t *testing.T) {
	s := Start(t)
	search := func(dn, pw string) (string, error) {
		out, err := exec.Command("ldapsearch", "-x", "-H", s.URL, "-D", dn, "-w", pw,
			"-b", PeopleDN, "(uid=alice)", "mail").CombinedOutput()
		return string(out), err
	}
	out, err := search(ServiceDN, ServicePassword)
	if err != nil || !strings.Contains(out, "mail: alice@corp.example") {
		t.Fatalf("service search: %v\n%s", err, out)
	}
	if out, err := search(ServiceDN, "wrong"); err == nil {
		t.Fatalf("wrong service password accepted:\n%s", out)
	}
	s.Disable(t, "alice")
	s.RemoveMember(t, StaffDN, "alice")
	s.Stop(t)
	if _, err := search(ServiceDN, ServicePassword); err == nil {
		t.Fatal("search worked after Stop")
	}
	s.Restart(t)
	out, err = search(ServiceDN, ServicePassword)
	if err != nil || !strings.Contains(out, "mail: alice@corp.example") {
		t.Fatalf("after restart: %v\n%s", err, out)
	}
	// StartTLS and ldaps:// with the instance's CA.
	for _, args := range [][]string{{"-H", s.URL, "-ZZ"}, {"-H", s.LDAPSURL}} {
		cmd := exec.Command("ldapsearch", append(args, "-x", "-D", ServiceDN, "-w", ServicePassword,
			"-b", PeopleDN, "(uid=bob)", "uid")...)
		cmd.Env = append(cmd.Environ(), "LDAPTLS_CACERT="+s.CAFile)
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "uid: bob") {
			t.Fatalf("ldapsearch %v: %v\n%s", args, err, out)
		}
	}
}
