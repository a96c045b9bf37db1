package c2s

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/palisade-im/palisade/certs"
)

// chunkConn returns the given chunks one per Read, then err.
type chunkConn struct {
	net.Conn
	chunks [][]byte
	err    error
}

func (c *chunkConn) Read(p []byte) (int, error) {
	if len(c.chunks) == 0 {
		return 0, c.err
	}
	n := copy(p, c.chunks[0])
	c.chunks[0] = c.chunks[0][n:]
	if len(c.chunks[0]) == 0 {
		c.chunks = c.chunks[1:]
	}
	return n, nil
}

func record(body string) []byte {
	return append([]byte{23, 3, 3, byte(len(body) >> 8), byte(len(body))}, body...)
}

// readRecords reads r to the end and returns what each Read returned.
func readRecords(t *testing.T, r io.Reader) ([]string, error) {
	t.Helper()
	var out []string
	buf := make([]byte, 1024)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			out = append(out, string(buf[:n]))
		}
		if err != nil {
			return out, err
		}
	}
}

func TestRecordConnOneRecordPerRead(t *testing.T) {
	a, b, c := record("first"), record(""), record("third record")
	stream := bytes.Join([][]byte{a, b, c}, nil)
	cases := map[string][][]byte{
		"all in one read":      {stream},
		"byte by byte":         splitEvery(stream, 1),
		"header split":         {stream[:3], stream[3:]},
		"across record bounds": {stream[:7], stream[7:14], stream[14:]},
	}
	for name, chunks := range cases {
		t.Run(name, func(t *testing.T) {
			rc := &recordConn{Conn: &chunkConn{chunks: chunks, err: io.EOF}}
			got, err := readRecords(t, rc)
			if !errors.Is(err, io.EOF) {
				t.Fatalf("err = %v, want EOF", err)
			}
			// Concatenate reads into records: no read may span two.
			var recs []string
			cur := ""
			want := []string{string(a), string(b), string(c)}
			for _, g := range got {
				cur += g
				if len(recs) < len(want) && cur == want[len(recs)] {
					recs = append(recs, cur)
					cur = ""
				} else if len(recs) < len(want) && len(cur) > len(want[len(recs)]) {
					t.Fatalf("a read crossed a record boundary: reads %q", got)
				}
			}
			if len(recs) != 3 || cur != "" {
				t.Fatalf("reads %q, want the three records %q", got, want)
			}
			if rc.pending() {
				t.Error("pending after everything was read")
			}
		})
	}
}

func splitEvery(b []byte, n int) [][]byte {
	var out [][]byte
	for len(b) > n {
		out = append(out, b[:n])
		b = b[n:]
	}
	return append(out, b)
}

func TestRecordConnHoldsErrorBehindData(t *testing.T) {
	boom := errors.New("boom")
	stream := append(record("one"), record("two")...)
	rc := &recordConn{Conn: &chunkConn{chunks: [][]byte{stream}, err: boom}}
	buf := make([]byte, 100)
	n, err := rc.Read(buf)
	if err != nil || string(buf[:n]) != string(record("one")) {
		t.Fatalf("first read = %q, %v", buf[:n], err)
	}
	if !rc.pending() {
		t.Fatal("the second record is not pending")
	}
	n, err = rc.Read(buf)
	if string(buf[:n]) != string(record("two")) {
		t.Fatalf("second read = %q, %v", buf[:n], err)
	}
	if _, err := rc.Read(buf); !errors.Is(err, boom) {
		t.Fatalf("third read err = %v, want boom", err)
	}
}

// TestIdleWaitOverRealTLS: pipelined TLS records that arrive together are
// all delivered, and a drained connection waits for the socket (and times
// out with the idle settings) instead of for data TLS already holds.
func TestIdleWaitOverRealTLS(t *testing.T) {
	kp, err := certs.LoadOrCreate(t.TempDir(), []string{"localhost"}, "", "")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return
		}
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
		if err := tc.Handshake(); err != nil {
			return
		}
		// Three records written back to back: they reach the server's
		// socket together, so TLS could buffer two of them unseen.
		_, _ = tc.Write([]byte("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"))
		for _, s := range []string{"<a/>", "<b/>", "<c/>"} {
			_, _ = tc.Write([]byte(s))
		}
		time.Sleep(2 * time.Second)
		_ = tc.Close()
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rec := newRecordConn(c)
	tc := tls.Server(rec, certs.ServerConfig(kp))
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	tr := newTCPTransport(tc, rec, bounds{bytes: 1 << 16}, time.Second)
	if ev, err := tr.next(); err != nil || ev.kind != evOpen {
		t.Fatalf("stream header: %v %v", ev.kind, err)
	}
	pinged := 0
	tr.setIdle(200*time.Millisecond, 200*time.Millisecond, func() { pinged++ })
	var got []string
	for len(got) < 3 {
		if err := tr.wait(); err != nil {
			t.Fatalf("wait with %v read: %v", got, err)
		}
		ev, err := tr.next()
		if err != nil {
			t.Fatalf("next after %v: %v", got, err)
		}
		got = append(got, ev.el.Local)
	}
	if got[0] != "a" || got[1] != "b" || got[2] != "c" {
		t.Fatalf("got %v", got)
	}
	// Nothing more comes: the wait pings once, then times out.
	if err := tr.wait(); !errors.Is(err, errTimeout) {
		t.Fatalf("idle wait = %v, want connection-timeout", err)
	}
	if pinged != 1 {
		t.Errorf("pinged %d times, want 1", pinged)
	}
}
