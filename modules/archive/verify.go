package archive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/palisade-im/palisade/modules/archive/cosignature"
	"github.com/palisade-im/palisade/storage"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Problem is one thing verification found wrong.
type Problem struct {
	// Index is the first record index the problem concerns, or -1.
	Index int64
	Msg   string
}

func (p Problem) String() string {
	if p.Index < 0 {
		return p.Msg
	}
	return fmt.Sprintf("record %d: %s", p.Index, p.Msg)
}

// Report is the result of Verify.
type Report struct {
	Records int64
	// Purged counts the records whose content a retention purge removed:
	// they are verified through their stored leaf hash, and each must be
	// listed by the disposition record that purged it.
	Purged      int64
	Checkpoints int
	// Cosignatures counts the stored witness cosignatures verified with
	// the witness keys given; Unchecked those of witnesses not given.
	Cosignatures, Unchecked int
	// Head is the tree recomputed from the stored records.
	Head     storage.TreeHead
	Problems []Problem
}

// FirstBad returns the lowest record index named by a problem.
func (r Report) FirstBad() (int64, bool) {
	for _, p := range r.Problems {
		if p.Index >= 0 {
			return p.Index, true
		}
	}
	return 0, false
}

// External is a checkpoint obtained outside the journal database.
type External struct {
	Name string // where it came from, for messages
	Note []byte
}

// maxProblems bounds the problems one report lists.
const maxProblems = 100

// Verify recomputes the whole Merkle tree from the stored record bytes and
// checks it against the stored hashes, checks that every record decodes
// and matches its commitment, that every checkpoint is signed by v and
// commits to the recomputed tree of its size, and that each checkpoint is
// consistent with the next (an RFC 6962 consistency proof from the stored
// hashes). The error is for failures to read the journal, not for problems
// found, which are in the report.
//
// external are checkpoints obtained elsewhere (a sink's files, a witness):
// each is checked like the journal's own, so a checkpoint removed from the
// database, or a rewritten journal signed again, still shows.
func Verify(ctx context.Context, j storage.Journal, v note.Verifier, external ...External) (Report, error) {
	return VerifyWith(ctx, j, v, nil, external...)
}

