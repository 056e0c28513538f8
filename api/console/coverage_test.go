package console_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/api"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
	"github.com/tapd-mirror/tapd-mirror/syncer"
)

// finishingSyncer has one run, which finishes (committing its newer
// checkpoint first, as a real run does) right after a page's first status
// read: the moment that used to show the run finished beside the coverage
// from before it.
type finishingSyncer struct {
	st                *storage.Store
	run               storage.SyncRun
	mu                sync.Mutex
	finished          bool
	before, committed time.Time
}

func (f *finishingSyncer) Status(ctx context.Context) ([]syncer.WorkspaceStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	checkpoint := f.before
	if f.finished {
		checkpoint = f.committed
	}
	out := []syncer.WorkspaceStatus{{Workspace: f.run.Workspace, Checkpoint: &checkpoint, Gaps: []storage.Gap{}}}
	if !f.finished {
		f.finished = true
		f.run.Outcome, f.run.FinishedAt = "success", time.Now()
		if err := f.st.UpdateRun(ctx, f.run); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (f *finishingSyncer) Trigger(context.Context, string, bool) (syncer.Triggered, error) {
	return syncer.Triggered{}, errors.New("not in this test")
}

func (f *finishingSyncer) AcknowledgeGaps(context.Context, string, string) ([]storage.Interval, error) {
	return nil, errors.New("not in this test")
}

func TestCoverageNeverShowsARunFinishedWithoutItsCoverage(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, st *storage.Store) {
		ctx := context.Background()
		run := storage.SyncRun{Workspace: "2001", Trigger: "manual", Outcome: "running", StartedAt: time.Now().Add(-time.Minute)}
		if err := st.CreateRun(ctx, &run); err != nil {
			t.Fatal(err)
		}
		f := &finishingSyncer{st: st, run: run,
			before:    time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC),
			committed: time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)}
		srv := httptest.NewServer(newAPI(t, api.Options{Store: st, Syncer: f, Location: shanghai, Logger: testLogger()}).Handler())
		t.Cleanup(srv.Close)
		v := newVisitor(t, srv.URL, nil)
		p := v.get("/coverage")
		if p.status != 200 {
			t.Fatalf("coverage = %d %.300s", p.status, p.body)
		}
		finished := strings.Contains(p.body, `data-outcome="success"`)
		newer := strings.Contains(p.body, "2026-11-29 16:00:00") // the committed checkpoint in Shanghai
		if !strings.Contains(p.body, `data-outcome="`) {
			t.Fatalf("the page shows no run: %.2000s", p.body)
		}
		if finished && !newer {
			t.Fatal("the page shows the run finished beside the checkpoint from before it")
		}
	})
}
