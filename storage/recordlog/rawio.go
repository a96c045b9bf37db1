package recordlog

import (
	"io"
	"os"
	"syscall"
	"unsafe"
)

// The appender's frame write and the fdatasyncs are raw system calls, so
// that the goroutine keeps its P (the Go scheduler's processor) through
// them. A regular system call that blocks lets the scheduler hand the P to
// other goroutines, and the caller then waits for a P behind every
// runnable session goroutine: at 1000 pairs in the benchmark, commits of
// 15 records took up to 85 ms that way, and with regular fdatasyncs the
// journal carried 16.0k / 37.5k msgs/s at 1 / 10 pairs against 22.0k /
// 48.5k with raw ones (the hand-offs cost more CPU than the held P). The
// journal's write and flushes are the message path's serial stage; they
// hold their P for the ~0.3-1 ms of these calls. Only one fdatasync at a
// time is raw (Sync.Wait): a disk that stalls for seconds then holds one
// P, not every P of a 2-CPU machine; measured, that cost nothing clear
// (100 / 1000 pairs: 58.0k / 49.8k against 62.6k / 50.0k, within noise).

// rawPwrite writes all of b at off.
func rawPwrite(fd uintptr, b []byte, off int64) error {
	for len(b) > 0 {
		n, _, e := syscall.RawSyscall6(syscall.SYS_PWRITE64, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(off), 0, 0)
		switch {
		case e == syscall.EINTR:
			continue
		case e != 0:
			return e
		case n == 0:
			return io.ErrShortWrite
		}
		b = b[n:]
		off += int64(n)
	}
	return nil
}

// iovMax is how many buffers one pwritev takes (Linux's IOV_MAX).
const iovMax = 1024

// rawPwritev writes bufs, in order, at off: one pwritev per iovMax
// buffers, and what a short write left of those one buffer at a time.
// iov is scratch space, kept by the caller.
func rawPwritev(fd uintptr, bufs [][]byte, off int64, iov *[]syscall.Iovec) error {
	defer func() { clear((*iov)[:cap(*iov)]) }() // no references to the buffers
	for len(bufs) > 0 {
		chunk := bufs[:min(len(bufs), iovMax)]
		v, want := (*iov)[:0], 0
		for _, b := range chunk {
			if len(b) > 0 {
				v = append(v, syscall.Iovec{Base: &b[0]})
				v[len(v)-1].SetLen(len(b))
				want += len(b)
			}
		}
		*iov = v
		if want > 0 {
			n, _, e := syscall.RawSyscall6(syscall.SYS_PWRITEV, fd, uintptr(unsafe.Pointer(&v[0])), uintptr(len(v)), uintptr(off), 0, 0)
			if e == syscall.EINTR {
				continue // nothing was written
			}
			if e != 0 {
				return e
			}
			if skip := int(n); skip < want {
				at := off + int64(n)
				for _, b := range chunk {
					if skip >= len(b) {
						skip -= len(b)
						continue
					}
					if err := rawPwrite(fd, b[skip:], at); err != nil {
						return err
					}
					at += int64(len(b) - skip)
					skip = 0
				}
			}
			off += int64(want)
		}
		bufs = bufs[len(chunk):]
	}
	return nil
}

// rawFdatasync makes fd's data durable.
func rawFdatasync(fd uintptr) error {
	for {
		_, _, e := syscall.RawSyscall(syscall.SYS_FDATASYNC, fd, 0, 0)
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			return e
		}
		return nil
	}
}

// fdatasync makes f's data durable through a regular system call, which
// lets the scheduler give the P to other goroutines meanwhile.
func fdatasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}
