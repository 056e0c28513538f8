package storage_test

import (
	"context"
	"errors"
	"os"
	osexec "os/exec"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
)

// TestLeaseOfAGoneProcessIsTakenOverAtOnce: an unexpired lease whose holder
// ran on this host is taken over at once when that process is gone, or
// when its pid now runs another process (another start time); a live
// holder, or one on another host, keeps its lease until it expires.
func TestLeaseOfAGoneProcessIsTakenOverAtOnce(t *testing.T) {
	if storage.ThisProcess("h").Started == "" {
		t.Skip("no /proc: a holder's liveness cannot be told here")
	}
	host, _ := os.Hostname()
	live := osexec.Command("sleep", "60")
	if err := live.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { live.Process.Kill(); live.Wait() }) //nolint:errcheck // best effort
	dead := osexec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	liveHolder := storage.HolderOf(host, live.Process.Pid)
	reused := liveHolder
	reused.Started += "0" // the same pid, started at another time: another process
	me := storage.ThisProcess(host)
	storagetest.EachStore(t, func(t *testing.T, st *storage.Store) {
		ctx := context.Background()
		for _, tc := range []struct {
			name   string
			holder storage.Holder
			taken  bool
		}{
			{"live holder on this host", liveHolder, false},
			{"holder on another host", storage.Holder{Host: "elsewhere", PID: dead.Process.Pid, Started: "x/1"}, false},
			{"holder recorded before its start was", storage.Holder{Host: host, PID: dead.Process.Pid}, false},
			{"dead holder on this host", storage.Holder{Host: host, PID: dead.Process.Pid, Started: liveHolder.Started}, true},
			{"pid reused by another process", reused, true},
		} {
			target := tc.name
			if _, ok, err := st.TakeLease(ctx, target, "old:1:a", "old:1", tc.holder, time.Hour); err != nil || !ok {
				t.Fatalf("%s: first take: %v %v", tc.name, ok, err)
			}
			got, ok, err := st.TakeLease(ctx, target, "new:2:b", "new:2", me, time.Minute)
			if err != nil || ok != tc.taken {
				t.Fatalf("%s: taken over = %v (%v), want %v", tc.name, ok, err, tc.taken)
			}
			if tc.taken && got.TakenOver != "old:1" {
				t.Fatalf("%s: TakenOver = %q", tc.name, got.TakenOver)
			}
			if !tc.taken && (got.Owner != tc.holder || got.Process != "old:1") {
				t.Fatalf("%s: the lease in force is %+v", tc.name, got)
			}
		}
		leases, err := st.Leases(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if l := leases["pid reused by another process"]; l.Owner != me || l.Process != "new:2" {
			t.Fatalf("taken lease = %+v, want owner %+v", l, me)
		}
	})
}

// TestRunOnALeaseIsRecordedOnceWhenItsCommitBrokeAfterLanding: a failover
// that strikes right after the COMMIT recording a claim's run landed makes
// the store run that transaction again on the new primary. It must find the
// run it already recorded, not insert a second: such a twin stays "running"
// with nobody running it, and the workspace's next run marks it abandoned
// although its process never died.
func TestRunOnALeaseIsRecordedOnceWhenItsCommitBrokeAfterLanding(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, st *storage.Store) {
		ctx := context.Background()
		me := storage.ThisProcess("h")
		if _, ok, err := st.TakeLease(ctx, "w", "h:1:a", "h:1", me, time.Minute); err != nil || !ok {
			t.Fatalf("taking the lease: %v %v", ok, err)
		}
		run := &storage.SyncRun{Workspace: "w", Trigger: "manual", Outcome: storage.OutcomeRunning, StartedAt: time.Now()}
		attempts, err := storage.RetryAfterLandedCommit(ctx, st, storage.CreateLeaseRunTx(st, ctx, run, "h:1:a"))
		if err != nil || attempts != 2 {
			t.Fatalf("recording the run: %v after %d attempts, want it retried once", err, attempts)
		}
		running, err := st.ListRuns(ctx, "w", storage.OutcomeRunning, 10, 0)
		if err != nil || len(running) != 1 || running[0].ID != run.ID {
			t.Fatalf("running runs %+v (%v), want only run %d", running, err, run.ID)
		}
		if leases, err := st.Leases(ctx); err != nil || leases["w"].RunID != run.ID {
			t.Fatalf("the lease names run %d (%v), want %d", leases["w"].RunID, err, run.ID)
		}
		// The next claim of the workspace finds no run left behind.
		if n, err := st.AbandonRuns(ctx, "w", run.ID); err != nil || n != 0 {
			t.Fatalf("abandoned %d runs (%v), want none", n, err)
		}
		// A claim whose lease was taken meanwhile records nothing.
		lost := &storage.SyncRun{Workspace: "w", Trigger: "schedule", Outcome: storage.OutcomeRunning, StartedAt: time.Now()}
		if err := st.CreateLeaseRun(ctx, lost, "h:1:gone"); !errors.Is(err, storage.ErrLeaseLost) || lost.ID != 0 {
			t.Fatalf("recording a run on a lease not held: %v (id %d), want ErrLeaseLost", err, lost.ID)
		}
	})
}
