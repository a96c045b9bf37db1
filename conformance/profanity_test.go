package conformance

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/palisade-im/palisade/storage/sqlite/journaltest"
)

// profanity 0.13 (Debian) is an interactive terminal client: each instance
// runs in its own tmux server (its own socket), is typed at with send-keys
// and read back with capture-pane and its debug log.

type profanity struct {
	t      *testing.T
	name   string
	socket string
	home   string
	log    string
}

// startProfanity runs profanity for one account in a fresh HOME that
// trusts the server's certificate through profanity's certificate path.
func startProfanity(t *testing.T, s *Server, name string) *profanity {
	t.Helper()
	RequirePeer(t, "profanity")
	RequirePeer(t, "tmux")
	RequirePeer(t, "openssl")
	home := filepath.Join(s.Dir, "profanity-"+name)
	certs := filepath.Join(home, "certs")
	if err := os.MkdirAll(certs, 0o700); err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(s.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(certs, "server.pem"), ca, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("openssl", "rehash", certs).CombinedOutput(); err != nil {
		t.Fatalf("openssl rehash: %v\n%s", err, out)
	}
	p := &profanity{t: t, name: name, socket: filepath.Join(s.Dir, "tmux-"+name), home: home,
		log: filepath.Join(home, ".local", "share", "profanity", "logs", "profanity.log")}
	p.tmux("new-session", "-d", "-x", "220", "-y", "60", "-s", name,
		"env", "HOME="+home, "TERM=xterm", "profanity", "-l", "DEBUG")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s screen:\n%s", name, p.screen())
		}
		_ = exec.Command("tmux", "-S", p.socket, "kill-server").Run()
	})
	p.waitScreen("Debug mode enabled", 20*time.Second)
	p.cmd("/tls certpath set " + certs)
	p.waitScreen("Certificate path set", 10*time.Second)
	_, port := HostPort(s.C2S)
	p.cmd(fmt.Sprintf("/connect %s@%s server 127.0.0.1 port %s", name, Domain, port))
	p.waitScreen("(?i)password", 10*time.Second)
	p.cmd(accounts[name])
	p.waitScreen(regexp.QuoteMeta(name+"@"+Domain)+`/\S+ logged in successfully`, 30*time.Second)
	return p
}

