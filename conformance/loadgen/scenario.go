package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// MessageSize is the size in bytes of every <message/> the scenarios send.
const MessageSize = 200

// epoch is the origin of the timestamps carried in message bodies; sender
// and receiver live in one process, so monotonic time since epoch works.
var epoch = time.Now()

func now() int64 { return int64(time.Since(epoch)) }

// message builds a 200-byte chat message to `to` whose body starts with the
// timestamp ts (ns since epoch) and the sequence number.
func message(buf []byte, to string, ts int64, seq uint64) []byte {
	buf = append(buf[:0], "<message to='"...)
	buf = append(buf, to...)
	buf = append(buf, "' type='chat'><body>"...)
	buf = strconv.AppendInt(buf, ts, 10)
	buf = append(buf, ' ')
	buf = strconv.AppendUint(buf, seq, 10)
	buf = append(buf, ' ')
	const tail = "</body></message>"
	for len(buf) < MessageSize-len(tail) {
		buf = append(buf, 'x')
	}
	return append(buf, tail...)
}

// nsBench is the namespace of the IQ payload of IQ traffic: no server
// serves it, so an IQ carrying it is relayed between the clients.
const nsBench = "urn:x-palisade:bench"

// benchIQ builds a 200-byte IQ set to the full JID `to` carrying the
// timestamp ts and the sequence number, as message does. The receiver does
// not answer it: the traffic is one-way, like the messages.
func benchIQ(buf []byte, to string, ts int64, seq uint64) []byte {
	buf = append(buf[:0], "<iq type='set' to='"...)
	buf = append(buf, to...)
	buf = append(buf, "' id='b"...)
	buf = strconv.AppendUint(buf, seq, 10)
	buf = append(buf, "'><query xmlns='"+nsBench+"'>"...)
	buf = strconv.AppendInt(buf, ts, 10)
	buf = append(buf, ' ')
	buf = strconv.AppendUint(buf, seq, 10)
	buf = append(buf, ' ')
	const tail = "</query></iq>"
	for len(buf) < MessageSize-len(tail) {
		buf = append(buf, 'x')
	}
	return append(buf, tail...)
}

// bodyTimestamp extracts the send timestamp from a received message or
// bench IQ.
func bodyTimestamp(el []byte) (int64, bool) {
	var b []byte
	switch string(elemName(el)) {
	case "message":
		i := bytes.Index(el, []byte("<body>"))
		if i < 0 {
			return 0, false
		}
		b = el[i+len("<body>"):]
	case "iq":
		// The server writes the payload again, quoting as it likes.
		i := bytes.Index(el, []byte(nsBench))
		if i < 0 {
			return 0, false
		}
		j := bytes.IndexByte(el[i:], '>')
		if j < 0 {
			return 0, false
		}
		b = el[i+j+1:]
	default:
		return 0, false
	}
	sp := bytes.IndexByte(b, ' ')
	if sp < 0 {
		return 0, false
	}
	ts, err := strconv.ParseInt(string(b[:sp]), 10, 64)
	return ts, err == nil
}

// bare strips the resource from a full JID.
func bare(full string) string {
	if i := strings.IndexByte(full, '/'); i >= 0 {
		return full[:i]
	}
	return full
}

// LoginAll logs accounts in with at most conc logins at a time and initial
// presence. On any failure it closes what it opened and returns the error.
func (d *Dialer) LoginAll(ctx context.Context, accounts []Account, conc int) ([]*Conn, error) {
	conns := make([]*Conn, len(accounts))
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, conc)
	for i := range accounts {
		sem <- struct{}{}
		mu.Lock()
		failed := firstErr != nil
		mu.Unlock()
		if failed {
			<-sem
			break
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := d.Login(ctx, accounts[i], true)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
			conns[i] = c
		}(i)
	}
	wg.Wait()
	if firstErr != nil {
		for _, c := range conns {
			if c != nil {
				c.Abort()
			}
		}
		return nil, firstErr
	}
	return conns, nil
}

// Sampler measures a server process over a measurement window.
type Sampler struct {
	PID      int
	start    ProcStat
	selfCPU  time.Duration
	t0       time.Time
	GenCores float64 // the generator's own CPU over the last window
}

