package syncer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/tapd"
)

// runState is one run of one target in progress. The run's goroutine
// fetches; one writer goroutine upserts batches and commits windows in the
// order they were queued, so TAPD and the database work at the same time and
// a window's checkpoint still moves only after its records are committed.
type runState struct {
	s       *Syncer
	t       Target
	log     *slog.Logger
	started time.Time
	span    time.Duration // TAPD time to cover, for the ETA

	writes chan writeJob

	mu       sync.Mutex // guards what both goroutines touch: run, done, writeErr
	run      *storage.SyncRun
	done     time.Duration // TAPD time committed so far
	writeErr error         // the writer's first error; it only drains after it
}

// writeJob is a batch of records to upsert, or a window to commit once
// everything queued before it is written.
type writeJob struct {
	batch    []storage.Activity
	commit   *Interval
	verified bool
	total    int
}

// plan returns the windows to fetch, oldest first: unverified holes still
// inside TAPD's half year, then checkpoint−overlap (or the horizon on a
// first or full run) up to the last closed minute.
func (s *Syncer) plan(state storage.SyncState, ro RunOptions, now time.Time) (windows []Interval, horizon, to time.Time) {
	to = now.Truncate(time.Minute) // exclusive: the last closed minute is to−1m
	horizon = ceilMinute(s.horizonAt(now).Add(s.o.HorizonMargin))
	from := horizon
	switch {
	case ro.Full || !state.Synced():
	case !ro.Since.IsZero():
		from = maxTime(ro.Since.Truncate(time.Minute), horizon)
	default:
		from = maxTime(state.HighWater.Add(-s.o.Overlap).Truncate(time.Minute), horizon)
	}
	var spans []Interval
	if state.Synced() && from.After(horizon) {
		spans = storage.Holes(maxTime(state.Origin, horizon), from, state.Coverage)
	}
	if from.Before(to) {
		spans = append(spans, Interval{Start: from, End: to})
	}
	for _, sp := range spans {
		windows = append(windows, splitByMonth(sp, s.o.Location)...)
	}
	return windows, horizon, to
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// execute performs a claimed run and records its outcome.
func (s *Syncer) execute(ctx context.Context, t Target, run *storage.SyncRun, ro RunOptions) (storage.SyncRun, error) {
	r := &runState{s: s, t: t, run: run, started: time.Now(),
		log: s.log.With("workspace", t.Key, "run", run.ID)}
	err := r.sync(ctx, ro)
	run.FinishedAt = time.Now()
	switch {
	case err == nil && len(run.Warnings) > 0:
		run.Outcome = storage.OutcomePartial
	case err == nil:
		run.Outcome = storage.OutcomeSuccess
	case ctx.Err() != nil:
		run.Outcome, run.Error = storage.OutcomeCanceled, "stopped: "+context.Cause(ctx).Error()
	default:
		run.Outcome, run.Error = storage.OutcomeFailed, err.Error()
	}
	if uerr := s.o.Store.UpdateRun(context.WithoutCancel(ctx), *run); uerr != nil {
		err = errors.Join(err, uerr)
	}
	s.o.Metrics.RunFinished(*run)
	took := run.FinishedAt.Sub(run.StartedAt)
	attrs := []any{"outcome", run.Outcome, "trigger", run.Trigger, "windows", run.Windows, "pages", run.Pages,
		"requests", run.Requests, "fetched", run.Fetched, "inserted", run.Inserted, "updated", run.Updated,
		"unchanged", run.Unchanged, "suppressed", run.Suppressed, "took", took.Round(time.Millisecond)}
	switch run.Outcome {
	case storage.OutcomeFailed:
		r.log.Error("sync run failed", append(attrs, "err", run.Error)...)
	case storage.OutcomePartial:
		r.log.Warn("sync run finished with warnings", append(attrs, "warnings", run.Warnings)...)
	default:
		r.log.Info("sync run finished", attrs...)
	}
	if err != nil {
		return *run, fmt.Errorf("syncing %s: %w", t.Key, err)
	}
	return *run, nil
}

func (r *runState) sync(ctx context.Context, ro RunOptions) error {
	store := r.s.o.Store
	state, err := store.SyncState(ctx, r.t.Key)
	if err != nil {
		return err
	}
	windows, horizon, to := r.s.plan(state, ro, r.s.o.Now())
	if len(windows) > 0 {
		r.run.WindowStart, r.run.WindowEnd = windows[0].Start, to
	}
	for _, w := range windows {
		r.span += w.End.Sub(w.Start)
	}
	if state.Synced() && state.HighWater.Before(horizon) {
		r.warn(fmt.Sprintf("checkpoint %s is older than TAPD's half year (%s): records between them are lost to the mirror",
			r.fmt(state.HighWater), r.fmt(horizon)))
	}
	r.log.Info("sync run started", "trigger", ro.Trigger, "windows", len(windows), "full", ro.Full,
		"from", r.fmtOr(r.run.WindowStart), "to", r.fmt(to))

	r.writes = make(chan writeJob, 4)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		r.writer(ctx)
	}()
	for _, w := range windows {
		if err = ctx.Err(); err != nil {
			break
		}
		if err = r.window(ctx, w, 0); err != nil {
			break
		}
	}
	close(r.writes)
	<-writerDone // what was fetched is written, even when stopping
	if werr := r.writerErr(); werr != nil {
		return werr
	}
	if err != nil {
		return err
	}
	// Report every remaining gap on every run until it is filled or acknowledged.
	if state, err = store.SyncState(ctx, r.t.Key); err != nil {
		return err
	}
	for _, g := range state.Gaps() {
		if !g.Acknowledged {
			r.warn(fmt.Sprintf("gap in coverage: %s to %s was never verified (acknowledge with POST /api/v1/sync/gaps/ack)",
				r.fmt(g.Start), r.fmt(g.End)))
		}
	}
	return nil
}