func (p *profanity) tmux(args ...string) string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "tmux", append([]string{"-S", p.socket}, args...)...).CombinedOutput()
	if err != nil {
		p.t.Fatalf("tmux %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// cmd types a line and Enter.
func (p *profanity) cmd(line string) {
	p.t.Helper()
	p.tmux("send-keys", "-t", p.name+":", "-l", line)
	p.tmux("send-keys", "-t", p.name+":", "Enter")
}

func (p *profanity) screen() string {
	out, err := exec.Command("tmux", "-S", p.socket, "capture-pane", "-p", "-J", "-S", "-200", "-t", p.name+":").CombinedOutput()
	if err != nil {
		return fmt.Sprintf("(capture-pane: %v)", err)
	}
	return string(out)
}

// waitScreen waits for re on the screen (with 200 lines of history) and
// returns the first match.
func (p *profanity) waitScreen(re string, timeout time.Duration) string {
	p.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(timeout)
	for {
		if m := rx.FindString(p.screen()); m != "" {
			return m
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: no /%s/ on screen within %v:\n%s", p.name, re, timeout, p.screen())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitLog waits for re in profanity's debug log (the XML it sent and got).
func (p *profanity) waitLog(re string, timeout time.Duration) string {
	p.t.Helper()
	m, ok := p.tryLog(re, timeout)
	if !ok {
		p.t.Fatalf("%s: no /%s/ in %s within %v", p.name, re, p.log, timeout)
	}
	return m
}

// tryLog is waitLog that reports a timeout instead of failing.
func (p *profanity) tryLog(re string, timeout time.Duration) (string, bool) {
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(timeout)
	for {
		b, _ := os.ReadFile(p.log)
		if m := rx.Find(b); m != nil {
			return string(m), true
		}
		if time.Now().After(deadline) {
			return "", false
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// logTail is the end of profanity's debug log.
func (p *profanity) logTail(n int) string {
	b, _ := os.ReadFile(p.log)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

var fingerprintRE = `[0-9a-f]{8}(?:-[0-9a-f]{8}){7}`

// trust makes p trust the OMEMO identity of contact's device.
func (p *profanity) trust(contact string) {
	p.t.Helper()
	p.cmd("/omemo fingerprint " + contact)
	m := p.waitScreen(regexp.QuoteMeta(contact)+"'s OMEMO fingerprint: "+fingerprintRE, 20*time.Second)
	fp := regexp.MustCompile(fingerprintRE).FindString(m)
	bundles := p.countLog(bundleRE)
	p.cmd("/omemo trust " + contact + " " + fp)
	p.waitScreen(regexp.QuoteMeta(contact)+"'s OMEMO fingerprint: "+regexp.QuoteMeta(fp)+` \(trusted\)`, 10*time.Second)
	// Trusting makes profanity fetch the bundle again and build its
	// session from it: a line typed before that answer cannot be
	// encrypted ("cannot be decrypted for any recipient").
	deadline := time.Now().Add(10 * time.Second)
	for p.countLog(bundleRE) <= bundles && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
}

// bundleRE is an OMEMO bundle arriving in profanity's debug log.
var bundleRE = regexp.MustCompile(`RECV: <iq[^\n]*<items node="eu\.siacs\.conversations\.axolotl\.bundles:`)

// countLog counts the matches of re in profanity's debug log.
func (p *profanity) countLog(re *regexp.Regexp) int {
	b, _ := os.ReadFile(p.log)
	return len(re.FindAll(b, -1))
}

// sendOMEMO types line in p's OMEMO chat window and waits until profanity
// sent it encrypted. When it sent nothing (it has been seen to refuse the
// first line on a loaded machine, its session not yet built), the user
// types it again once; the screen and log are kept in the test log.
// Whether and how it is delivered is checked on the recipient's side.
func (p *profanity) sendOMEMO(line string) {
	p.t.Helper()
	sent := regexp.MustCompile(`SENT: <message[^\n]*<encrypted xmlns="eu.siacs.conversations.axolotl">[^\n]*<payload>`)
	before := p.countLog(sent)
	p.cmd(line)
	deadline := time.Now().Add(20 * time.Second)
	for p.countLog(sent) <= before {
		if time.Now().After(deadline) {
			p.t.Logf("%s sent no OMEMO message within 20s; typing it again. Screen:\n%s\nLog tail:\n%s", p.name, p.screen(), p.logTail(6000))
			p.cmd(line)
			p.waitLog(sent.String(), 30*time.Second)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestProfanityOMEMO: two profanity clients log in (STARTTLS, certificate
// verified), publish OMEMO device lists and bundles through PEP before they
// know each other, subscribe to each other both ways, and then, with no
// further presence, each knows the other's device (PEP last items sent on
// subscription approval); an OMEMO-encrypted message goes through and is
// decrypted, a plain one too, and the server's journal holds the encrypted
// stanza without its plaintext.
func TestProfanityOMEMO(t *testing.T) {
	s := newServer(t)
	alice := startProfanity(t, s, "alice")
	bob := startProfanity(t, s, "bob")
	a, b := "alice@"+Domain, "bob@"+Domain

	omemoContacts(t, alice, bob, a, b)

	// Each side's device list reached the other as a PEP event.
	alice.waitLog(`RECV: <message[^>]*from="`+regexp.QuoteMeta(b)+`"[^>]*>(<[^>]*>)*?<items node="eu.siacs.conversations.axolotl.devicelist"`, 30*time.Second)
	bob.waitLog(`RECV: <message[^>]*from="`+regexp.QuoteMeta(a)+`"[^>]*>(<[^>]*>)*?<items node="eu.siacs.conversations.axolotl.devicelist"`, 30*time.Second)

	alice.cmd("/msg " + b + " plain hello from alice")
	bob.waitScreen(`chat message: `+regexp.QuoteMeta(a), 20*time.Second)
	bob.cmd("/win 2")
	bob.waitScreen(regexp.QuoteMeta(a)+`/\S+: plain hello from alice`, 20*time.Second)
	bob.cmd("/win 1")

	// Starting OMEMO fetches bob's bundle (PEP items get); profanity then
	// encrypts only to devices its user trusts.
	alice.cmd("/win 2")
	alice.cmd("/omemo start " + b)
	alice.waitScreen(`\[OMEMO\]`, 20*time.Second)
	alice.trust(b)
	alice.sendOMEMO("omemo secret 4711")
	bob.cmd("/win 2")
	bob.waitScreen(`~ `+regexp.QuoteMeta(a)+`/\S+: omemo secret 4711`, 30*time.Second)

	journal := journalText(t, s)
	if !strings.Contains(journal, "plain hello from alice") {
		t.Error("the plain message is not in the journal")
	}
	if !strings.Contains(journal, "eu.siacs.conversations.axolotl") {
		t.Error("no OMEMO-encrypted message in the journal")
	}
	if strings.Contains(journal, "omemo secret 4711") {
		t.Error("the journal holds the OMEMO plaintext: the server could read it")
	}
}

// journalText is every journal record's stored bytes, read from the
// running server's journal, opened read-only.
func journalText(t *testing.T, s *Server) string {
	t.Helper()
	recs, err := journaltest.Records(filepath.Join(s.DataDir, "journal.db"))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, r := range recs {
		b.Write(r.Data)
		b.WriteByte('\n')
	}
	return b.String()
}

// omemoContacts makes OMEMO keys in two profanity clients and subscribes
// them to each other both ways (a and b are their bare JIDs).
func omemoContacts(t *testing.T, alice, bob *profanity, a, b string) {
	t.Helper()
	for _, p := range []*profanity{alice, bob} {
		p.cmd("/omemo gen")
		p.waitScreen(`Your Device ID is \d+`, 60*time.Second)
	}
	alice.cmd("/roster add " + b + " Bob")
	alice.cmd("/sub request " + b)
	bob.waitScreen("Received authorization request from "+regexp.QuoteMeta(a), 20*time.Second)
	bob.cmd("/sub allow " + a)
	bob.cmd("/sub request " + a)
	alice.waitScreen("Received authorization request from "+regexp.QuoteMeta(b), 20*time.Second)
	alice.cmd("/sub allow " + b)
}
