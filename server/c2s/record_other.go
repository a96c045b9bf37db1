//go:build !unix

package c2s

// readIdle cannot wait shallowly here; the read that follows waits instead.
func (r *recordConn) readIdle() error { return nil }

// readNow cannot read without blocking here.
func (r *recordConn) readNow() {}
