package loadgen

import (
	"math/bits"
	"time"
)

// Histogram records durations in log-linear buckets (HDR style): 64
// sub-buckets per power of two, so a reported percentile is within 1.6% of
// the recorded value. The zero value is ready; it is not safe for
// concurrent use (give each goroutine its own and Merge them).
type Histogram struct {
	counts [64 * 64]uint64
	n      uint64
	max    int64
}

const subBits = 6

func bucketOf(v int64) int {
	if v < 1<<subBits {
		if v < 0 {
			v = 0
		}
		return int(v)
	}
	e := 63 - bits.LeadingZeros64(uint64(v)) - subBits // >= 0
	sub := int(v>>uint(e)) & (1<<subBits - 1)
	return (e+1)<<subBits | sub
}

// bucketValue is the upper edge of a bucket.
func bucketValue(b int) int64 {
	e := b>>subBits - 1
	sub := int64(b & (1<<subBits - 1))
	if e < 0 {
		return sub
	}
	return (1<<subBits|sub+1)<<uint(e) - 1
}

// Record adds one duration.
func (h *Histogram) Record(d time.Duration) {
	v := int64(d)
	b := bucketOf(v)
	if b >= len(h.counts) {
		b = len(h.counts) - 1
	}
	h.counts[b]++
	h.n++
	if v > h.max {
		h.max = v
	}
}

// Merge adds o's samples.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	if o.max > h.max {
		h.max = o.max
	}
}

// Count is the number of samples.
func (h *Histogram) Count() uint64 { return h.n }

// Quantile returns the duration below which the fraction q of samples lie.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.5)
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			v := bucketValue(i)
			if v > h.max {
				v = h.max
			}
			return time.Duration(v)
		}
	}
	return time.Duration(h.max)
}

// Max is the largest sample.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }
