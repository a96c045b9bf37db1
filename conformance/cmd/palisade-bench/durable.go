package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"
)

// durableProbe is what one durable write costs on the disk the servers'
// data directories are on, measured before any server starts: the journal
// makes every record durable before its message is delivered, so this is
// a floor under the latency of "archive on".
type durableProbe struct {
	Writes int     `json:"writes"`
	P50Ms  float64 `json:"p50_ms"`
	P90Ms  float64 `json:"p90_ms"`
	CPUUs  float64 `json:"cpu_us_per_write"`
}

// probeDurable writes n 4 KiB blocks at consecutive offsets, each followed
// by fdatasync, into a file in dir filled with zeros and made durable
// first (as the record log preallocates), and measures each write's
// latency and the process's CPU per write (user and system; nothing else
// runs in the process then).
func probeDurable(dir string, n int) (durableProbe, error) {
	p := durableProbe{Writes: n}
	path := filepath.Join(dir, "durable-probe")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return p, fmt.Errorf("durable-write probe: %w", err)
	}
	defer os.Remove(path)
	defer f.Close()
	const block = 4096
	if _, err := f.Write(make([]byte, n*block)); err != nil {
		return p, fmt.Errorf("durable-write probe: %w", err)
	}
	if err := f.Sync(); err != nil {
		return p, fmt.Errorf("durable-write probe: %w", err)
	}
	buf := make([]byte, block)
	for i := range buf {
		buf[i] = byte(i)
	}
	lat := make([]time.Duration, 0, n)
	var before, after syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &before); err != nil {
		return p, fmt.Errorf("durable-write probe: %w", err)
	}
	for i := range n {
		start := time.Now()
		if _, err := f.WriteAt(buf, int64(i*block)); err != nil {
			return p, fmt.Errorf("durable-write probe: %w", err)
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			return p, fmt.Errorf("durable-write probe: fdatasync: %w", err)
		}
		lat = append(lat, time.Since(start))
	}
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &after); err != nil {
		return p, fmt.Errorf("durable-write probe: %w", err)
	}
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	p.P50Ms, p.P90Ms = ms(lat[n/2]), ms(lat[n*9/10])
	cpu := time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
	p.CPUUs = float64(cpu) / float64(time.Microsecond) / float64(n)
	return p, nil
}

func (p *durableProbe) String() string {
	return fmt.Sprintf("%d x (4 KiB write + fdatasync) into zeros written ahead, on the data directories' disk: p50 %.2f ms, p90 %.2f ms, %.0f us of CPU each", p.Writes, p.P50Ms, p.P90Ms, p.CPUUs)
}
