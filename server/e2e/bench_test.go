package e2e

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/palisade-im/palisade/server/config"
)

// BenchmarkMessages measures the whole c2s hot path over loopback TLS:
// read, stamp 'from', policy chain, journal, route, queue and write. Each
// iteration is one 200-byte message delivered from a sender to its peer's
// full JID, with a window of 16 in flight per pair (as the side-by-side
// harness does). Profile it with
//
//	go test -run '^$' -bench Messages -cpuprofile cpu.out ./server/e2e/
func BenchmarkMessages(b *testing.B) {
	for _, pairs := range []int{1, 10} {
		b.Run(fmt.Sprintf("pairs=%d", pairs), func(b *testing.B) { benchPairs(b, pairs, nil) })
	}
}

// BenchmarkMessagesArchive is BenchmarkMessages (10 pairs) with the
// journal off, on, and on with officer encryption at rest.
func BenchmarkMessagesArchive(b *testing.B) {
	b.Run("archive=off", func(b *testing.B) {
		benchPairs(b, 10, func(c *config.Config) { c.Archive.Enabled = false })
	})
	b.Run("archive=on", func(b *testing.B) { benchPairs(b, 10, nil) })
	b.Run("archive=sealed", func(b *testing.B) {
		_, key := writeOfficerKey(b)
		benchPairs(b, 10, func(c *config.Config) { c.Archive.OfficerKeys = []string{key} })
	})
}

const benchWindow = 16

// benchBody is the 200-byte payload, like the harness's.
var benchBody = strings.Repeat("x", 200)

// countMessages counts complete <message/> elements on a raw stream
// without parsing: the client's cost must stay small beside the server's.
func countMessages(c *client, got chan<- struct{}, done <-chan struct{}) {
	_ = c.conn.SetReadDeadline(time.Time{}) // login left one
	end := []byte("</message>")
	buf := make([]byte, 64<<10)
	var carry []byte
	for {
		n, err := c.conn.Read(buf)
		if n > 0 {
			data := append(carry, buf[:n]...)
			k := bytes.Count(data, end)
			for range k {
				select {
				case got <- struct{}{}:
				case <-done:
					return
				}
			}
			if last := bytes.LastIndex(data, end); last >= 0 {
				data = data[last+len(end):]
			}
			if len(data) > len(end) {
				data = data[len(data)-len(end):]
			}
			carry = append(carry[:0], data...)
		}
		if err != nil {
			return
		}
	}
}

func benchPairs(b *testing.B, pairs int, mod func(*config.Config)) {
	e := newEnv(b, func(c *config.Config) {
		c.Limits.SendQueue = 100000
		c.Limits.MaxSessionsPerUser = 1000
		c.Limits.ReadBytesPerSecond = 0 // capacity, not the flood limit
		if mod != nil {
			mod(c)
		}
	})
	type pair struct {
		from, to *client
		got      chan struct{}
	}
	done := make(chan struct{})
	defer close(done)
	ps := make([]pair, pairs)
	for i := range ps {
		from := dial(b, e, modeStartTLS)
		from.authed("alice")
		from.bind(fmt.Sprintf("s%d", i))
		to := dial(b, e, modeStartTLS)
		to.authed("bob")
		to.bind(fmt.Sprintf("r%d", i))
		ps[i] = pair{from: from, to: to, got: make(chan struct{}, benchWindow)}
		go countMessages(to, ps[i].got, done)
	}
	per := b.N / pairs
	extra := b.N % pairs
	b.SetBytes(int64(len(benchBody)))
	b.ResetTimer()
	var wg sync.WaitGroup
	for i, p := range ps {
		n := per
		if i < extra {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := fmt.Sprintf("<message to='%s' type='chat'><body>%s</body></message>", p.to.jid, benchBody)
			inFlight := 0
			for sent := 0; sent < n; sent++ {
				if inFlight == benchWindow {
					<-p.got
					inFlight--
				}
				if err := p.from.trySend(msg); err != nil {
					b.Error(err)
					return
				}
				inFlight++
			}
			for ; inFlight > 0; inFlight-- {
				<-p.got
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
