package c2s

import (
	"errors"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// TLS record header length (RFC 8446 section 5.1).
const recordHeaderLen = 5

// recordConn sits under crypto/tls and hands it at most one TLS record per
// Read, keeping what it read past that record for the next Read. tls.Conn
// then never holds a complete record that it has not processed, so once
// the plaintext is drained, "nothing to read" is a property of the socket:
// an idle session waits for the socket itself (waitIdle) in a shallow
// stack, instead of parking deep inside tls.Conn.Read and the XML decoder
// with a stack the runtime cannot shrink. The wait reads what arrives into
// a borrowed buffer, so it costs no system call more than a plain read.
type recordConn struct {
	net.Conn
	raw syscall.RawConn // nil when the connection has none (net.Pipe)

	hdr   [recordHeaderLen]byte
	hn    int         // header bytes of the current record seen so far
	body  int         // body bytes of the current record not yet handed out
	extra []byte      // bytes read from the socket, not yet handed out
	buf   *[4096]byte // socketBuffers buffer that extra lies in, if any
	err   error       // a read error held back until extra is handed out
}

// socketBuffers lend the buffers an idle wait reads into; a session gives
// its buffer back as soon as TLS has taken the bytes.
var socketBuffers = sync.Pool{New: func() any { return new([4096]byte) }}

func newRecordConn(c net.Conn) *recordConn {
	r := &recordConn{Conn: c}
	if sc, ok := c.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			r.raw = raw
		}
	}
	return r
}

// Read returns bytes of the current TLS record only.
func (r *recordConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if len(r.extra) > 0 {
		n := r.scan(r.extra[:min(len(p), len(r.extra))])
		copy(p, r.extra[:n])
		r.extra = r.extra[n:]
		if len(r.extra) > 0 {
			return n, nil
		}
		r.release()
		err := r.err
		r.err = nil
		return n, err
	}
	if r.err != nil {
		err := r.err
		r.err = nil
		return 0, err
	}
	n, err := r.Conn.Read(p)
	keep := r.scan(p[:n])
	if keep < n {
		r.extra = append([]byte(nil), p[keep:n]...)
		r.err, err = err, nil
	}
	return keep, err
}

// release gives the borrowed buffer back once extra is drained.
func (r *recordConn) release() {
	r.extra = nil
	if r.buf != nil {
		socketBuffers.Put(r.buf)
		r.buf = nil
	}
}

// scan advances the record framing over b and returns how many leading
// bytes of b belong to the current record; the rest begins the next one.
func (r *recordConn) scan(b []byte) int {
	i := 0
	for i < len(b) {
		if r.hn < recordHeaderLen {
			r.hdr[r.hn] = b[i]
			r.hn++
			i++
			if r.hn == recordHeaderLen {
				r.body = int(r.hdr[3])<<8 | int(r.hdr[4])
				if r.body == 0 {
					r.hn = 0
					return i
				}
			}
			continue
		}
		k := min(r.body, len(b)-i)
		i += k
		r.body -= k
		if r.body == 0 {
			r.hn = 0
			return i
		}
	}
	return i
}

// poll reports whether bytes wait here or in the socket, reading what the
// socket has without blocking.
func (r *recordConn) poll() bool {
	if r.pending() {
		return true
	}
	if r.raw == nil {
		return false
	}
	r.readNow()
	return r.pending()
}

// pending reports whether bytes already read from the socket wait here.
func (r *recordConn) pending() bool { return len(r.extra) > 0 || r.err != nil }

// CloseWrite half-closes the TCP connection (used by lingerClose).
func (r *recordConn) CloseWrite() error {
	if cw, ok := r.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return r.Conn.Close()
}

// waitIdle waits until the socket has something, with the idle and ping
// timeouts of an idle connection: after idle it calls onIdle once, then
// waits ping more before failing with errTimeout. What arrives is read
// into a borrowed buffer for the next Read. Any other failure is left to
// the read that follows.
func (r *recordConn) waitIdle(idle, ping time.Duration, onIdle func()) error {
	if r.raw == nil || r.pending() {
		return nil
	}
	return idleWait(r.Conn.SetReadDeadline, idle, ping, onIdle, func() bool {
		return errors.Is(r.readIdle(), os.ErrDeadlineExceeded)
	})
}
