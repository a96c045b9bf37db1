package conformance

import (
	"strings"
	"testing"
	"time"
)

// TestPepSlixmpp drives XEP-0163 with slixmpp's xep_0060, xep_0163,
// xep_0115, xep_0172 and xep_0107 plugins (testdata/slix_pep.py): a
// nickname and an OMEMO-style device list published with publish-options
// access_model=open reach a mutual contact that announced +notify for
// them (as last items when it comes online, then live), a mood it did not
// ask for does not; the precondition-not-met / reconfigure / republish
// round of Conversations works; a non-contact reads the open node but not
// the presence one.
func TestPepSlixmpp(t *testing.T) {
	s := newServer(t)
	RequireSlixmpp(t)
	_, port := HostPort(s.C2S)
	out, err := s.RunPeer(t, 90*time.Second, "slixmpp pep", nil, PythonBin, "testdata/slix_pep.py",
		"--port", port, "--ca", s.CAFile, "--timeout", "80",
		acct("alice"), acct("bob"), acct("carol"))
	if err != nil {
		t.Fatalf("slix_pep.py failed: %v\n%s", err, out)
	}
	wantLine(t, out, `SUBSCRIBED`)
	wantLine(t, out, `PUBLISH OPTIONS conflict precondition-not-met`)
	wantLine(t, out, `BUNDLE PUBLISHED`)
	wantLine(t, out, `EVENT NICK alice@localhost Alice One DELAYED`)
	wantLine(t, out, `EVENT DEVICELIST alice@localhost 1,2`)
	wantLine(t, out, `EVENT NICK alice@localhost Alice Two LIVE`)
	wantLine(t, out, `CAROL DEVICELIST 1,2`)
	wantLine(t, out, `CAROL NICK not-authorized`)
	wantLine(t, out, `ALICE ITEMS current`)
	wantLine(t, out, `PEP OK`)
	t.Logf("slix_pep.py:\n%s", out)
	if strings.Contains(out, "EVENT OTHER") {
		t.Errorf("bob got a notification he did not ask for:\n%s", out)
	}
}

// TestPepAioxmppAvatar: aioxmpp's AvatarService (XEP-0084) publishes an
// avatar; a mutual contact whose AvatarService announced +notify for the
// metadata node (through EntityCapsService) gets the notification and
// fetches the image from the data node.
func TestPepAioxmppAvatar(t *testing.T) {
	requireAioxmpp(t)
	s := newServer(t)
	_, port := HostPort(s.C2S)
	out, err := s.RunPeer(t, 60*time.Second, "aioxmpp avatar", nil, PythonBin, "testdata/aiox_pep.py",
		"--port", port, "--ca", s.CAFile, "--timeout", "50", acct("alice"), acct("bob"))
	if err != nil {
		t.Fatalf("aiox_pep.py failed: %v\n%s", err, out)
	}
	wantLine(t, out, `SUBSCRIBED`)
	wantLine(t, out, `METADATA alice@localhost [0-9a-f]{40} image/png \d+`)
	wantLine(t, out, `IMAGE \d+ SHA1 OK`)
	wantLine(t, out, `AVATAR OK`)
	t.Logf("aiox_pep.py:\n%s", out)
}