// VerifyWith is Verify that also checks every stored cosignature of the
// witnesses whose keys are given: each must verify on its checkpoint.
func VerifyWith(ctx context.Context, j storage.Journal, v note.Verifier, witnesses []*cosignature.Verifier, external ...External) (Report, error) {
	var rep Report
	add := func(idx int64, format string, args ...any) {
		if len(rep.Problems) < maxProblems {
			rep.Problems = append(rep.Problems, Problem{Index: idx, Msg: fmt.Sprintf(format, args...)})
		}
	}

	cps, err := j.Checkpoints(ctx)
	if err != nil {
		return rep, err
	}
	rep.Checkpoints = len(cps)
	type signed struct {
		name string
		head storage.TreeHead
		ok   bool
	}
	heads := make([]signed, 0, len(cps)+len(external))
	want := map[int64][]int{} // tree size -> checkpoints of that size
	for i, c := range cps {
		name := fmt.Sprintf("checkpoint %d", i)
		h, err := ParseCheckpoint(c.Note, v)
		switch {
		case err != nil:
			add(-1, "%s (size %d): %v", name, c.Size, err)
		case h.Size != c.Size:
			add(-1, "%s: signed size %d, stored as %d", name, h.Size, c.Size)
		default:
			want[h.Size] = append(want[h.Size], len(heads))
			heads = append(heads, signed{name, h, true})
			checkCosigned(&rep, name, c, witnesses, add)
			continue
		}
		heads = append(heads, signed{name: name})
	}
	for _, e := range external {
		h, err := ParseCheckpoint(e.Note, v)
		if err != nil {
			add(-1, "%s: %v", e.Name, err)
			continue
		}
		want[h.Size] = append(want[h.Size], len(heads))
		heads = append(heads, signed{e.Name, h, true})
	}

	// Recompute the tree, keeping only its right edge in memory.
	edge := map[int64]tlog.Hash{}
	edgeReader := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			h, ok := edge[x]
			if !ok {
				return nil, fmt.Errorf("archive: verify: hash %d not on the tree's edge", x)
			}
			out[i] = h
		}
		return out, nil
	})
	checkHeads := func(size int64) error {
		idxs := want[size]
		if len(idxs) == 0 {
			return nil
		}
		root, err := tlog.TreeHash(size, edgeReader)
		if err != nil {
			return err
		}
		for _, i := range idxs {
			if heads[i].head.Hash != root {
				add(-1, "%s (size %d) does not match the records: a record before index %d was changed", heads[i].name, size, size)
			}
		}
		return nil
	}
	if err := checkHeads(0); err != nil {
		return rep, err
	}

	// Recomputed hashes are compared with the stored ones in chunks.
	var pendIdx []int64
	var pendHash []tlog.Hash
	badRecord := map[int64]bool{}
	compare := func() error {
		if len(pendIdx) == 0 {
			return nil
		}
		stored, err := j.ReadHashes(ctx, pendIdx)
		if err != nil {
			return err
		}
		// Leaves first: a changed record also changes every node above
		// it, which then says nothing more.
		for pass := 0; pass < 2; pass++ {
			for i, x := range pendIdx {
				if stored[i] == pendHash[i] {
					continue
				}
				level, n := tlog.SplitStoredHashIndex(x)
				if (level == 0) != (pass == 0) {
					continue
				}
				first, end := n<<uint(level), (n+1)<<uint(level)
				if level == 0 {
					badRecord[first] = true
					add(first, "the record's leaf hash differs from the stored hash: the record was changed")
					continue
				}
				covered := false
				for b := range badRecord {
					if b >= first && b < end {
						covered = true
						break
					}
				}
				if !covered {
					badRecord[first] = true
					add(first, "stored tree hash (level %d, records %d to %d) differs from the recomputed one", level, first, end-1)
				}
			}
		}
		pendIdx, pendHash = pendIdx[:0], pendHash[:0]
		return nil
	}

	var n int64
	gap := false
	errStop := errors.New("stop")
	// Sealed content needs its epoch key: one the journal lost can never
	// be decrypted again, which verify says once per missing key.
	var epochs map[string]bool
	if ek, ok := j.(storage.EpochKeys); ok {
		keys, err := ek.EpochKeys(ctx)
		if err != nil {
			return rep, err
		}
		epochs = map[string]bool{}
		for _, k := range keys {
			epochs[k.ID] = true
		}
	}
	type missingKey struct{ first, count int64 }
	missing := map[string]*missingKey{}
	purgedBy := map[int64][]int64{}        // disposition seq -> records it purged
	dispositions := map[int64][][2]int64{} // disposition seq -> ranges it lists
	err = j.Records(ctx, 0, 1<<62, func(r storage.JournalRecord) error {
		if r.Seq != n {
			add(n, "missing from the journal (the next stored record is %d)", r.Seq)
			gap = true
			return errStop
		}
		var hs []tlog.Hash
		if r.Purged {
			rep.Purged++
			if r.PurgedBy <= n {
				add(n, "purged by record %d, which is not a later disposition record", r.PurgedBy)
			}
			purgedBy[r.PurgedBy] = append(purgedBy[r.PurgedBy], n)
			leaf, err := j.ReadHashes(ctx, []int64{tlog.StoredHashIndex(0, n)})
			if err != nil {
				return err
			}
			if hs, err = tlog.StoredHashesForRecordHash(n, leaf[0], edgeReader); err != nil {
				return err
			}
		} else {
			rec, err := DecodeRecord(r.Data)
			if err == nil && epochs != nil && strings.HasPrefix(rec.Enc, EncAESGCMPrefix) {
				if id := strings.TrimPrefix(rec.Enc, EncAESGCMPrefix); !epochs[id] {
					if m := missing[id]; m != nil {
						m.count++
					} else {
						missing[id] = &missingKey{first: n, count: 1}
					}
				}
			}
			if err != nil {
				add(n, "%v", err)
			} else if rec.Kind == string(storage.KindDisposition) {
				var d dispositionRecord
				if err := json.Unmarshal([]byte(rec.Content), &d); err != nil {
					add(n, "disposition record does not decode: %v", err)
				}
				dispositions[n] = d.Ranges
			}
			if hs, err = tlog.StoredHashes(n, r.Data, edgeReader); err != nil {
				return err
			}
		}
		base := tlog.StoredHashIndex(0, n)
		for k, h := range hs {
			edge[base+int64(k)] = h
			pendIdx = append(pendIdx, base+int64(k))
			pendHash = append(pendHash, h)
		}
		n++
		keep := edgeIndexes(n)
		for x := range edge {
			if !slices.Contains(keep, x) {
				delete(edge, x)
			}
		}
		if len(pendIdx) >= 4096 {
			if err := compare(); err != nil {
				return err
			}
		}
		return checkHeads(n)
	})
	if err != nil && !errors.Is(err, errStop) {
		return rep, err
	}
	if err := compare(); err != nil {
		return rep, err
	}
	rep.Records = n
	ids := slices.Sorted(maps.Keys(missing))
	for _, id := range ids {
		m := missing[id]
		add(m.first, "sealed with epoch key %q, which the journal does not hold: the content of %d record(s) from here can never be decrypted", id, m.count)
	}
	for d, seqs := range purgedBy {
		ranges, ok := dispositions[d]
		for _, s := range seqs {
			if !ok {
				add(s, "purged, but record %d is not a disposition record", d)
				break
			}
			if !slices.ContainsFunc(ranges, func(r [2]int64) bool { return r[0] <= s && s <= r[1] }) {
				add(s, "purged, but disposition record %d does not list it", d)
			}
		}
	}
	root, err := tlog.TreeHash(n, edgeReader)
	if err != nil {
		return rep, err
	}
	rep.Head = storage.TreeHead{Size: n, Hash: root}
	if !gap {
		if head, err := j.TreeHead(ctx); err != nil {
			return rep, err
		} else if head != rep.Head {
			add(-1, "the stored tree head (size %d) differs from the recomputed one (size %d)", head.Size, n)
		}
	}
	for _, h := range heads {
		if h.ok && h.head.Size > n {
			add(n, "%s is for %d records but the journal holds %d: records were removed", h.name, h.head.Size, n)
		}
	}

	// Each signed checkpoint is consistent with the next larger one.
	order := make([]int, 0, len(heads))
	for i, h := range heads {
		if h.ok && h.head.Size <= n {
			order = append(order, i)
		}
	}
	sort.SliceStable(order, func(a, b int) bool { return heads[order[a]].head.Size < heads[order[b]].head.Size })
	stored := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) { return j.ReadHashes(ctx, idx) })
	for k := 1; k < len(order); k++ {
		a, b := heads[order[k-1]].head, heads[order[k]].head
		if a.Size == b.Size {
			if a.Hash != b.Hash {
				add(-1, "%s and %s sign different trees of size %d", heads[order[k-1]].name, heads[order[k]].name, a.Size)
			}
			continue
		}
		if a.Size == 0 {
			continue
		}
		p, err := tlog.ProveTree(b.Size, a.Size, stored)
		if err == nil {
			err = tlog.CheckTree(p, b.Size, b.Hash, a.Size, a.Hash)
		}
		if err != nil {
			add(-1, "%s (size %d) is not consistent with %s (size %d): %v", heads[order[k-1]].name, a.Size, heads[order[k]].name, b.Size, err)
		}
	}
	sort.SliceStable(rep.Problems, func(a, b int) bool {
		pa, pb := rep.Problems[a].Index, rep.Problems[b].Index
		if (pa < 0) != (pb < 0) {
			return pa >= 0
		}
		return pa < pb
	})
	return rep, nil
}