// Start takes the first sample.
func (s *Sampler) Start() error {
	if s == nil || s.PID == 0 {
		return nil
	}
	st, err := SampleTree(s.PID)
	s.start, s.t0 = st, time.Now()
	_, s.selfCPU, _ = sampleOne(os.Getpid())
	return err
}

// Stop takes the second sample and returns CPU cores used on average and
// the RSS at the end.
func (s *Sampler) Stop() (cores float64, rss int64, err error) {
	if s == nil || s.PID == 0 {
		return 0, 0, nil
	}
	st, err := SampleTree(s.PID)
	if err != nil {
		return 0, 0, err
	}
	el := time.Since(s.t0)
	if _, self, err := sampleOne(os.Getpid()); err == nil {
		s.GenCores = float64(self-s.selfCPU) / float64(el)
	}
	return float64(st.CPU-s.start.CPU) / float64(el), st.RSS, nil
}

// Latency is a latency summary in milliseconds.
type Latency struct {
	P50  float64 `json:"p50_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p999_ms"`
	Max  float64 `json:"max_ms"`
	N    uint64  `json:"samples"`
}

func summarize(h *Histogram) Latency {
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	return Latency{P50: ms(h.Quantile(0.5)), P99: ms(h.Quantile(0.99)), P999: ms(h.Quantile(0.999)), Max: ms(h.Max()), N: h.Count()}
}

// ThroughputResult is one closed-loop or open-loop run.
type ThroughputResult struct {
	Pairs       int     `json:"pairs"`
	Window      int     `json:"window,omitempty"`
	OfferedRate float64 `json:"offered_msgs_per_s,omitempty"`
	Seconds     float64 `json:"seconds"`
	Sent        uint64  `json:"sent"`
	Delivered   uint64  `json:"delivered"`
	MsgsPerSec  float64 `json:"msgs_per_s"`
	Latency     Latency `json:"latency"`
	// Missing counts messages sent in the window that had not arrived
	// when the run ended (open loop only).
	Missing uint64 `json:"missing,omitempty"`
	// Undrained counts messages of the whole run (warm-up included) still
	// in flight when the generator gave up waiting and disconnected.
	Undrained uint64  `json:"undrained,omitempty"`
	CPUCores  float64 `json:"server_cpu_cores"`
	CPUPerMsg float64 `json:"server_cpu_us_per_msg"`
	RSS       int64   `json:"server_rss_bytes"`
	GenCores  float64 `json:"generator_cpu_cores"`
	Errors    int     `json:"errors"`
	FirstErr  string  `json:"first_error,omitempty"`
}

// Traffic configures a pairs run.
type Traffic struct {
	Pairs  int
	Window int     // closed loop: messages in flight per sender; 0 with Rate
	Rate   float64 // open loop: total msgs/s over all senders
	Warmup time.Duration
	Length time.Duration
	// Accounts supplies 2*Pairs accounts: pair i is accounts 2i and 2i+1.
	Accounts []Account
	Sampler  *Sampler
	// Drain bounds the wait for messages in flight after the window;
	// zero means 10s.
	Drain time.Duration
	// IQ sends IQ sets to the partner's full JID instead of messages
	// (the cost of relaying, and journaling, IQs between clients).
	IQ bool
}

func (tr Traffic) drain() time.Duration {
	if tr.Drain > 0 {
		return tr.Drain
	}
	return 10 * time.Second
}

// pairConn is one side of a pair.
type pairConn struct {
	c       *Conn
	peerJID string // the partner's full JID
	iq      bool   // send bench IQs, always to the full JID
	window  chan struct{}
	hist    Histogram
}

