package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
	"github.com/tapd-mirror/tapd-mirror/tapd/tapdtest"
)

// asProgram makes the test binary act as tapd-mirror itself when a test
// starts it as a child process, so two real processes can share a database.
const asProgram = "TAPD_MIRROR_TEST_AS_PROGRAM"

func TestMain(m *testing.M) {
	if os.Getenv(asProgram) == "1" {
		os.Exit(runProgram(os.Args[1:], os.Stdout, os.Stderr))
	}
	// Commands create the integrity key in the working directory by default
	// (with PostgreSQL): never in the source tree.
	dir, err := os.MkdirTemp("", "tapd-mirror-cmd-test-")
	if err == nil {
		err = os.Chdir(dir)
	}
	if err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// program starts tapd-mirror args… as a child process with env.
func program(t *testing.T, env map[string]string, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), asProgram+"=1")
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill() //nolint:errcheck // best effort
			cmd.Wait()         //nolint:errcheck // best effort
		}
	})
	return cmd, &out
}

// TestSyncBesideServeOnOneSQLiteFile runs `serve` and, beside it, `sync`
// twice on the same SQLite file: the lease rows keep the two processes off
// each other's targets, and the mirror ends up complete.
func TestSyncBesideServeOnOneSQLiteFile(t *testing.T) {
	f := tapdtest.New(tapdtest.Options{Seed: 5, Projects: 6, Months: 2, RecordsPerDay: 3})
	defer f.Close()
	f.SetLatency(3 * time.Millisecond) // runs last long enough to meet
	dbURL := "sqlite:" + filepath.Join(t.TempDir(), "shared.db")
	env := fakeEnv(f, dbURL, "projects:2001,company:2001")
	env["TAPD_MIRROR_SYNC_INTERVAL"] = "1s"
	env["TAPD_MIRROR_SYNC_MAX_CONCURRENT"] = "2"
	serve, serveOut := program(t, env, "serve", "--log-format", "text")
	time.Sleep(300 * time.Millisecond)
	// At least twice; on a loaded machine serve may hold every target each
	// time, so go on (up to 8) until one sync ran a target itself.
	for i, synced := 0, false; i < 2 || (!synced && i < 8); i++ {
		sync, syncOut := program(t, env, "sync", "--log-format", "text", "--full")
		// Exit 4: some targets were held by serve, and the summary says so.
		if err := sync.Wait(); err != nil && !(sync.ProcessState.ExitCode() == exitSkipped &&
			strings.Contains(syncOut.String(), "skipped (held by ")) {
			t.Fatalf("sync %d: %v\n%s", i, err, syncOut)
		}
		synced = synced || strings.Contains(syncOut.String(), "trigger=cli")
		if i == 0 && !strings.Contains(syncOut.String(), "already being synced") {
			t.Logf("the first sync met no target held by serve (timing); the overlap check still applies:\n%s", syncOut)
		}
	}
	time.Sleep(1500 * time.Millisecond) // let serve take another turn
	if err := serve.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- serve.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve exited with %v\n%s", err, serveOut)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not stop on SIGTERM\n%s", serveOut)
	}

	st := storagetest.Open(t, dbURL)
	ctx := context.Background()
	runs, err := st.ListRuns(ctx, "", "", 10000, 0)
	if err != nil {
		t.Fatal(err)
	}
	byTarget := map[string][]storage.SyncRun{}
	triggers := map[string]int{}
	for _, r := range runs {
		if r.Outcome == storage.OutcomeRunning {
			t.Fatalf("run %d still running after both processes ended: %+v", r.ID, r)
		}
		byTarget[r.Workspace] = append(byTarget[r.Workspace], r)
		triggers[r.Trigger]++
	}
	if triggers["cli"] == 0 || triggers["schedule"] == 0 {
		t.Fatalf("runs by trigger %v: both processes should have synced", triggers)
	}
	for target, rs := range byTarget {
		sort.Slice(rs, func(i, j int) bool { return rs[i].ID < rs[j].ID })
		for i := 1; i < len(rs); i++ {
			if rs[i].StartedAt.Before(rs[i-1].FinishedAt) {
				t.Fatalf("runs %d (%s) and %d (%s) of %s overlap", rs[i-1].ID, rs[i-1].Trigger, rs[i].ID, rs[i].Trigger, target)
			}
		}
	}
	want := len(f.Queryable(f.CompanyID(), true))
	for _, p := range f.Projects() {
		want += len(f.Queryable(p.ID, false))
	}
	if n, _ := st.CountActivities(ctx, storage.Filter{Source: storage.SourceTAPD}); int(n) < want {
		t.Fatalf("mirror holds %d of the %d records TAPD serves", n, want)
	}
}