// window fetches w completely, splitting it in time when TAPD holds more
// records than one window should page, then queues its commit (checkpoint
// and, when reconciled, coverage). depth counts splits, for logs.
func (r *runState) window(ctx context.Context, w Interval, depth int) error {
	o := r.s.o
	for attempt := 1; ; attempt++ {
		first, err := r.page(ctx, w, 1)
		if err != nil {
			return err
		}
		total := first.TotalItems
		if total > o.SplitAbove || total > o.PagingCap {
			// Cut it into parts of about SplitAbove records each (fewer probes
			// than halving); page 1 is not stored: the newest part reads it again.
			if parts, ok := split(w, (total+o.SplitAbove-1)/o.SplitAbove); ok {
				r.log.Debug("window split", "window", r.fmtWindow(w), "total", total, "parts", len(parts), "depth", depth+1)
				for _, part := range parts {
					if err := r.window(ctx, part, depth+1); err != nil {
						return err
					}
				}
				return nil
			}
		}
		seen, lastTotal, err := r.pageAll(ctx, w, first)
		if err != nil {
			return err
		}
		verified := seen == total && lastTotal == total
		if !verified && attempt < o.ReconcileTries && total <= o.PagingCap {
			r.log.Info("window changed while paging; fetching it again", "window", r.fmtWindow(w),
				"remote_total_first", total, "remote_total_last", lastTotal, "distinct_fetched", seen, "attempt", attempt)
			continue
		}
		if !verified {
			r.warn(fmt.Sprintf("window %s did not reconcile after %d fetches: TAPD reports %d records, %d distinct fetched (%d reachable by paging)",
				r.fmtWindow(w), attempt, lastTotal, seen, min(total, o.PagingCap)))
		}
		r.write(writeJob{commit: &w, verified: verified, total: lastTotal})
		return nil
	}
}

// writeBatch is how many records are upserted per transaction: fewer,
// larger commits, without holding more than a few batches in memory.
const writeBatch = 2000

// pageAll queues first and pages 2.. of w for writing and returns how many
// distinct records it saw and TAPD's total on the last page.
func (r *runState) pageAll(ctx context.Context, w Interval, first tapd.Page) (distinct, lastTotal int, err error) {
	limit := r.s.o.PageSize
	pages := (min(first.TotalItems, r.s.o.PagingCap) + limit - 1) / limit
	seen := make(map[string]struct{}, first.TotalItems)
	var pending []storage.Activity
	take := func(p tapd.Page) {
		for _, rec := range p.Records {
			seen[rec.ID] = struct{}{}
		}
		pending = append(pending, r.normalizeAll(p)...)
		lastTotal = p.TotalItems
	}
	take(first)
	for n := 2; n <= pages; n++ {
		if err = r.writerErr(); err != nil {
			break
		}
		var p tapd.Page
		if p, err = r.page(ctx, w, n); err != nil {
			break
		}
		take(p)
		if len(pending) >= writeBatch {
			r.write(writeJob{batch: pending})
			pending = nil
		}
		if len(p.Records) == 0 {
			break // the window shrank under us; reconciliation decides
		}
	}
	r.write(writeJob{batch: pending}) // what was fetched is stored, even when stopping
	return len(seen), lastTotal, err
}