// RunPairs runs closed-loop (Window > 0) or open-loop (Rate > 0) traffic:
// both sides of each pair send to each other, alternating between the
// partner's full and bare JID (IQs: always the full JID).
func (d *Dialer) RunPairs(ctx context.Context, tr Traffic) (ThroughputResult, error) {
	res := ThroughputResult{Pairs: tr.Pairs, Window: tr.Window, OfferedRate: tr.Rate}
	if len(tr.Accounts) < 2*tr.Pairs {
		return res, fmt.Errorf("need %d accounts, have %d", 2*tr.Pairs, len(tr.Accounts))
	}
	if (tr.Window > 0) == (tr.Rate > 0) {
		return res, errors.New("set exactly one of Window and Rate")
	}
	conns, err := d.LoginAll(ctx, tr.Accounts[:2*tr.Pairs], 32)
	if err != nil {
		return res, err
	}
	return runPairs(ctx, tr, conns, samplerSet{tr.Sampler})
}

// runPairs drives the traffic of RunPairs over logged-in conns: pair i is
// conns 2i and 2i+1. It closes the conns. ss samples the servers.
func runPairs(ctx context.Context, tr Traffic, conns []*Conn, ss samplerSet) (ThroughputResult, error) {
	res := ThroughputResult{Pairs: tr.Pairs, Window: tr.Window, OfferedRate: tr.Rate}
	pcs := make([]*pairConn, len(conns))
	for i, c := range conns {
		pcs[i] = &pairConn{c: c, iq: tr.IQ}
		if tr.Window > 0 {
			pcs[i].window = make(chan struct{}, tr.Window)
		}
	}
	for i := range pcs {
		pcs[i].peerJID = conns[i^1].JID
	}
	// Let initial presence settle before traffic.
	time.Sleep(200 * time.Millisecond)

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var (
		measuring atomic.Bool
		mStart    atomic.Int64 // ns since epoch; messages stamped before are warm-up
		mEnd      atomic.Int64
		delivered atomic.Uint64 // arrivals inside the window (wall clock)
		sentWin   atomic.Uint64 // sent with a timestamp inside the window
		arrWin    atomic.Uint64 // arrivals of messages stamped inside the window
		sentAll   atomic.Uint64
		arrAll    atomic.Uint64
		errMu     sync.Mutex
	)
	mEnd.Store(1<<62 - 1)
	mStart.Store(1<<62 - 1)
	noteErr := func(err error) {
		if runCtx.Err() != nil {
			return
		}
		errMu.Lock()
		res.Errors++
		if res.FirstErr == "" {
			res.FirstErr = err.Error()
		}
		errMu.Unlock()
	}
	inWindow := func(ts int64) bool { return ts >= mStart.Load() && ts < mEnd.Load() }

	var readers, writers sync.WaitGroup
	for i, pc := range pcs {
		partner := pcs[i^1]
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				el, err := pc.c.Next()
				if err != nil {
					noteErr(fmt.Errorf("read %s: %w", pc.c.JID, err))
					return
				}
				if typ, _ := attr(el, "type"); typ == "error" {
					// A bounce (e.g. from a federation that is not up)
					// is no delivery.
					noteErr(fmt.Errorf("%s got an error stanza: %.400s", pc.c.JID, el))
					continue
				}
				ts, ok := bodyTimestamp(el)
				if !ok {
					continue
				}
				t := now()
				arrAll.Add(1)
				if partner.window != nil {
					select {
					case <-partner.window:
					default:
					}
				}
				if measuring.Load() {
					delivered.Add(1)
				}
				if inWindow(ts) {
					arrWin.Add(1)
					pc.hist.Record(time.Duration(t - ts))
				}
			}
		}()
		writers.Add(1)
		go func(i int) {
			defer writers.Done()
			var err error
			if tr.Window > 0 {
				err = closedLoopSender(runCtx, pc, &sentWin, &sentAll, inWindow)
			} else {
				each := tr.Rate / float64(len(pcs))
				offset := time.Duration(float64(time.Second) / tr.Rate * float64(i))
				err = openLoopSender(runCtx, pc, each, offset, &sentWin, &sentAll, inWindow)
			}
			if err != nil {
				noteErr(fmt.Errorf("write %s: %w", pc.c.JID, err))
			}
		}(i)
	}

	sleep(ctx, tr.Warmup)
	if err := ss.Start(); err != nil {
		noteErr(err)
	}
	start := time.Now()
	mStart.Store(now())
	measuring.Store(true)
	sleep(ctx, tr.Length)
	measuring.Store(false)
	mEnd.Store(now())
	el := time.Since(start)
	cores, rss, err := ss.Stop()
	if err != nil {
		noteErr(err)
	}
	stop()
	writers.Wait()
	// Let everything in flight arrive, so that the next run starts on an
	// idle server (and messages stamped inside the window are counted),
	// but give up after Drain.
	drain := time.Now().Add(tr.drain())
	for arrAll.Load() < sentAll.Load() && time.Now().Before(drain) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	res.Undrained = sentAll.Load() - min(arrAll.Load(), sentAll.Load())
	for _, pc := range pcs {
		pc.c.Abort()
	}
	readers.Wait()

	var h Histogram
	for _, pc := range pcs {
		h.Merge(&pc.hist)
	}
	res.Seconds = el.Seconds()
	res.Sent = sentWin.Load()
	res.Delivered = delivered.Load()
	res.MsgsPerSec = float64(res.Delivered) / el.Seconds()
	res.Latency = summarize(&h)
	if tr.Rate > 0 && res.Sent > arrWin.Load() {
		res.Missing = res.Sent - arrWin.Load()
	}
	res.CPUCores, res.RSS = cores, rss
	res.GenCores = ss.genCores()
	if res.Delivered > 0 {
		res.CPUPerMsg = cores * el.Seconds() / float64(res.Delivered) * 1e6
	}
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	return res, nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// stanza builds the seq'th stanza to the partner: a message to its full
// or bare JID in turn, or a bench IQ to its full JID.
func (pc *pairConn) stanza(buf []byte, full, bareJID string, ts int64, seq uint64) []byte {
	if pc.iq {
		return benchIQ(buf, full, ts, seq)
	}
	to := full
	if seq&1 == 1 {
		to = bareJID
	}
	return message(buf, to, ts, seq)
}

