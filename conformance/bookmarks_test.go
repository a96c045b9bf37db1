package conformance

import (
	"testing"
	"time"
)

// TestBookmarksSlixmpp: two slixmpp clients of one account, one keeping
// bookmarks in private XML (XEP-0049, as poezio does) and one in XEP-0402
// PEP (as Converse does), see each other's bookmarks
// (testdata/slix_bookmarks.py): the account advertises
// urn:xmpp:bookmarks:1#compat and #compat-pep, a private XML bookmark is
// notified and listed as a urn:xmpp:bookmarks:1 item, a XEP-0402 publish
// and a retraction show in private XML.
func TestBookmarksSlixmpp(t *testing.T) {
	s := newServer(t)
	RequireSlixmpp(t)
	_, port := HostPort(s.C2S)
	out, err := s.RunPeer(t, 70*time.Second, "slixmpp bookmarks", nil, PythonBin, "testdata/slix_bookmarks.py",
		"--port", port, "--ca", s.CAFile, "--timeout", "60",
		acctRes("alice", "poezio"), acctRes("alice", "converse"))
	if err != nil {
		t.Fatalf("slix_bookmarks.py failed: %v\n%s", err, out)
	}
	wantLine(t, out, `FEATURES urn:xmpp:bookmarks:1#compat urn:xmpp:bookmarks:1#compat-pep`)
	wantLine(t, out, `EVENT PUBLISH coven@chat\.localhost`)
	wantLine(t, out, `ITEM coven@chat\.localhost The Coven true alice`)
	wantLine(t, out, `PRIVATE coven@chat\.localhost,orchard@chat\.localhost al`)
	wantLine(t, out, `PRIVATE orchard@chat\.localhost`)
	wantLine(t, out, `BOOKMARKS OK`)
	t.Logf("slix_bookmarks.py:\n%s", out)
}