// page fetches page n of window w and counts it on the run.
func (r *runState) page(ctx context.Context, w Interval, n int) (tapd.Page, error) {
	q := tapd.Query{WorkspaceID: r.t.WorkspaceID, CompanyOnly: r.t.CompanyOnly, Limit: r.s.o.PageSize, Page: n,
		Start: w.Start, End: w.End.Add(-time.Minute)} // end_time's minute is inclusive
	p, err := r.s.o.TAPD.MemberActivityLog(ctx, q)
	r.mu.Lock()
	r.run.Requests++
	if err == nil {
		r.run.Pages++
		r.run.Fetched += len(p.Records)
	}
	r.mu.Unlock()
	if err != nil {
		return p, fmt.Errorf("fetching window %s page %d: %w", r.fmtWindow(w), n, err)
	}
	r.log.Debug("page fetched", "window", r.fmtWindow(w), "page", n, "records", len(p.Records), "total", p.TotalItems)
	return p, nil
}

// write queues a job for the writer (blocking while it is a few batches behind).
func (r *runState) write(j writeJob) {
	if j.commit != nil || len(j.batch) > 0 {
		r.writes <- j
	}
}

func (r *runState) writerErr() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.writeErr
}

// writer performs queued jobs in order until the queue closes. After the
// first error it only drains, so the fetcher never blocks on it. It ignores
// ctx's cancellation: what was fetched is committed.
func (r *runState) writer(ctx context.Context) {
	ctx = context.WithoutCancel(ctx)
	for j := range r.writes {
		if r.writerErr() != nil {
			continue
		}
		var err error
		if len(j.batch) > 0 {
			err = r.store(ctx, j.batch)
		}
		if err == nil && j.commit != nil {
			err = r.commit(ctx, *j.commit, j.verified, j.total)
		}
		if err != nil {
			r.mu.Lock()
			r.writeErr = err
			r.mu.Unlock()
		}
	}
}

// store upserts normalized records in one transaction.
func (r *runState) store(ctx context.Context, batch []storage.Activity) error {
	res, err := r.s.o.Store.UpsertMirrored(ctx, batch)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.run.Inserted += res.Inserted
	r.run.Updated += res.Updated
	r.run.Unchanged += res.Unchanged
	r.run.Suppressed += res.Suppressed
	r.mu.Unlock()
	r.s.o.Metrics.Records(r.t.Key, len(batch), res)
	return nil
}

// commit records a fully written window, then logs progress and saves the
// run's counters so status shows a run in flight.
func (r *runState) commit(ctx context.Context, w Interval, verified bool, total int) error {
	if err := r.s.o.Store.CommitWindow(ctx, r.t.Key, w, verified); err != nil {
		return err
	}
	r.mu.Lock()
	r.run.RemoteTotal += total
	r.run.Windows++
	r.done += w.End.Sub(w.Start)
	snapshot, done := *r.run, r.done
	r.mu.Unlock()

	elapsed := time.Since(r.started)
	rate := float64(snapshot.Fetched) / max(elapsed.Seconds(), 1e-3)
	attrs := []any{"window", r.fmtWindow(w), "remote_total", total, "pages", snapshot.Pages,
		"fetched", snapshot.Fetched, "inserted", snapshot.Inserted, "rate_per_s", int(rate)}
	if r.span > 0 && done < r.span {
		frac := float64(done) / float64(r.span)
		eta := time.Duration(float64(elapsed) * (1 - frac) / max(frac, 1e-9))
		attrs = append(attrs, "done_pct", int(frac*100), "eta", eta.Round(time.Second))
	}
	r.log.Info("window synced", attrs...)
	if err := r.s.o.Store.UpdateRun(ctx, snapshot); err != nil {
		r.log.Warn("saving run progress failed", "err", err)
	}
	return nil
}

func (r *runState) normalizeAll(p tapd.Page) []storage.Activity {
	labels := indexLabels(p)
	out := make([]storage.Activity, len(p.Records))
	for i, rec := range p.Records {
		out[i] = normalize(rec, labels, r.t)
	}
	return out
}

func (r *runState) warn(msg string) {
	r.mu.Lock()
	r.run.Warnings = append(r.run.Warnings, msg)
	r.mu.Unlock()
	r.log.Warn(msg)
}

func (r *runState) fmt(t time.Time) string { return t.In(r.s.o.Location).Format("2006-01-02 15:04") }

func (r *runState) fmtOr(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return r.fmt(t)
}

func (r *runState) fmtWindow(w Interval) string {
	return "[" + r.fmt(w.Start) + ", " + r.fmt(w.End) + ")"
}