// checkCosigned verifies the cosignatures of checkpoint c with the keys
// of their witnesses; those of witnesses without a key are counted as
// unchecked.
func checkCosigned(rep *Report, name string, c storage.Checkpoint, witnesses []*cosignature.Verifier, add func(int64, string, ...any)) {
	for _, cs := range c.Cosignatures {
		i := slices.IndexFunc(witnesses, func(w *cosignature.Verifier) bool { return w.Name() == cs.Witness && w.KeyHash() == cs.KeyHash })
		if i < 0 {
			rep.Unchecked++
			continue
		}
		if _, _, err := cosignature.Open(append(slices.Clone(c.Note), cs.Line...), witnesses[i]); err != nil {
			add(-1, "%s (size %d): cosignature of witness %s does not verify: %v", name, c.Size, cs.Witness, err)
			continue
		}
		rep.Cosignatures++
	}
}

// edgeIndexes are the stored-hash indexes of the maximal complete subtrees
// of a tree of size n: all that TreeHash(n) and StoredHashes(n) read.
func edgeIndexes(n int64) []int64 {
	var out []int64
	for l := 0; n>>uint(l) > 0; l++ {
		if (n>>uint(l))&1 == 1 {
			out = append(out, tlog.StoredHashIndex(l, (n>>uint(l))-1))
		}
	}
	return out
}
