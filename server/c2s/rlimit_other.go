//go:build !unix

package c2s

// openFileLimit is unknown here: no connection cap is derived.
func openFileLimit() (uint64, bool) { return 0, false }