func closedLoopSender(ctx context.Context, pc *pairConn, sentWin, sentAll *atomic.Uint64, inWindow func(int64) bool) error {
	full, bareJID := pc.peerJID, bare(pc.peerJID)
	buf := make([]byte, 0, MessageSize)
	for seq := uint64(0); ; seq++ {
		select {
		case pc.window <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		ts := now()
		buf = pc.stanza(buf, full, bareJID, ts, seq)
		if err := pc.c.Write(buf); err != nil {
			return err
		}
		sentAll.Add(1)
		if inWindow(ts) {
			sentWin.Add(1)
		}
	}
}

// openLoopSender sends at a fixed rate; each message carries its intended
// send time, so a server that falls behind shows as latency rather than as
// a slower schedule.
func openLoopSender(ctx context.Context, pc *pairConn, rate float64, offset time.Duration, sentWin, sentAll *atomic.Uint64, inWindow func(int64) bool) error {
	full, bareJID := pc.peerJID, bare(pc.peerJID)
	interval := float64(time.Second) / rate
	next := float64(now()) + float64(offset)
	buf := make([]byte, 0, MessageSize*8)
	var seq uint64
	for ctx.Err() == nil {
		t := float64(now())
		buf = buf[:0]
		n := 0
		for next <= t && n < 64 {
			ts := int64(next)
			buf = append(buf, pc.stanza(nil, full, bareJID, ts, seq)...)
			if inWindow(ts) {
				sentWin.Add(1)
			}
			seq++
			n++
			next += interval
		}
		if n > 0 {
			if err := pc.c.Write(buf); err != nil {
				return err
			}
			sentAll.Add(uint64(n))
			continue
		}
		wait := time.Duration(next - t)
		sleep(ctx, wait)
	}
	return nil
}

// LoginResult is one logins/s run.
type LoginResult struct {
	Mechanism   string    `json:"mechanism"`
	Concurrency int       `json:"concurrency"`
	Seconds     float64   `json:"seconds"`
	Logins      uint64    `json:"logins"`
	PerSec      float64   `json:"logins_per_s"`
	Latency     Latency   `json:"latency"`
	CPUCores    float64   `json:"server_cpu_cores"`
	GenCores    float64   `json:"generator_cpu_cores"`
	Errors      int       `json:"errors"`
	FirstErr    string    `json:"first_error,omitempty"`
	Info        LoginInfo `json:"negotiated"`
}

// RunLogins logs in and out repeatedly with conc workers: TCP, STARTTLS,
// SASL with d.Mechanisms, bind, close. Only logins that finish inside the
// measurement window count.
func (d *Dialer) RunLogins(ctx context.Context, accounts []Account, conc int, warmup, length time.Duration, sampler *Sampler) (LoginResult, error) {
	res := LoginResult{Concurrency: conc}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var (
		measuring atomic.Bool
		count     atomic.Uint64
		mu        sync.Mutex
		closers   sync.WaitGroup
		wg        sync.WaitGroup
		next      atomic.Uint64
	)
	hists := make([]Histogram, conc)
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for runCtx.Err() == nil {
				a := accounts[int(next.Add(1))%len(accounts)]
				a.Resource = ""
				t0 := time.Now()
				c, err := d.Login(runCtx, a, false)
				if err != nil {
					if runCtx.Err() != nil {
						return
					}
					mu.Lock()
					res.Errors++
					if res.FirstErr == "" {
						res.FirstErr = err.Error()
					}
					mu.Unlock()
					time.Sleep(10 * time.Millisecond)
					continue
				}
				if measuring.Load() {
					count.Add(1)
					hists[w].Record(time.Since(t0))
				}
				mu.Lock()
				if res.Info.Mechanism == "" {
					res.Info = c.Info
				}
				mu.Unlock()
				closers.Add(1)
				go func() { defer closers.Done(); c.Close() }()
			}
		}(w)
	}
	sleep(ctx, warmup)
	if err := sampler.Start(); err != nil {
		return res, err
	}
	start := time.Now()
	measuring.Store(true)
	sleep(ctx, length)
	measuring.Store(false)
	el := time.Since(start)
	cores, _, err := sampler.Stop()
	stop()
	wg.Wait()
	closers.Wait()
	if err != nil {
		return res, err
	}
	var h Histogram
	for i := range hists {
		h.Merge(&hists[i])
	}
	res.Mechanism = res.Info.Mechanism
	res.Seconds = el.Seconds()
	res.Logins = count.Load()
	res.PerSec = float64(res.Logins) / el.Seconds()
	res.Latency = summarize(&h)
	res.CPUCores = cores
	if sampler != nil {
		res.GenCores = sampler.GenCores
	}
	return res, ctx.Err()
}

