package main

import (
	"context"
	"database/sql"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/tapd/tapdtest"
)

// probe is one look at the API while the database fails over.
type probe struct {
	at         time.Time
	ready, api bool // GET /readyz, and a count, answered 200
	db         bool // the baseline: a plain client of the same DSN had a primary
}

// prober asks the API every 50ms whether it is ready and answers a count,
// and the database whether it has a primary.
type prober struct {
	mu     sync.Mutex
	probes []probe
	stop   func()
}

func startProber(base string, db *sql.DB) *prober {
	p := &prober{}
	client := &http.Client{Timeout: 5 * time.Second}
	ok := func(path string) bool {
		resp, err := client.Get(base + path)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		for {
			pr := probe{at: time.Now(), ready: ok("/readyz"), api: ok("/api/v1/activity_log/count")}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := db.ExecContext(ctx, `SELECT 1`)
			cancel()
			pr.db = err == nil
			p.mu.Lock()
			p.probes = append(p.probes, pr)
			p.mu.Unlock()
			select {
			case <-done:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	p.stop = func() { close(done); <-finished }
	return p
}

// since returns the probes taken from t on.
func (p *prober) since(t time.Time) []probe {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []probe
	for _, pr := range p.probes {
		if !pr.at.Before(t) {
			out = append(out, pr)
		}
	}
	return out
}

// unavailable is how long, among probes, field answered nothing good: from
// the first failed probe to the first good one after the last failure.
func unavailable(probes []probe, good func(probe) bool) time.Duration {
	var first, last time.Time
	for i, pr := range probes {
		if good(pr) {
			continue
		}
		if first.IsZero() {
			first = pr.at
		}
		last = pr.at
		if i+1 < len(probes) {
			last = probes[i+1].at
		}
	}
	return last.Sub(first)
}

// triggerFull asks serve for a full re-read of ws and returns the run once
// it is running.
func triggerFull(t *testing.T, base, ws string, st *storage.Store) storage.SyncRun {
	t.Helper()
	req, _ := http.NewRequest("POST", base+"/api/v1/sync", strings.NewReader(`{"workspace":"`+ws+`","full":true}`))
	req.Header.Set("Authorization", "Bearer tok")
	req.Header.Set("Content-Type", "application/json")
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
		runs, err := st.ListRuns(context.Background(), ws, storage.OutcomeRunning, 1, 0)
		if err == nil && len(runs) == 1 && runs[0].Trigger == "manual" {
			return runs[0]
		}
		req.Body = io.NopCloser(strings.NewReader(`{"workspace":"` + ws + `","full":true}`))
	}
	t.Fatal("the full run did not start")
	return storage.SyncRun{}
}

// finished waits until run id has its outcome.
func finished(t *testing.T, st *storage.Store, id int64) storage.SyncRun {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if run, err := st.GetRun(context.Background(), id); err == nil && run.Outcome != storage.OutcomeRunning {
			return run
		}
	}
	t.Fatalf("run %d never finished", id)
	return storage.SyncRun{}
}

// TestServeSurvivesPostgresFailovers runs `serve` on a real pg_auto_failover
// formation (monitor, primary, synchronous standby) through database_url's
// host-list form, syncing from the fake TAPD while records keep arriving
// there, and fails the primary over twice with `pg_autoctl perform
// failover`. Each time the API answers again and a sync run succeeds on the
// new primary; at the end nothing is lost or duplicated, every run has its
// outcome, no lease is left behind, no gap is open, and the integrity log
// verifies. It prints how long the API and readiness were unavailable per
// failover (BENCHMARKS.md).
func TestServeSurvivesPostgresFailovers(t *testing.T) {
	cluster := startPGCluster(t)
	ctx := context.Background()
	f := tapdtest.New(tapdtest.Options{Seed: 24, Projects: 1, Months: 7, RecordsPerDay: 3, CompanyRecordsPerDay: 1})
	defer f.Close()
	ws := f.Projects()[0].ID
	env := fakeEnv(f, cluster.DSN(), ws)
	env["TAPD_MIRROR_SYNC_INTERVAL"] = "1s" // runs back to back, so failovers meet them mid-way
	env["TAPD_MIRROR_INTEGRITY_KEY_FILE"] = filepath.Join(t.TempDir(), "signing.key")
	f.SetLatency(20 * time.Millisecond)
	p := start(t, env, "serve", "--log-format", "text")
	st, err := storage.Open(ctx, cluster.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	// succeeded waits for a run that started after t and succeeded.
	succeeded := func(after time.Time) storage.SyncRun {
		t.Helper()
		for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			runs, err := st.ListRuns(ctx, ws, storage.OutcomeSuccess, 1, 0)
			if err == nil && len(runs) == 1 && runs[0].StartedAt.After(after) {
				return runs[0]
			}
		}
		t.Fatalf("no successful run started after %s\n%s", after.Format(time.RFC3339Nano), p.stderr)
		return storage.SyncRun{}
	}
	succeeded(time.Time{}) // the backfill

	// Records keep arriving at TAPD, a minute old (inside the sync's
	// overlap), so that runs have something to write — except while a full
	// re-read pages through the newest window, which would then never
	// reconcile with TAPD's count (a partial run, and no failover's doing).
	var arriving atomic.Bool
	arriving.Store(true)
	stopArrivals := make(chan struct{})
	arrivalsDone := make(chan []tapdtest.Record)
	go func() {
		var added []tapdtest.Record
		defer func() { arrivalsDone <- added }()
		for {
			select {
			case <-stopArrivals:
				return
			case <-time.After(100 * time.Millisecond):
				if arriving.Load() {
					added = append(added, f.AddRecords(ws, f.Now().Add(-time.Minute), 1)...)
				}
			}
		}
	}()
	_, dsn, err := config.ParseDatabaseURL(cluster.DSN())
	if err != nil {
		t.Fatal(err)
	}
	direct, err := sql.Open("postgres", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	probes := startProber(p.base, direct)
	primary, standby := 1, 2
	for i := 1; i <= 2; i++ {
		// A full re-read, slowed down at TAPD so that it writes all through
		// the failover: its transactions meet the old primary going away.
		arriving.Store(false)
		f.SetLatency(300 * time.Millisecond)
		full := triggerFull(t, p.base, ws, st)
		began := time.Now()
		cluster.failover(primary, standby)
		primary, standby = standby, primary
		switched := time.Now()
		f.SetLatency(20 * time.Millisecond)
		if port, err := cluster.primaryPort(ctx); err != nil || port != cluster.ports[primary-1] {
			t.Fatalf("failover %d: the primary is on port %d (%v), want node%d's %d", i, port, err, primary, cluster.ports[primary-1])
		}
		for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
			after := probes.since(switched)
			if n := len(after); n > 0 && after[n-1].api && after[n-1].ready {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("failover %d: the API does not answer again\n%s", i, p.stderr)
			}
		}
		seen := probes.since(began)
		outage := slices.IndexFunc(seen, func(p probe) bool { return !p.ready })
		if outage < 0 {
			t.Fatalf("failover %d: readiness never dipped: the failover went unseen", i)
		}
		full = finished(t, st, full.ID)
		if full.Outcome != storage.OutcomeSuccess || full.FinishedAt.Before(seen[outage].at) {
			t.Fatalf("failover %d: the full run ended %q at %s, want success after the outage began at %s: %s\n%s", i, full.Outcome,
				full.FinishedAt.Format(time.RFC3339Nano), seen[outage].at.Format(time.RFC3339Nano), full.Error, p.stderr)
		}
		arriving.Store(true)
		run := succeeded(switched)
		t.Logf("failover %d (node%d → node%d): the failover took %.1fs; API unavailable %.2fs, readiness unavailable %.2fs, baseline: no primary for a plain client for %.2fs (%d probes); the full run in flight (%d requests) succeeded, and run %d after it",
			i, standby, primary, switched.Sub(began).Seconds(),
			unavailable(seen, func(p probe) bool { return p.api }).Seconds(),
			unavailable(seen, func(p probe) bool { return p.ready }).Seconds(),
			unavailable(seen, func(p probe) bool { return p.db }).Seconds(), len(seen), full.Requests, run.ID)
	}
	if retried := strings.Count(p.stderr.String(), "retrying the transaction"); retried == 0 {
		t.Fatalf("no transaction met a failover: the test did not test it\n%s", p.stderr)
	} else {
		t.Logf("%d transactions were retried on the new primary", retried)
	}
	probes.stop()
	close(stopArrivals)
	added := <-arrivalsDone
	succeeded(time.Now()) // a run that read past the last arrival
	if err := p.stop(); err != nil {
		t.Fatalf("stopping serve: %v", err)
	}

	// 0 lost, 0 duplicated: every record past the horizon's first hour (the
	// sync leaves the horizon's first minutes alone), each once, nothing else.
	got, err := st.ListActivities(ctx, storage.Filter{Source: storage.SourceTAPD}, 1_000_000, 0)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]int{}
	for _, a := range got {
		stored[a.SourceID]++
	}
	truth := map[string]bool{}
	lost, dups, unexpected := 0, 0, 0
	from := f.Horizon().Add(time.Hour)
	for _, r := range f.Truth() {
		truth[r.ID] = true
		if r.Workspace == ws && !r.CompanyLevel && !r.Created.Before(from) && stored[r.ID] == 0 {
			lost++
		}
	}
	for id, n := range stored {
		dups += n - 1
		if !truth[id] {
			unexpected++
		}
	}
	for _, r := range added {
		if stored[r.ID] == 0 {
			t.Errorf("record %s, arrived at TAPD while serve ran, was lost", r.ID)
		}
	}
	if lost+dups+unexpected > 0 || len(added) == 0 {
		t.Fatalf("mirror vs TAPD: %d stored, %d lost, %d duplicated, %d unexpected (%d arrived while serve ran)", len(got), lost, dups, unexpected, len(added))
	}

	// Every run finished, and succeeded: none failed, none was left running
	// or abandoned.
	runs, err := st.ListRuns(ctx, "", "", 10_000, 0)
	if err != nil {
		t.Fatal(err)
	}
	outcomes := map[string]int{}
	for _, r := range runs {
		outcomes[r.Outcome]++
		if r.Outcome != storage.OutcomeSuccess || r.FinishedAt.IsZero() {
			t.Errorf("run %d (started %s) ended %q: %s", r.ID, r.StartedAt.Format(time.RFC3339Nano), r.Outcome, r.Error)
		}
	}
	t.Logf("%d runs: %v; %d records stored, %d arrived while serve ran", len(runs), outcomes, len(got), len(added))
	if leases, err := st.Leases(ctx); err != nil || len(leases) > 0 {
		t.Errorf("leases left after serve stopped: %v %v", leases, err)
	}
	if state, err := st.SyncState(ctx, ws); err != nil || len(state.Gaps()) > 0 {
		t.Errorf("gaps after the failovers: %v %v", state.Gaps(), err)
	}
	if out, stderr, err := run(t, env, "verify", "--database"); err != nil || !strings.Contains(out, "OK: every live record") {
		t.Fatalf("verify --database: %v\n%s\n%s", err, out, stderr)
	}
}
