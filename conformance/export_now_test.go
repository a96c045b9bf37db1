package conformance

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestExportRightAfterConversation: an officer exports at once after a
// slixmpp conversation: the running server issues a fresh checkpoint on
// the CLI's request (POST /archive/checkpoint), so the bundle holds both
// messages and verify-export passes. With the server stopped, what the
// CLI journaled since its last checkpoint (an account created) is in the
// next export too: the CLI issues the checkpoint itself and publishes it
// to the directory sink.
func TestExportRightAfterConversation(t *testing.T) {
	RequireSlixmpp(t)
	s := newServer(t)
	mustSlix(t, s, tcpTransports[0], 40*time.Second, nil, "chat", acct("alice"), acct("bob"))

	bundle := filepath.Join(s.Dir, "now")
	out, err := archiveCLI(t, s, "export", "--out", bundle, "--kind", "message")
	if err != nil || !strings.Contains(out, "2 records in 1 conversation files") || strings.Contains(out, "not covered") {
		t.Fatalf("archive export right after the conversation: %v\n%s", err, out)
	}
	recs, err := os.ReadFile(filepath.Join(bundle, "records.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{"hello from a", "hello from b"} {
		if !strings.Contains(string(recs), `"body":"`+body+`"`) {
			t.Errorf("the bundle lacks %q:\n%s", body, recs)
		}
	}
	if out, err := archiveCLI(t, s, "verify-export", bundle); err != nil || !strings.HasSuffix(out, "\nOK\n") {
		t.Fatalf("verify-export: %v\n%s", err, out)
	}
	if !strings.Contains(s.Log(), `"msg":"archive_checkpoint_requested"`) {
		t.Error("the running server was not asked for the checkpoint")
	}

	s.Stop(t)
	sink := filepath.Join(s.DataDir, "checkpoints", "checkpoint-*.txt")
	before, _ := filepath.Glob(sink)
	s.AddUser(t, "dora@"+Domain, "quill-pen-ink-42")
	bundle2 := filepath.Join(s.Dir, "stopped.tar")
	out, err = archiveCLI(t, s, "export", "--out", bundle2, "--user", "dora@"+Domain)
	if err != nil || !strings.Contains(out, "1 records in 0 conversation files") || strings.Contains(out, "not covered") {
		t.Fatalf("archive export with the server stopped: %v\n%s", err, out)
	}
	if out, err := archiveCLI(t, s, "verify-export", bundle2); err != nil || !strings.HasSuffix(out, "\nOK\n") {
		t.Fatalf("verify-export: %v\n%s", err, out)
	}
	if after, _ := filepath.Glob(sink); len(after) != len(before)+1 {
		t.Errorf("checkpoint files: %d before the export, %d after", len(before), len(after))
	}
	if out, err := archiveCLI(t, s, "verify"); err != nil || !strings.Contains(out, "\nOK\n") {
		t.Fatalf("archive verify: %v\n%s", err, out)
	}
}
