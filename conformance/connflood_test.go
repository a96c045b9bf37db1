package conformance

import (
	"context"
	"net"
	"regexp"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Defaults of [limits] the flood meets (server/config Default()); the
// test server runs with them.
const (
	floodPerIP       = 50               // max_unauthenticated_per_ip
	floodAuthTimeout = 30 * time.Second // auth_timeout
)

// TestConnFloodLogin: 5,000 idle TCP connections and 200 slowloris
// connections (a byte of a stream header every 3 s) from 127.0.0.2-5;
// the server keeps at most max_unauthenticated_per_ip of them per address
// open (the rest are refused at once), logs the refusals once per address
// rather than once per connection, a real client (slixmpp) from
// 127.0.0.1 logs in meanwhile, and every flood connection it accepted is
// cut by auth_timeout from accept, however slowly it sends.
func TestConnFloodLogin(t *testing.T) {
	RequireSlixmpp(t)
	s := newServer(t)
	const idle, slow = 5000, 200
	from := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"}

	// Bound this process's own descriptors: each flood connection is
	// closed as soon as the server closes it; at most maxOpen are open at
	// once, so a server that kept them all would stall the dialer (a
	// failure below), not exhaust our limit.
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	maxOpen := min(idle+slow, int(lim.Cur)-256)
	if maxOpen < 4*floodPerIP+64 {
		t.Fatalf("open-file limit %d too low for the flood", lim.Cur)
	}
	sem := make(chan struct{}, maxOpen)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	// openBy counts flood connections the server has not closed, per
	// source address; accepted marks when each was dialed.
	var openBy [4]atomic.Int64
	var refusedDial atomic.Int64
	defer func() {
		cancel()
		mu.Lock()
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}()
	header := []byte("<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>")
	// dial opens one flood connection; the goroutine it starts reads until
	// the server closes it (a slowloris one also writes a byte every 3 s).
	dial := func(i int, slowloris bool) bool {
		select {
		case sem <- struct{}{}:
		case <-time.After(20 * time.Second):
			return false
		}
		a := i % len(from)
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from[a])}}
		c, err := d.DialContext(ctx, "tcp", s.C2S)
		if err != nil {
			refusedDial.Add(1)
			<-sem
			return true
		}
		mu.Lock()
		conns[c] = true
		mu.Unlock()
		openBy[a].Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			defer func() {
				openBy[a].Add(-1)
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
				_ = c.Close()
			}()
			if slowloris {
				go func() {
					tick := time.NewTicker(3 * time.Second)
					defer tick.Stop()
					for k := 0; k < len(header); k++ {
						select {
						case <-ctx.Done():
							return
						case <-tick.C:
						}
						if _, err := c.Write(header[k : k+1]); err != nil {
							return
						}
					}
				}()
			}
			buf := make([]byte, 512)
			for {
				if _, err := c.Read(buf); err != nil {
					return
				}
			}
		}()
		return true
	}
	floodStart := time.Now()
	for i := 0; i < idle+slow; i++ {
		if !dial(i, i%26 == 0) {
			t.Fatalf("after %d connections the server still holds %d of them open (%d per address allowed)", i, maxOpen, floodPerIP)
		}
	}
	floodDone := time.Now()
	t.Logf("%d connections dialed in %v (%d dials failed)", idle+slow, floodDone.Sub(floodStart), refusedDial.Load())

	// Past the cap every connection is refused at once: the count per
	// address comes down to the cap.
	held := func() (per [4]int64, total int64) {
		for a := range openBy {
			per[a] = openBy[a].Load()
			total += per[a]
		}
		return
	}
	settle := time.Now().Add(10 * time.Second)
	for {
		per, _ := held()
		ok := true
		for _, n := range per {
			ok = ok && n <= floodPerIP
		}
		if ok {
			break
		}
		if time.Now().After(settle) {
			t.Fatalf("connections held open per address: %v, want at most %d each", per, floodPerIP)
		}
		time.Sleep(100 * time.Millisecond)
	}
	per, total := held()
	t.Logf("held by the server after the flood: %v (%d)", per, total)

	// A real client logs in from 127.0.0.1 while the flood is held.
	out := mustSlix(t, s, tcpTransports[0], 40*time.Second, nil, "login", acct("alice"))
	wantLine(t, out, `LOGIN OK alice \S+ alice@localhost/\S+`)

	// Refusals are logged once per address and interval, not per
	// connection.
	n := len(regexp.MustCompile(`"msg":"connection_refused"`).FindAllStringIndex(s.Log(), -1))
	if n == 0 || n > 2*len(from) {
		t.Errorf("%d connection_refused audit events for %d addresses, want 1 to %d", n, len(from), 2*len(from))
	}

	// Every accepted flood connection is cut by auth_timeout from its
	// accept, the slowloris ones too.
	cut := floodDone.Add(floodAuthTimeout + 10*time.Second)
	for {
		if _, total := held(); total == 0 {
			break
		}
		if time.Now().After(cut) {
			per, _ := held()
			t.Fatalf("flood connections still open %v after auth_timeout (%v) from accept: %v", time.Since(floodDone), floodAuthTimeout, per)
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("all flood connections closed %v after the flood", time.Since(floodDone))
}
