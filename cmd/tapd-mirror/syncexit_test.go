package main

import (
	"context"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
	"github.com/tapd-mirror/tapd-mirror/tapd/tapdtest"
)

// TestSyncExitCodes runs `sync` through Main with the fake TAPD: 0 when
// every target synced, 3 when a run left gaps, 4 when a target is held by
// another live process (and its line in the summary says by whom), 0 again
// with --wait, which waits for that lease, and 1 when the runs fail.
func TestSyncExitCodes(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		f := tapdtest.New(tapdtest.Options{Seed: 3, Projects: 2, Months: 1, RecordsPerDay: 3})
		defer f.Close()
		env := fakeEnv(f, dbURL, "projects:2001")
		ctx := context.Background()
		sync := func(env map[string]string, args ...string) (int, string) {
			var out, errOut syncBuffer
			m := &Main{Stdout: &out, Stderr: &errOut, Getenv: func(k string) string { return env[k] }}
			code := exitCode(m.Run(ctx, append([]string{"sync"}, args...)))
			return code, out.String()
		}
		if code, out := sync(env); code != 0 || strings.Count(out, " success ") != 2 {
			t.Fatalf("clean sync: exit %d\n%s", code, out)
		}

		// Another live process (this test's) holds a project's lease.
		st := storagetest.Open(t, dbURL)
		host, _ := os.Hostname()
		held := f.Projects()[0].ID
		if _, ok, err := st.TakeLease(ctx, held, "other:1:x", "other:1", storage.ThisProcess(host), 2*time.Second); err != nil || !ok {
			t.Fatalf("taking the lease: %v %v", ok, err)
		}
		code, out := sync(env)
		wantLine := " skipped (held by " + host + ":" + strconv.Itoa(os.Getpid()) + " until " // HOST:PID until T
		if code != exitSkipped || !strings.Contains(out, held) || !strings.Contains(out, wantLine) ||
			strings.Count(out, " success ") != 1 {
			t.Fatalf("sync beside a live holder: exit %d, want %d and a line %q\n%s", code, exitSkipped, wantLine, out)
		}
		if _, ok, err := st.TakeLease(ctx, held, "other:1:y", "other:1", storage.ThisProcess(host), 2*time.Second); err != nil || !ok {
			t.Fatalf("taking the lease again: %v %v", ok, err)
		}
		if code, out := sync(env, "--wait"); code != 0 || strings.Count(out, " success ") != 2 {
			t.Fatalf("sync --wait: exit %d\n%s", code, out)
		}

		// A horizon a day older than TAPD's: TAPD refuses the oldest
		// window, which becomes a gap: partial.
		partial := map[string]string{"TAPD_MIRROR_TAPD_HORIZON_DAYS": "183"}
		for k, v := range env {
			if partial[k] == "" {
				partial[k] = v
			}
		}
		if code, out := sync(partial, "--full"); code != exitPartial || !strings.Contains(out, " partial ") {
			t.Fatalf("sync leaving gaps: exit %d, want %d\n%s", code, exitPartial, out)
		}

		bad := map[string]string{"TAPD_MIRROR_TAPD_API_PASSWORD": "wrong", "TAPD_MIRROR_WORKSPACES": held + "," + f.Projects()[1].ID}
		for k, v := range env {
			if bad[k] == "" {
				bad[k] = v
			}
		}
		if code, out := sync(bad); code != 1 || strings.Count(out, " failed ") != 2 {
			t.Fatalf("sync with a wrong password: exit %d, want 1\n%s", code, out)
		}
	})
}

// TestSyncAfterKill9TakesOverAtOnce kills `sync --full` with SIGKILL while
// it syncs, then runs `sync` again: the dead process's leases (5 minutes
// long) are taken over at once, its runs are marked abandoned, and every
// target is synced (exit 0).
func TestSyncAfterKill9TakesOverAtOnce(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		f := tapdtest.New(tapdtest.Options{Seed: 4, Projects: 3, Months: 2, RecordsPerDay: 3})
		defer f.Close()
		env := fakeEnv(f, dbURL, "projects:2001,company:2001")
		env["TAPD_MIRROR_SYNC_LEASE"] = "5m"
		f.SetLatency(100 * time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		victim, victimOut := program(t, env, "sync", "--full", "--log-format", "text")
		st := storagetest.Open(t, dbURL)
		for { // until it runs every target
			running, _ := st.ListRuns(ctx, "", storage.OutcomeRunning, 10, 0)
			if len(running) == 4 {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("the first sync never ran 4 targets\n%s", victimOut)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err := victim.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		victim.Wait() //nolint:errcheck // killed
		f.SetLatency(0)

		var out, errOut syncBuffer
		m := &Main{Stdout: &out, Stderr: &errOut, Getenv: func(k string) string { return env[k] }}
		// Without the take-over this would wait out the 5-minute leases or
		// skip every target; ctx ends the test first.
		if code := exitCode(m.Run(ctx, []string{"sync", "--log-format", "text"})); code != 0 {
			t.Fatalf("sync after kill -9: exit %d\n%s\n%s", code, out.String(), errOut.String())
		}
		if got := strings.Count(out.String(), " success "); got != 4 {
			t.Fatalf("want every target synced, got:\n%s", out.String())
		}
		if !strings.Contains(errOut.String(), "sync lease taken over: its holder's process is gone") {
			t.Fatalf("no take-over logged:\n%s", errOut.String())
		}
		runs, err := st.ListRuns(ctx, "", "", 100, 0)
		if err != nil {
			t.Fatal(err)
		}
		abandoned := 0
		for _, r := range runs {
			switch r.Outcome {
			case storage.OutcomeAbandoned:
				abandoned++
			case storage.OutcomeRunning:
				t.Fatalf("run %d of the killed process still running", r.ID)
			}
		}
		if abandoned != 4 {
			t.Fatalf("%d runs abandoned, want the killed process's 4: %+v", abandoned, runs)
		}
	})
}
