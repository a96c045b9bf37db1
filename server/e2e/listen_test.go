package e2e

import (
	"context"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/palisade-im/palisade/server"
	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/storage/sqlite"
	"go.uber.org/zap/zaptest"
)

// TestListenFailureStopsCleanly: an address already in use makes Run
// return an error naming that listener, after closing the listeners it had
// opened (the WebSocket server included), instead of hanging.
func TestListenFailureStopsCleanly(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg := config.Default()
	cfg.Server.DataDir = t.TempDir()
	cfg.Listen.C2S = freeAddr(t)
	cfg.Listen.C2SDirectTLS = ""
	cfg.Listen.WebSocket = freeAddr(t)
	cfg.Listen.Admin = busy.Addr().String()
	store, err := sqlite.Open(context.Background(), t.TempDir()+"/db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	srv, err := server.New(cfg, store, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(context.Background()) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "admin") {
			t.Fatalf("Run = %v, want an error about the admin listener", err)
		}
	case <-time.After(20 * time.Second):
		buf := make([]byte, 1<<20)
		t.Fatalf("Run did not return after a listener failed:\n%s", buf[:runtime.Stack(buf, true)])
	}
	for _, a := range []string{cfg.Listen.C2S, cfg.Listen.WebSocket} {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			t.Errorf("%s still open after Run returned: %v", a, err)
			continue
		}
		ln.Close()
	}
}
