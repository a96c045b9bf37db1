package server

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// A handler that panics costs one bounded log line per request (no stack
// trace, nothing from net/http's own error log) and the connection.
func TestGuardHandlerPanic(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	big := strings.Repeat("x", 10_000)
	mux := http.NewServeMux()
	mux.HandleFunc("/boom", func(http.ResponseWriter, *http.Request) { panic("boom " + big) })
	mux.HandleFunc("/abort", func(http.ResponseWriter, *http.Request) { panic(http.ErrAbortHandler) })
	hs := newHTTPServer(mux, nil, zap.New(core))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = hs.Serve(ln) }()
	defer hs.Close()

	for i := 0; i < 3; i++ {
		resp, err := http.Get("http://" + ln.Addr().String() + "/boom")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			t.Fatalf("a panicking handler answered %s", resp.Status)
		}
	}
	if resp, err := http.Get("http://" + ln.Addr().String() + "/abort"); err == nil {
		resp.Body.Close()
		t.Fatalf("an aborting handler answered %s", resp.Status)
	}
	if logs.Len() != 3 {
		t.Fatalf("%d log lines for 3 panics and an abort, want 3: %v", logs.Len(), logs.All())
	}
	for _, e := range logs.All() {
		m := e.ContextMap()
		line := e.Message + " " + m["panic"].(string) + " " + m["at"].(string)
		if e.Message != "http handler panic" || len(line) > 3*maxPanicText || strings.Contains(line, "\n") ||
			!strings.Contains(m["at"].(string), "TestGuardHandlerPanic") || m["path"] != "/boom" {
			t.Errorf("panic line %q %v", e.Message, m)
		}
	}
}

// net/http's error log becomes bounded warnings whose message leaves out
// the client's address (so that a flood of them is one kind of line).
func TestHTTPErrorLog(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	l := httpErrorLog(zap.New(core))
	l.Printf("http: TLS handshake error from 192.0.2.1:4242: EOF")
	l.Printf("http: TLS handshake error from 192.0.2.2:4343: tls: first record does not look like a TLS handshake")
	l.Printf("http: panic serving 192.0.2.1:1: %s\ngoroutine 1 [running]:\n%s", strings.Repeat("y", 5000), strings.Repeat("frame\n", 500))
	l.Printf("http: Accept error: too many open files; retrying in 5ms")
	want := []string{"http: TLS handshake error", "http: TLS handshake error", "http: panic", "http: Accept error"}
	if logs.Len() != len(want) {
		t.Fatalf("%d lines, want %d", logs.Len(), len(want))
	}
	for i, e := range logs.All() {
		d := e.ContextMap()["detail"].(string)
		if e.Message != want[i] || len(d) > maxPanicText+3 || strings.Contains(d, "\n") {
			t.Errorf("line %d: %q detail %q", i, e.Message, d)
		}
	}
}