// IdleStep is the state of an idle-session hold after one step.
type IdleStep struct {
	Target  int     `json:"target"`
	Reached int     `json:"reached"`
	Seconds float64 `json:"seconds"`
	Err     string  `json:"error,omitempty"`
}

// HoldIdle logs in sessions (with initial presence if asked) and holds them without
// reading: after each step's target is reached (or the first login fails)
// it calls step, and continues to the next target while step returns true.
// account(i) names the i-th session's account. All sessions are closed
// when it returns.
func (d *Dialer) HoldIdle(ctx context.Context, account func(int) Account, presence bool, targets []int, conc int, step func(IdleStep) bool) error {
	var (
		mu    sync.Mutex
		conns []*Conn
		wg    sync.WaitGroup
	)
	defer func() {
		for _, c := range conns {
			c.Abort()
		}
	}()
	n := 0
	for _, target := range targets {
		t0 := time.Now()
		var failure error
		sem := make(chan struct{}, conc)
		for ; n < target && ctx.Err() == nil; n++ {
			mu.Lock()
			failed := failure != nil
			mu.Unlock()
			if failed {
				break
			}
			sem <- struct{}{}
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				defer func() { <-sem }()
				c, err := d.Login(ctx, account(i), presence)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					if failure == nil {
						failure = err
					}
					return
				}
				conns = append(conns, c)
			}(n)
		}
		wg.Wait()
		mu.Lock()
		st := IdleStep{Target: target, Reached: len(conns), Seconds: time.Since(t0).Seconds()}
		if failure != nil {
			st.Err = failure.Error()
		}
		n = len(conns)
		mu.Unlock()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !step(st) || failure != nil {
			return nil
		}
	}
	return nil
}
