// Package ldaptest runs a real OpenLDAP slapd (Debian's slapd package) for
// tests: one private instance per test on free loopback ports, with the mdb
// backend, the core, cosine, nis and inetorgperson schemas, a
// self-signed TLS certificate (StartTLS on the ldap:// port, and an ldaps://
// port), a service account and a small directory of people and groups
// loaded with ldapadd, and the syncprov overlay (RFC 4533 syncrepl change
// notification). Changes go through ldapmodify and ldapdelete, as an
// administrator would make them. The instance is stopped by its PID when
// the test ends.
package ldaptest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/palisade-im/palisade/certs"
)

// Directory layout of every instance.
const (
	Suffix          = "dc=corp,dc=example"
	AdminDN         = "cn=admin," + Suffix
	AdminPassword   = "admin-secret"
	PeopleDN        = "ou=people," + Suffix
	GroupsDN        = "ou=groups," + Suffix
	ServiceDN       = "cn=palisade,ou=services," + Suffix
	ServicePassword = "service-secret"
	StaffDN         = "cn=staff," + GroupsDN
	InternsDN       = "cn=interns," + GroupsDN
)

// People are the accounts loaded into every instance, uid -> password:
// alice and bob are in staff; carol only in interns; dave is in staff but
// disabled (employeeType: disabled); "eve(x)" has filter metacharacters in
// her uid.
var People = map[string]string{
	"alice":  "alice-pw",
	"bob":    "bob-pw",
	"carol":  "carol-pw",
	"dave":   "dave-pw",
	"eve(x)": "eve-pw",
}

// UserDN returns the DN of a person by uid.
func UserDN(uid string) string { return "uid=" + escapeDNValue(uid) + "," + PeopleDN }

func escapeDNValue(v string) string {
	var b strings.Builder
	for _, r := range v {
		if strings.ContainsRune(`,+"\<>;=#`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Server is one running slapd.
type Server struct {
	// URL is ldap://127.0.0.1:PORT (plain, StartTLS available).
	URL string
	// LDAPSURL is ldaps://127.0.0.1:PORT.
	LDAPSURL string
	// CAFile trusts the server's certificate.
	CAFile string
	// Dir is the instance's scratch directory.
	Dir string

	args    []string
	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	log     *bytes.Buffer
	logMu   *sync.Mutex
	stopped bool
}

type syncWriter struct {
	mu  *sync.Mutex
	buf *bytes.Buffer
}

func (w syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

// Require fails the test when slapd or the ldap-utils are missing.
func Require(t testing.TB) {
	t.Helper()
	for _, bin := range []string{slapdBin(), "ldapadd", "ldapmodify", "ldapdelete"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s not found (%v): run conformance/install-peers.sh (slapd, ldap-utils)", bin, err)
		}
	}
}

func slapdBin() string {
	if _, err := os.Stat("/usr/sbin/slapd"); err == nil {
		return "/usr/sbin/slapd"
	}
	return "slapd"
}

// Start runs a fresh slapd with the base tree and People loaded.
func Start(t testing.TB) *Server {
	t.Helper()
	Require(t)
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "db"), 0o700); err != nil {
		t.Fatal(err)
	}
	kp, err := certs.LoadOrCreate(dir, []string{"localhost"}, "", "")
	if err != nil {
		t.Fatalf("ldaptest: certificate: %v", err)
	}
	s := &Server{
		CAFile: kp.CertFile,
		Dir:    dir,
		log:    &bytes.Buffer{},
		logMu:  &sync.Mutex{},
	}
	conf := fmt.Sprintf(`include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/nis.schema
include /etc/ldap/schema/inetorgperson.schema
pidfile %[1]s/slapd.pid
argsfile %[1]s/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload syncprov
TLSCertificateFile %[2]s
TLSCertificateKeyFile %[3]s
TLSCACertificateFile %[2]s

database mdb
suffix "%[4]s"
rootdn "%[5]s"
rootpw %[6]s
directory %[1]s/db
maxsize 16777216
index objectClass eq
index uid eq
index member eq
index entryCSN,entryUUID eq

overlay syncprov

access to attrs=userPassword
	by anonymous auth
	by self write
	by * none
access to *
	by dn.exact="%[7]s" read
	by self read
	by * none
`, dir, kp.CertFile, kp.KeyFile, Suffix, AdminDN, AdminPassword, ServiceDN)
	confPath := filepath.Join(dir, "slapd.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Stop(t)
		if t.Failed() {
			t.Logf("slapd log:\n%s", s.Log())
		}
	})
	// The ports are picked free, then bound by slapd: another test process
	// may take one in between. Then slapd says so, and new ports are tried.
	for attempt := 1; ; attempt++ {
		ports := freePorts(t, 2)
		s.URL, s.LDAPSURL = "ldap://"+ports[0], "ldaps://"+ports[1]
		s.args = []string{"-f", confPath, "-h", s.URL + "/ " + s.LDAPSURL + "/", "-d", "256"}
		err := s.startErr()
		if err == nil {
			break
		}
		if !errors.Is(err, errPortTaken) || attempt == 3 {
			t.Fatal(err)
		}
		s.logMu.Lock()
		s.log.Reset()
		s.logMu.Unlock()
	}
	s.Add(t, baseLDIF())
	return s
}

