package recordlog

import (
	"io"
	"syscall"
	"unsafe"
)

// The appender's frame write and fdatasync are raw system calls, so that
// the goroutine keeps its P (the Go scheduler's processor) through them. A
// regular system call that blocks lets the scheduler hand the P to other
// goroutines, and the caller then waits for a P behind every runnable
// session goroutine: at 1000 pairs in the benchmark, commits of 15 records
// took up to 85 ms that way. The journal's committer is the message path's
// one serial stage; it holds its P for the ~0.3-1 ms of these calls.

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
