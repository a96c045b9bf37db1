package e2e

import (
	"testing"
)

func TestShutdown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	tcp := login(t, e, modeStartTLS, "alice", "tcp")
	direct := login(t, e, modeDirectTLS, "alice", "direct")
	ws := login(t, e, modeWS, "bob", "ws")
	sm := login(t, e, modeStartTLS, "carol", "sm")
	sm.enable()
	detached := login(t, e, modeStartTLS, "carol", "detached")
	detached.enable()
	_ = detached.raw.Close()
	negotiating := dial(t, e, modeStartTLS)
	negotiating.starttls()

	if err := e.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	for _, c := range []*client{tcp, direct, ws, sm} {
		c.expectStreamError("system-shutdown")
	}
	negotiating.expectStreamError("system-shutdown")
}
