package archive

import (
	"context"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/palisade-im/palisade/server/config"
	"golang.org/x/mod/sumdb/note"
)

// TestSyslogAndHTTPSinks: a checkpoint reaches a syslog listener (UDP on
// loopback) and an HTTP collector, each as the signed note itself.
func TestSyslogAndHTTPSinks(t *testing.T) {
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	posted := make(chan []byte, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.Header.Get("X-Palisade-Tree-Size") == "" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		posted <- b
	}))
	defer srv.Close()
	refused := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "no", http.StatusForbidden)
	}))
	defer refused.Close()

	cfg := config.Default()
	cfg.Server.DataDir = t.TempDir()
	cfg.Archive.CheckpointSyslog = "udp://" + udp.LocalAddr().String()
	cfg.Archive.CheckpointURLs = []string{srv.URL + "/add"}
	f := newFixture(t)
	f.m.sinks = Sinks(cfg)
	if len(f.m.sinks) != 3 {
		t.Fatalf("sinks %+v", f.m.sinks)
	}
	ctx := context.Background()
	if err := f.m.Append(ctx, msg(t, "alice@example.com/a", "bob@example.com", "chat", "x")); err != nil {
		t.Fatal(err)
	}
	if err := f.m.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-posted:
		if _, err := note.Open(b, note.VerifierList(f.verifier)); err != nil {
			t.Fatalf("posted checkpoint: %v\n%s", err, b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("nothing posted")
	}
	buf := make([]byte, 4096)
	_ = udp.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := udp.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`palisade-checkpoint size=1 note=(\S+)`).FindStringSubmatch(string(buf[:n]))
	if m == nil {
		t.Fatalf("syslog line %q", buf[:n])
	}
	b, err := base64.StdEncoding.DecodeString(m[1])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open(b, note.VerifierList(f.verifier)); err != nil {
		t.Fatalf("syslog checkpoint: %v", err)
	}
	if !strings.Contains(string(buf[:n]), "palisade") {
		t.Errorf("no tag in %q", buf[:n])
	}
	if err := (HTTPSink{URL: refused.URL}).Publish(1, b); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("refusing collector: %v", err)
	}
}
