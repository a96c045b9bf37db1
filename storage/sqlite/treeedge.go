package sqlite

import (
	"context"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"
)

// treeEdge is the right edge of the journal's tree of size records: for
// each level l where size has bit l set, the root of the complete subtree
// of 2^l records there. It is all that tlog.TreeHash(size) and the next
// records' stored hashes read.
type treeEdge struct {
	size  int64
	level [64]tlog.Hash
}

// readEdge reads the edge of the tree of n records from the stored hashes.
func (j *Journal) readEdge(ctx context.Context, n int64) (treeEdge, error) {
	e := treeEdge{size: n}
	var idx []int64
	var levels []int
	for l := 0; n>>uint(l) > 0; l++ {
		if (n>>uint(l))&1 == 1 {
			idx = append(idx, tlog.StoredHashIndex(l, (n>>uint(l))-1))
			levels = append(levels, l)
		}
	}
	hs, err := j.ReadHashes(ctx, idx)
	if err != nil {
		return e, fmt.Errorf("read tree edge: %w", err)
	}
	for i, l := range levels {
		e.level[l] = hs[i]
	}
	return e, nil
}

// appendLeaf adds the record with leaf hash h to the tree and appends its
// stored hashes (tlog.StoredHashes) to buf: the leaf, then the root of
// every complete subtree it completes, each the node over the edge's
// subtree of that level and the one before.
func (e *treeEdge) appendLeaf(buf []byte, h tlog.Hash) []byte {
	buf = append(buf, h[:]...)
	l := 0
	for m := e.size; m&1 == 1; m >>= 1 {
		h = tlog.NodeHash(e.level[l], h)
		buf = append(buf, h[:]...)
		l++
	}
	e.level[l] = h
	e.size++
	return buf
}

// root is the tree's hash, tlog.TreeHash(e.size).
func (e *treeEdge) root() (tlog.Hash, error) {
	return tlog.TreeHash(e.size, tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			l, n := tlog.SplitStoredHashIndex(x)
			if (e.size>>uint(l))&1 != 1 || n != (e.size>>uint(l))-1 {
				return nil, fmt.Errorf("sqlite: journal tree head: hash %d not on the tree's edge", x)
			}
			out[i] = e.level[l]
		}
		return out, nil
	}))
}
