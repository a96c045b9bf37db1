//go:build unix

package c2s

import (
	"io"
	"syscall"
)

// readIdle blocks until the socket has data, end of stream or an error,
// honouring the read deadline, and keeps what it read for Read. It holds
// a buffer only once there is something to put in it.
func (r *recordConn) readIdle() error {
	return r.raw.Read(func(fd uintptr) bool { return r.readFD(fd) })
}

// readNow reads what the socket has, without waiting.
func (r *recordConn) readNow() {
	_ = r.raw.Read(func(fd uintptr) bool {
		r.readFD(fd)
		return true
	})
}

// readFD reads once from fd into a borrowed buffer; false means the socket
// had nothing (EAGAIN).
func (r *recordConn) readFD(fd uintptr) bool {
	b := socketBuffers.Get().(*[4096]byte)
	for {
		n, err := syscall.Read(int(fd), b[:])
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			socketBuffers.Put(b)
			return false // wait for the poller
		case n > 0:
			r.buf, r.extra = b, b[:n]
		case err != nil:
			socketBuffers.Put(b)
			r.err = err
		default:
			socketBuffers.Put(b)
			r.err = io.EOF
		}
		return true
	}
}
