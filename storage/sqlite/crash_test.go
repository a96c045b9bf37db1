package sqlite

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/palisade-im/palisade/storage"
)

// crashEnv selects the child mode of TestCrashDurability and names its database.
const crashEnv = "PALISADE_SQLITE_CRASH_CHILD_DB"

const crashUser = "alice@example.com"

// crashChild writes roster items and offline messages until it is killed,
// printing "roster N" / "offline N" once each call has returned.
func crashChild(path string) {
	ctx := context.Background()
	s, err := Open(ctx, path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	for i := range 1_000_000 {
		if _, err := s.PutItem(ctx, crashUser, storage.RosterItem{JID: fmt.Sprintf("c%07d@example.net", i)}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Printf("roster %d\n", i)
		if err := s.Store(ctx, crashUser, []byte(strconv.Itoa(i)), time.Now(), 0, 0); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Printf("offline %d\n", i)
	}
	os.Exit(0)
}

// TestCrashDurability kills a writing child process with SIGKILL and checks
// that every write the child saw acknowledged is in the reopened database.
func TestCrashDurability(t *testing.T) {
	if path := os.Getenv(crashEnv); path != "" {
		crashChild(path)
		return
	}
	if testing.Short() {
		t.Skip("spawns a child process")
	}
	path := filepath.Join(t.TempDir(), "crash.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashDurability$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}

	const killAfter = 300 // acknowledged lines before the kill
	acked := map[string]map[int]bool{"roster": {}, "offline": {}}
	lines := 0
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		kind, n, ok := strings.Cut(sc.Text(), " ")
		i, err := strconv.Atoi(n)
		if !ok || err != nil || acked[kind] == nil {
			t.Fatalf("unexpected child output %q", sc.Text())
		}
		acked[kind][i] = true
		if lines++; lines == killAfter {
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		}
		// Lines still in the pipe after the kill were acknowledged too.
	}
	err = cmd.Wait()
	if lines < killAfter {
		t.Fatalf("child stopped after %d lines: %v", lines, err)
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child was not killed by SIGKILL: %v", err)
	}
	t.Logf("child acknowledged %d roster items and %d offline messages before SIGKILL",
		len(acked["roster"]), len(acked["offline"]))

	ctx := context.Background()
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var ok string
	if err := s.rd.QueryRow("PRAGMA integrity_check").Scan(&ok); err != nil || ok != "ok" {
		t.Fatalf("integrity_check = %q, %v", ok, err)
	}
	items, ver, err := s.Roster(ctx, crashUser)
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, it := range items {
		have[it.JID] = true
	}
	for i := range acked["roster"] {
		if !have[fmt.Sprintf("c%07d@example.net", i)] {
			t.Errorf("acknowledged roster item %d lost", i)
		}
	}
	if v, _ := strconv.Atoi(ver); v != len(items) {
		t.Errorf("roster version %s does not match %d items", ver, len(items))
	}
	msgs, err := s.Pending(ctx, crashUser)
	if err != nil {
		t.Fatal(err)
	}
	haveMsg := map[string]bool{}
	for _, m := range msgs {
		haveMsg[string(m.Stanza)] = true
	}
	for i := range acked["offline"] {
		if !haveMsg[strconv.Itoa(i)] {
			t.Errorf("acknowledged offline message %d lost", i)
		}
	}
}