// Log returns what slapd has written so far.
func (s *Server) Log() string {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	return s.log.String()
}

// errPortTaken is startErr's error when slapd could not bind its ports.
var errPortTaken = errors.New("ldaptest: slapd's port was taken")

func (s *Server) start(t testing.TB) {
	t.Helper()
	if err := s.startErr(); err != nil {
		t.Fatal(err)
	}
}

// startErr starts slapd and waits until it accepts connections.
func (s *Server) startErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd := exec.Command(slapdBin(), s.args...)
	cmd.Dir = s.Dir
	cmd.Stdout = syncWriter{s.logMu, s.log}
	cmd.Stderr = syncWriter{s.logMu, s.log}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("ldaptest: start slapd: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.cmd, s.done, s.stopped = cmd, done, false
	addr := strings.TrimPrefix(s.URL, "ldap://")
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-done:
			if strings.Contains(s.Log(), "errno=98") {
				return fmt.Errorf("%w:\n%s", errPortTaken, s.Log())
			}
			return fmt.Errorf("ldaptest: slapd exited during start-up:\n%s", s.Log())
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("ldaptest: slapd not listening on %s after 20s:\n%s", addr, s.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop ends slapd (SIGTERM to its PID, SIGKILL after 10 seconds) and
// waits for it. The database stays; Restart starts it again.
func (s *Server) Stop(t testing.TB) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.stopped {
		return
	}
	s.stopped = true
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		t.Errorf("ldaptest: slapd pid %d ignored SIGTERM; killing it", s.cmd.Process.Pid)
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// Restart starts a stopped slapd again on the same ports and database.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.start(t)
}

// Add loads LDIF entries with ldapadd as the administrator.
func (s *Server) Add(t testing.TB, ldif string) {
	t.Helper()
	s.tool(t, "ldapadd", ldif)
}

// Modify applies an LDIF change set with ldapmodify as the administrator.
func (s *Server) Modify(t testing.TB, ldif string) {
	t.Helper()
	s.tool(t, "ldapmodify", ldif)
}

// Delete removes an entry with ldapdelete as the administrator.
func (s *Server) Delete(t testing.TB, dn string) {
	t.Helper()
	s.tool(t, "ldapdelete", "", dn)
}

// Disable sets employeeType: disabled on a person.
func (s *Server) Disable(t testing.TB, uid string) {
	t.Helper()
	s.Modify(t, "dn: "+UserDN(uid)+"\nchangetype: modify\nreplace: employeeType\nemployeeType: disabled\n")
}

// RemoveMember takes a person out of a group.
func (s *Server) RemoveMember(t testing.TB, groupDN, uid string) {
	t.Helper()
	s.Modify(t, "dn: "+groupDN+"\nchangetype: modify\ndelete: member\nmember: "+UserDN(uid)+"\n")
}

func (s *Server) tool(t testing.TB, bin, stdin string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	all := append([]string{"-x", "-H", s.URL, "-D", AdminDN, "-w", AdminPassword}, args...)
	cmd := exec.CommandContext(ctx, bin, all...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ldaptest: %s %v: %v\n%s", bin, args, err, out)
	}
}

func baseLDIF() string {
	var b strings.Builder
	fmt.Fprintf(&b, `dn: %s
objectClass: dcObject
objectClass: organization
o: Corp
dc: corp

dn: %s
objectClass: organizationalUnit
ou: people

dn: %s
objectClass: organizationalUnit
ou: groups

dn: ou=services,%s
objectClass: organizationalUnit
ou: services

dn: %s
objectClass: applicationProcess
objectClass: simpleSecurityObject
cn: palisade
userPassword: %s

`, Suffix, PeopleDN, GroupsDN, Suffix, ServiceDN, ServicePassword)
	for _, uid := range []string{"alice", "bob", "carol", "dave", "eve(x)"} {
		fmt.Fprintf(&b, "dn: %s\nobjectClass: inetOrgPerson\nuid: %s\ncn: %s\nsn: %s\nmail: %s@corp.example\nuserPassword: %s\n",
			UserDN(uid), uid, uid, uid, strings.NewReplacer("(", ".", ")", "").Replace(uid), People[uid])
		if uid == "dave" {
			b.WriteString("employeeType: disabled\n")
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "dn: %s\nobjectClass: groupOfNames\ncn: staff\nmember: %s\nmember: %s\nmember: %s\n\n",
		StaffDN, UserDN("alice"), UserDN("bob"), UserDN("dave"))
	fmt.Fprintf(&b, "dn: %s\nobjectClass: groupOfNames\ncn: interns\nmember: %s\n\n", InternsDN, UserDN("carol"))
	return b.String()
}

// freePorts returns n distinct free loopback host:port addresses.
func freePorts(t testing.TB, n int) []string {
	t.Helper()
	var ls []net.Listener
	var out []string
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("ldaptest: free port: %v", err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().String())
	}
	for _, l := range ls {
		l.Close()
	}
	return out
}
