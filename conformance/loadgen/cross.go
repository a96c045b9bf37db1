package loadgen

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// CrossTraffic configures a pairs run whose two sides log in to different
// servers (for example two federated domains): pair i is AAccounts[i] on
// the A dialer and BAccounts[i] on the B dialer, and each sends to the
// other across the servers exactly as RunPairs does within one.
type CrossTraffic struct {
	// Traffic holds the pair count, window or rate, warm-up, length and
	// drain; its Accounts and Sampler are not used.
	Traffic
	// AAccounts and BAccounts supply Pairs accounts each, registered on
	// the A and the B server.
	AAccounts []Account
	BAccounts []Account
	// Samplers sample the server processes (both sides): the result's
	// server CPU cores and RSS are their sums. Nil entries are skipped.
	Samplers []*Sampler
}

// RunCrossPairs runs closed-loop (Window > 0) or open-loop (Rate > 0)
// traffic between users of a (one side of each pair) and users of b (the
// other side). Latency is measured by the generator's clock, as in
// RunPairs.
func RunCrossPairs(ctx context.Context, a, b *Dialer, tr CrossTraffic) (ThroughputResult, error) {
	res := ThroughputResult{Pairs: tr.Pairs, Window: tr.Window, OfferedRate: tr.Rate}
	if len(tr.AAccounts) < tr.Pairs || len(tr.BAccounts) < tr.Pairs {
		return res, fmt.Errorf("need %d accounts on each side, have %d and %d", tr.Pairs, len(tr.AAccounts), len(tr.BAccounts))
	}
	if (tr.Window > 0) == (tr.Rate > 0) {
		return res, errors.New("set exactly one of Window and Rate")
	}
	var (
		wg         sync.WaitGroup
		ca, cb     []*Conn
		errA, errB error
	)
	wg.Add(2)
	go func() { defer wg.Done(); ca, errA = a.LoginAll(ctx, tr.AAccounts[:tr.Pairs], 16) }()
	go func() { defer wg.Done(); cb, errB = b.LoginAll(ctx, tr.BAccounts[:tr.Pairs], 16) }()
	wg.Wait()
	if err := errors.Join(wrapSide(a, errA), wrapSide(b, errB)); err != nil {
		for _, c := range append(ca, cb...) {
			c.Abort()
		}
		return res, err
	}
	return runPairs(ctx, tr.Traffic, interleave(ca, cb), samplerSet(tr.Samplers))
}

func wrapSide(d *Dialer, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s (%s): %w", d.Domain, d.Addr, err)
}

// interleave makes the pair layout runPairs expects: a[i] and b[i] are
// conns 2i and 2i+1.
func interleave(a, b []*Conn) []*Conn {
	out := make([]*Conn, 0, 2*len(a))
	for i := range a {
		out = append(out, a[i], b[i])
	}
	return out
}

// samplerSet samples several server processes over one window.
type samplerSet []*Sampler

// Start takes the first sample of each.
func (ss samplerSet) Start() error {
	var errs []error
	for _, s := range ss {
		errs = append(errs, s.Start())
	}
	return errors.Join(errs...)
}

// Stop takes the second samples and returns the sum of the CPU cores used
// and of the RSS at the end.
func (ss samplerSet) Stop() (cores float64, rss int64, err error) {
	var errs []error
	for _, s := range ss {
		c, r, err := s.Stop()
		cores += c
		rss += r
		errs = append(errs, err)
	}
	return cores, rss, errors.Join(errs...)
}

// genCores is the generator's CPU over the last window, as the first
// sampler measured it.
func (ss samplerSet) genCores() float64 {
	for _, s := range ss {
		if s != nil && s.PID != 0 {
			return s.GenCores
		}
	}
	return 0
}
