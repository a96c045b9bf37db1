package conformance

import (
	"testing"
	"time"
)

// TestMamSlixmpp reads the user's history with slixmpp's xep_0313 plugin
// paged by xep_0059 (testdata/slix_mam.py): after a conversation of 26
// messages both sides hold it, each under its own ids, the recipient's
// first result id is the stanza-id it got on delivery, backward paging
// returns the same messages, metadata names the first and last; an
// offline message is in the recipient's history under the stanza-id it
// was delivered with.
func TestMamSlixmpp(t *testing.T) {
	s := newServer(t)
	RequireSlixmpp(t)
	_, port := HostPort(s.C2S)
	out, err := s.RunPeer(t, 70*time.Second, "slixmpp mam", nil, PythonBin, "testdata/slix_mam.py",
		"--port", port, "--ca", s.CAFile, "--timeout", "60",
		acct("alice"), acct("bob"), acct("carol"))
	if err != nil {
		t.Fatalf("slix_mam.py failed: %v\n%s", err, out)
	}
	wantLine(t, out, `STANZA-ID present`)
	wantLine(t, out, `BOB HISTORY 26 m00,m01,m02 thanks`)
	wantLine(t, out, `BOB FIRST ID MATCHES`)
	wantLine(t, out, `BOB BACKWARD PAGES 3`)
	wantLine(t, out, `BOB BACKWARDS 26 same`)
	wantLine(t, out, `ALICE WITH BOB 26 thanks bob@localhost`)
	wantLine(t, out, `METADATA start end`)
	wantLine(t, out, `CAROL HISTORY 1 while you were away id matches`)
	wantLine(t, out, `MAM OK`)
	t.Logf("slix_mam.py:\n%s", out)
}
