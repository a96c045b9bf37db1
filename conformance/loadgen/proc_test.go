package loadgen

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestSampleTree(t *testing.T) {
	self, err := SampleTree(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if self.RSS <= 0 || self.Procs < 1 {
		t.Fatalf("own sample = %+v", self)
	}
	// A child shows up in the tree.
	cmd := exec.Command("sleep", "5")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	found := false
	for _, p := range descendants(os.Getpid()) {
		if p == cmd.Process.Pid {
			found = true
		}
	}
	if !found {
		t.Errorf("child %d not among descendants", cmd.Process.Pid)
	}
	withChild, err := SampleTree(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if withChild.Procs < 2 {
		t.Errorf("tree with child counts %d processes", withChild.Procs)
	}
	// CPU time grows when the process works (USER_HZ resolution).
	start := time.Now()
	x := 0
	for time.Since(start) < 300*time.Millisecond {
		for i := 0; i < 1000; i++ {
			x += i
		}
	}
	_ = x
	after, err := SampleTree(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after.CPU <= self.CPU {
		t.Errorf("CPU did not grow: %v then %v", self.CPU, after.CPU)
	}
	if _, err := SampleTree(1 << 30); err == nil {
		t.Error("sampling a missing pid succeeded")
	}
}
