//go:build unix

package c2s

import "syscall"

// openFileLimit returns the soft RLIMIT_NOFILE (the Go runtime raised it
// to the hard limit at start).
func openFileLimit() (uint64, bool) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0, false
	}
	return uint64(r.Cur), true
}
