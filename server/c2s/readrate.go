package c2s

import (
	"net"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// readBucket is the token bucket on a bound session's reader
// (Config.ReadBytesPerSecond), as Prosody's mod_limits: the bytes of each
// read are taken from it, and when it runs dry the reader sleeps before
// returning them, so nothing more is read meanwhile: the socket buffer
// fills and TCP slows the client down. Nothing is buffered beyond the one
// read and the session is not cut.
type readBucket struct {
	lim   *rate.Limiter
	burst int
	stop  chan struct{}
	once  sync.Once
}

func newReadBucket(perSecond, burst int) *readBucket {
	burst = max(burst, 1)
	return &readBucket{lim: rate.NewLimiter(rate.Limit(perSecond), burst), burst: burst, stop: make(chan struct{})}
}

// take spends n bytes, sleeping while the bucket is in debt; it returns
// net.ErrClosed at once when the transport closes meanwhile.
func (b *readBucket) take(n int) error {
	for n > 0 {
		k := min(n, b.burst)
		n -= k
		d := b.lim.ReserveN(time.Now(), k).Delay()
		if d <= 0 {
			continue
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-b.stop:
			t.Stop()
			return net.ErrClosed
		}
	}
	return nil
}

// close wakes a reader sleeping in take; nil-safe, idempotent.
func (b *readBucket) close() {
	if b != nil {
		b.once.Do(func() { close(b.stop) })
	}
}
