package storage_test

import (
	"context"
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
