package syncer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
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
	s      *Syncer
	t      Target
	log    *slog.Logger
	holder string // lease holder: every window commit is fenced on it
	// prior: windows a settle check sends to be fetched again, with the
	// records the target had reported in them then (the month's TAPD total).
	prior   map[Interval]int
	started time.Time
	span    time.Duration // TAPD time to cover, for the ETA
	horizon time.Time     // the oldest minute asked for
	to      time.Time     // end of the plan: committing a window that ends here makes the target fresh

	writes chan writeJob

	mu        sync.Mutex // guards what both goroutines touch: run, done, writeErr
	run       *storage.SyncRun
	done      time.Duration // TAPD time committed so far
	writeErr  error         // the writer's first error; it only drains after it
	candidate *tapd.Record  // a record created at seconds > 0, to learn end_time's meaning

	prefetched *prefetched // page 1 of the next window, when oldestDayFirst fetched it
	held       []Interval  // coverage at the run's start: what a re-read finds already mirrored
}

// writeJob is a batch of records to upsert, or a window to commit once
// everything queued before it is written.
type writeJob struct {
	batch  []storage.Activity
	reread bool // the records are probably stored already (skip the COPY attempt)
	commit *storage.WindowCommit
	total  int
}

// plan returns the windows to fetch, oldest first: unverified holes still
// inside TAPD's half year, then checkpoint−overlap (or the horizon on a
// first or full run) up to the last closed minute. Adjacent windows overlap
// by a minute at TAPD (see queryEnd), which the unique key makes free.
func (s *Syncer) plan(state storage.SyncState, ro RunOptions, now time.Time) (windows []Interval, horizon, to time.Time) {
	// The end_time minute may include its seconds, so the last window ends a
	// minute before the current one: everything it can return is closed.
	to = now.Truncate(time.Minute).Add(-time.Minute)
	horizon = s.horizonAt(now).Truncate(time.Minute)
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
		spans = state.Retryable(maxTime(state.Origin, horizon), from)
	}
	if from.Before(to) {
		spans = append(spans, Interval{Start: from, End: to})
	}
	for _, sp := range spans {
		windows = append(windows, splitByMonth(sp, s.loc)...)
	}
	return windows, horizon, to
}

// firstWindow is how much of a plan's oldest window is fetched first when
// that window takes more than one page (see oldestDayFirst).
const firstWindow = 24 * time.Hour

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// execute performs a claimed run and records its outcome.
func (s *Syncer) execute(ctx context.Context, t Target, run *storage.SyncRun, ro RunOptions, holder string) (storage.SyncRun, error) {
	r := &runState{s: s, t: t, run: run, holder: holder, started: time.Now(),
		log: s.log.With("workspace", t.Key, "run", run.ID)}
	err := r.sync(ctx, ro)
	r.mu.Lock()
	defer r.mu.Unlock()
	run.FinishedAt = time.Now()
	switch {
	case errors.Is(err, storage.ErrLeaseLost) || errors.Is(context.Cause(ctx), storage.ErrLeaseLost):
		run.Outcome, run.Error = storage.OutcomeLostLease, "another process took this workspace's lease (this run's had expired); it committed nothing after that"
	case err == nil && len(run.Warnings) > 0:
		run.Outcome = storage.OutcomePartial
	case err == nil:
		run.Outcome = storage.OutcomeSuccess
	case ctx.Err() != nil:
		run.Outcome, run.Error = storage.OutcomeCanceled, "stopped: "+context.Cause(ctx).Error()
	default:
		run.Outcome, run.Error = storage.OutcomeFailed, err.Error()
	}
	s.recordOutcome(*run)
	s.o.Metrics.RunFinished(*run)
	took := run.FinishedAt.Sub(run.StartedAt)
	attrs := []any{"outcome", run.Outcome, "trigger", run.Trigger, "windows", run.Windows, "pages", run.Pages,
		"requests", run.Requests, "fetched", run.Fetched, "inserted", run.Inserted, "updated", run.Updated,
		"unchanged", run.Unchanged, "suppressed", run.Suppressed, "took", took.Round(time.Millisecond)}
	switch run.Outcome {
	case storage.OutcomeFailed, storage.OutcomeLostLease:
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

// recordOutcome writes a finished run. When the database is away (often the
// reason the run failed) it keeps trying in the background until it is back,
// so the run is recorded as failed with its error, not later taken for a
// run whose process died.
func (s *Syncer) recordOutcome(run storage.SyncRun) {
	if err := s.o.Store.UpdateRun(context.Background(), run); err == nil {
		return
	} else {
		s.log.Warn("recording the run's outcome failed; retrying until the database is back", "run", run.ID, "err", err)
	}
	s.mu.Lock()
	s.recording[run.ID] = true
	s.mu.Unlock()
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		defer func() {
			s.mu.Lock()
			delete(s.recording, run.ID)
			s.mu.Unlock()
		}()
		for wait := time.Second; ; wait = min(2*wait, 30*time.Second) {
			select {
			case <-s.bgCtx.Done():
				s.log.Error("run outcome never recorded (stopping)", "run", run.ID, "outcome", run.Outcome)
				return
			case <-time.After(wait):
			}
			if err := s.o.Store.UpdateRun(s.bgCtx, run); err == nil {
				s.log.Info("run outcome recorded after the database came back", "run", run.ID, "outcome", run.Outcome)
				return
			}
		}
	}()
}

func (r *runState) sync(ctx context.Context, ro RunOptions) error {
	store := r.s.o.Store
	state, err := store.SyncState(ctx, r.t.Key)
	if err != nil {
		return err
	}
	if err := r.s.learnedEndMinute(ctx); err != nil {
		return err
	}
	windows, horizon, to := r.s.plan(state, ro, r.s.planTime(ro))
	r.horizon, r.to, r.held = horizon, to, state.Coverage
	if len(windows) > 0 {
		if err := r.discoverEndMinute(ctx); err != nil {
			return err
		}
	}
	rereadBefore := state.HighWater // windows starting before it were fetched before
	if state.Synced() && (ro.Full || !ro.Since.IsZero()) {
		rereadBefore = to // a resync: everything is probably stored (a first run's --full is not)
	}
	if len(windows) > 0 {
		r.run.WindowStart, r.run.WindowEnd = windows[0].Start, to
	}
	if state.Synced() && state.HighWater.Before(horizon) {
		r.warn(fmt.Sprintf("checkpoint %s is older than TAPD's half year (%s): records between them are lost to the mirror",
			r.fmt(state.HighWater), r.fmt(horizon)))
	}

	r.writes = make(chan writeJob, 4)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		r.writer(ctx)
	}()
	// Recent windows are re-counted at TAPD for late records, unless this run
	// fetches the whole settle span itself anyway (first run, --full).
	settledByRun := len(windows) > 0 && !windows[0].Start.After(r.settleFrom(state))
	if len(windows) > 0 && !settledByRun {
		settle := r.settle(ctx, state, windows[len(windows)-1].Start)
		windows = append(settle, windows...)
		if len(settle) > 0 {
			r.run.WindowStart = windows[0].Start
		}
	}
	for _, w := range windows {
		r.span += w.End.Sub(w.Start)
	}
	r.log.Info("sync run started", "trigger", ro.Trigger, "windows", len(windows), "full", ro.Full,
		"from", r.fmtOr(r.run.WindowStart), "to", r.fmt(to))
	for i := 0; i < len(windows); i++ {
		w := windows[i]
		if err = ctx.Err(); err != nil {
			break
		}
		if i > 0 {
			r.s.yieldSlot(w.Start)
		}
		var ok bool
		if w, ok = r.unexpired(w); !ok {
			continue
		}
		if i == 0 { // the plan's oldest window only: its second part is never split again
			if parts := r.oldestDayFirst(ctx, w); len(parts) > 1 {
				windows = slices.Insert(windows, i+1, parts[1:]...)
				w = parts[0]
			}
		}
		if err = r.window(ctx, w, w.Start.Before(rereadBefore), 0); err != nil {
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
	if settledByRun {
		if err := store.MarkSettled(ctx, r.t.Key, r.s.o.Now()); err != nil {
			return err
		}
	}
	// Report every remaining gap on every run until it is filled or
	// acknowledged; minutes TAPD's rules cannot reach and spans that expired
	// are listed in status with their reason instead (warning about them
	// forever helps nobody).
	if state, err = store.SyncState(ctx, r.t.Key); err != nil {
		return err
	}
	for _, g := range state.Gaps() {
		// An expired span was warned about by the run that lost it; no
		// later run can do anything about it.
		if !g.Acknowledged && g.Reason != storage.ReasonUnreachableMinute && g.Reason != storage.ReasonExpired {
			why := ""
			if g.Reason != "" {
				why = " (" + g.Reason + ")"
			}
			r.warn(fmt.Sprintf("gap in coverage: %s to %s was never verified%s (acknowledge with POST /api/v1/sync/gaps/ack)",
				r.fmt(g.Start), r.fmt(g.End), why))
		}
	}
	return nil
}

// unexpired is the part of w still inside TAPD's half year by the syncer's
// clock; ok is false when none is. A part planned while still inside, and
// reached only after it left, is lost: it becomes a gap that says so.
func (r *runState) unexpired(w Interval) (_ Interval, ok bool) {
	expired := r.s.horizonAt(r.s.o.Now()).Truncate(time.Minute)
	if !w.Start.Before(expired) {
		return w, true
	}
	lost := Interval{Start: w.Start, End: minTime(expired, w.End)}
	r.expired(lost)
	w.Start = lost.End
	return w, w.Start.Before(w.End)
}

// expired records that lost left TAPD's half year before this run fetched
// it: a gap that says so, and a warning. A span already mirrored (a re-read,
// --full or --since) lost nothing: the archive holds it, now beyond TAPD's
// reach, so there is nothing to warn about.
func (r *runState) expired(lost Interval) {
	if slices.ContainsFunc(r.held, func(c Interval) bool { return !c.Start.After(lost.Start) && !c.End.Before(lost.End) }) {
		r.log.Debug("already mirrored; left TAPD's half year before this run re-read it", "window", r.fmtWindow(lost))
		return
	}
	r.warn(fmt.Sprintf("%s expired at TAPD before it was fetched", r.fmtWindow(lost)))
	r.write(writeJob{commit: r.commitOf(lost, nil, []storage.GapReason{{Interval: lost, Reason: storage.ReasonExpired}})})
}

// oldestDayFirst splits an urgent window (one starting within a day of the
// horizon) longer than a day that takes more than one page into its first
// day and the rest: TAPD pages newest first, so otherwise its oldest
// records, the first to expire, would come last. Page 1 tells; when it
// holds the whole window it is kept for window() to use, so a window that
// fits one page costs one request as before, and one that does not costs
// one request more than its pages.
func (r *runState) oldestDayFirst(ctx context.Context, w Interval) []Interval {
	if w.End.Sub(w.Start) <= firstWindow || r.s.urgency(w.Start).Equal(notUrgent) {
		return nil
	}
	p, err := r.page(ctx, w, 1, r.s.o.PageSize, false)
	switch {
	case err != nil:
		return nil // window() asks again, and handles the error
	case p.TotalItems <= len(p.Records):
		r.prefetched = &prefetched{w: w, page: p}
		return nil
	}
	cut := w.Start.Add(firstWindow)
	return []Interval{{Start: w.Start, End: cut}, {Start: cut, End: w.End}}
}

// prefetched is page 1 of a window, fetched before the window was started.
type prefetched struct {
	w    Interval
	page tapd.Page
}

// minPageSize is the smallest page a failing window is retried with.
const minPageSize = 25

// horizonSlack is how close to the horizon a window must start for a
// "beyond the half year" refusal to mean "start a minute later".
const horizonSlack = 15 * time.Minute

// window fetches w completely, splitting it in time when TAPD holds more
// records than one window should page, then queues its commit (checkpoint,
// coverage, gaps). A window that keeps failing becomes a gap and the run goes
// on; only what no later window could fix (credentials, the database, a
// stop) ends the run. depth counts splits, for logs.
func (r *runState) window(ctx context.Context, w Interval, reread bool, depth int) error {
	o := r.s.o
	limit := o.PageSize
	var ok bool
	if w, ok = r.unexpired(w); !ok {
		return nil
	}
	for attempt := 1; ; {
		var first tapd.Page
		var err error
		if pre := r.prefetched; pre != nil && pre.w == w && attempt == 1 {
			first, r.prefetched = pre.page, nil
		} else {
			first, err = r.page(ctx, w, 1, limit, false)
		}
		if err == nil && (first.TotalItems > o.SplitAbove || first.TotalItems > o.PagingCap) {
			// Cut it into parts of about SplitAbove records each (fewer probes
			// than halving); page 1 is not stored: the newest part reads it again.
			if parts, ok := split(w, (first.TotalItems+o.SplitAbove-1)/o.SplitAbove); ok {
				r.log.Debug("window split", "window", r.fmtWindow(w), "total", first.TotalItems, "parts", len(parts), "depth", depth+1)
				for _, part := range parts {
					if err := r.window(ctx, part, reread, depth+1); err != nil {
						return err
					}
				}
				return nil
			}
		}
		var seen, lastTotal int
		if err == nil {
			if first.PerPage > 0 && first.PerPage < limit {
				limit = first.PerPage // TAPD pages by what it sent, not by what was asked
			}
			seen, lastTotal, err = r.pageAll(ctx, w, first, limit, reread)
		}
		if err != nil {
			if werr := r.writerErr(); werr != nil {
				return werr
			}
			nearHorizon := horizonRefusal(err) && w.Start.Before(r.horizon.Add(horizonSlack)) && w.End.Sub(w.Start) > time.Minute
			switch {
			case ctx.Err() != nil || (fatal(err) && !nearHorizon):
				return err
			case nearHorizon:
				// TAPD's horizon is later than ours (whatever words its 422
				// uses), or it moved past w's start since it was checked:
				// find the oldest minute it accepts, and say what was given up.
				start, err := r.oldestAccepted(ctx, w)
				if err != nil {
					return err
				}
				r.horizon = maxTime(r.horizon, start) // the next window starts there: near it too
				lost := Interval{Start: w.Start, End: start}
				if r.s.horizonAt(o.Now()).Truncate(time.Minute).After(w.Start) {
					r.expired(lost)
				} else {
					r.warn(fmt.Sprintf("TAPD refused %s as beyond its half year (tapd.horizon_days may be too large); fetching from %s",
						r.fmtWindow(lost), r.fmt(start)))
					r.write(writeJob{commit: r.commitOf(lost, nil, []storage.GapReason{{Interval: lost, Reason: storage.ReasonBeyondHorizon}})})
				}
				if w.Start = start; !w.Start.Before(w.End) {
					return nil
				}
				continue
			case errors.Is(err, tapd.ErrBeyondHorizon):
				r.warn(fmt.Sprintf("window %s fell out of TAPD's half year before it could be fetched", r.fmtWindow(w)))
				r.write(writeJob{commit: r.commitOf(w, nil, []storage.GapReason{{Interval: w, Reason: storage.ReasonBeyondHorizon}})})
				return nil
			case (errors.Is(err, tapd.ErrServer) || errors.Is(err, tapd.ErrMalformed)) && limit > minPageSize:
				// TAPD is seen to fail on large pages: ask for smaller ones.
				r.log.Warn("window keeps failing; fetching it again with half the page size", "window", r.fmtWindow(w),
					"limit", limit/2, "err", err)
				limit /= 2
				continue
			default:
				r.warn(fmt.Sprintf("window %s kept failing and is left as a gap, retried on the next run: %v", r.fmtWindow(w), err))
				r.write(writeJob{commit: r.commitOf(w, nil, []storage.GapReason{{Interval: w, Reason: "kept failing: " + err.Error(), Retry: true}})})
				return nil
			}
		}
		total := first.TotalItems
		verified := seen == total && lastTotal == total
		if !verified && attempt < o.ReconcileTries && total <= o.PagingCap {
			r.log.Info("window changed while paging; fetching it again", "window", r.fmtWindow(w),
				"remote_total_first", total, "remote_total_last", lastTotal, "distinct_fetched", seen, "attempt", attempt)
			attempt++
			continue
		}
		if !verified {
			r.warn(fmt.Sprintf("window %s did not reconcile after %d fetches: TAPD reports %d records, %d distinct fetched (%d reachable by paging)",
				r.fmtWindow(w), attempt, lastTotal, seen, min(total, o.PagingCap)))
			r.write(writeJob{commit: r.commitOf(w, nil, nil), total: lastTotal})
			return nil
		}
		covered, gaps, err := r.coverage(ctx, w)
		if err != nil {
			return err
		}
		c := r.commitOf(w, covered, gaps)
		c.Total = &storage.WindowTotal{Month: r.s.monthOf(w.Start), Span: Interval{Start: w.Start, End: r.countedEnd(w)}, Total: int64(lastTotal)}
		if n, ok := r.prior[w]; ok {
			prior := int64(n)
			c.Total.Prior = &prior
		}
		r.write(writeJob{commit: c, total: lastTotal})
		return nil
	}
}

// oldestAccepted finds the oldest minute of w that TAPD accepts as a
// start_time, asking with limit 1: steps that double, then a binary search
// between the last refused and the first accepted minute. It returns w.End
// when TAPD refuses all of w.
func (r *runState) oldestAccepted(ctx context.Context, w Interval) (time.Time, error) {
	accepts := func(start time.Time) (bool, error) {
		_, err := r.page(ctx, Interval{Start: start, End: w.End}, 1, 1, true)
		switch {
		case err == nil:
			return true, nil
		case horizonRefusal(err):
			return false, nil
		default:
			return false, err
		}
	}
	refused, step := w.Start, time.Minute
	accepted := w.End
	for at := w.Start.Add(step); at.Before(w.End); at = refused.Add(step) {
		ok, err := accepts(at)
		if err != nil {
			return time.Time{}, err
		}
		if ok {
			accepted = at
			break
		}
		refused, step = at, 2*step
	}
	for accepted.Sub(refused) > time.Minute {
		mid := refused.Add(accepted.Sub(refused) / 2).Truncate(time.Minute)
		ok, err := accepts(mid)
		if err != nil {
			return time.Time{}, err
		}
		if ok {
			accepted = mid
		} else {
			refused = mid
		}
	}
	return accepted, nil
}

// fatal errors end the run: no later window would fare better.
func fatal(err error) bool {
	return errors.Is(err, tapd.ErrAuth) || errors.Is(err, tapd.ErrNotFound) || errors.Is(err, tapd.ErrBaseURL) ||
		(errors.Is(err, tapd.ErrParam) && !errors.Is(err, tapd.ErrBeyondHorizon))
}

// horizonRefusal is TAPD refusing a start_time: its known half-year
// wording, or any 422 (read so only for a window starting near the horizon).
func horizonRefusal(err error) bool {
	return errors.Is(err, tapd.ErrBeyondHorizon) || tapd.Refused422(err)
}

// commitOf is the commit of window w with the parts verified and the gaps known.
func (r *runState) commitOf(w Interval, covered []Interval, gaps []storage.GapReason) *storage.WindowCommit {
	return &storage.WindowCommit{Workspace: r.t.Key, Window: w, Covered: covered, Gaps: gaps,
		Fresh: !w.End.Before(r.to), Holder: r.holder, LeaseTTL: r.s.o.LeaseTTL}
}

// queryEnd is the end_time asked for window w. It is w.End itself, so that
// whether TAPD's end_time minute includes its seconds or not, nothing before
// w.End is missed (with an inclusive minute, adjacent windows overlap by one
// minute). A query may not reach into the next month, though: a window ending
// at a month's first minute asks up to the month's last minute instead.
func (r *runState) queryEnd(w Interval) time.Time {
	if r.s.monthStart(w.End) {
		return w.End.Add(-time.Minute)
	}
	return w.End
}

// countedEnd is where the TAPD time counted by window w's total ends: the
// minute its end_time asks for is in it when TAPD's end_time includes it.
func (r *runState) countedEnd(w Interval) time.Time {
	r.s.mu.Lock()
	mode := r.s.endMinute
	r.s.mu.Unlock()
	end := r.queryEnd(w)
	if mode == endInclusive {
		end = end.Add(time.Minute)
	}
	return end
}

// monthOf is the start of t's calendar month in TAPD's zone.
func (s *Syncer) monthOf(t time.Time) time.Time {
	l := t.In(s.loc)
	return time.Date(l.Year(), l.Month(), 1, 0, 0, 0, 0, s.loc)
}

func (s *Syncer) monthStart(t time.Time) bool {
	l := t.In(s.loc)
	return l.Day() == 1 && l.Hour() == 0 && l.Minute() == 0
}

// coverage is what a reconciled window proves: all of it, except the last
// minute of a month when TAPD's end_time minute is exclusive (no query can
// reach it: the same-month rule forbids ending in the next month).
func (r *runState) coverage(ctx context.Context, w Interval) ([]Interval, []storage.GapReason, error) {
	if !r.s.monthStart(w.End) {
		return []Interval{w}, nil, nil
	}
	mode, err := r.s.endMinuteMode(ctx, r)
	if err != nil {
		return nil, nil, err
	}
	last := Interval{Start: w.End.Add(-time.Minute), End: w.End}
	var covered []Interval
	if w.Start.Before(last.Start) {
		covered = []Interval{{Start: w.Start, End: last.Start}}
	}
	switch mode {
	case endInclusive:
		return []Interval{w}, nil, nil
	case endExclusive:
		return covered, []storage.GapReason{{Interval: last, Reason: storage.ReasonUnreachableMinute}}, nil
	default:
		return covered, []storage.GapReason{{Interval: last, Retry: true,
			Reason: "not yet known whether TAPD's end_time includes its minute; retried once it is"}}, nil
	}
}

// writeBatch is how many records are upserted per transaction: fewer,
// larger commits, without holding more than a few batches in memory.
const writeBatch = 2000

// pageAll queues first and pages 2.. of w for writing and returns how many
// distinct records it saw and TAPD's total on the last page.
func (r *runState) pageAll(ctx context.Context, w Interval, first tapd.Page, limit int, reread bool) (distinct, lastTotal int, err error) {
	pages := (min(first.TotalItems, r.s.o.PagingCap) + limit - 1) / limit
	seen := make(map[string]struct{}, first.TotalItems)
	// The window's first minute was fetched already by the window before it
	// when end_time's minute is inclusive: those records go in a batch of
	// their own, written as re-reads, so they never cost the new ones the
	// COPY fast path.
	var pending, firstMinute []storage.Activity
	take := func(p tapd.Page) {
		for i, rec := range p.Records {
			seen[rec.ID] = struct{}{}
			if rec.Created.Second() > 0 && r.candidate == nil {
				r.candidate = &p.Records[i]
			}
		}
		for _, a := range r.normalizeAll(p) {
			if !reread && a.Timestamp.Before(w.Start.Add(time.Minute)) {
				firstMinute = append(firstMinute, a)
			} else {
				pending = append(pending, a)
			}
		}
		lastTotal = p.TotalItems
	}
	take(first)
	for n := 2; n <= pages; n++ {
		if err = r.writerErr(); err != nil {
			break
		}
		var p tapd.Page
		if p, err = r.page(ctx, w, n, limit, false); err != nil {
			break
		}
		take(p)
		if len(pending) >= writeBatch {
			r.write(writeJob{batch: pending, reread: reread})
			pending = nil
		}
		if len(p.Records) == 0 {
			break // the window shrank under us; reconciliation decides
		}
	}
	r.write(writeJob{batch: pending, reread: reread}) // what was fetched is stored, even when stopping
	r.write(writeJob{batch: firstMinute, reread: true})
	return len(seen), lastTotal, err
}

// page fetches page n of window w and counts it on the run. A count (limit
// 1, for settle checks) is a request but not a page.
func (r *runState) page(ctx context.Context, w Interval, n, limit int, count bool) (tapd.Page, error) {
	q := tapd.Query{WorkspaceID: r.t.WorkspaceID, CompanyOnly: r.t.CompanyOnly, Limit: limit, Page: n,
		Start: w.Start, End: r.queryEnd(w)}
	p, err := r.s.o.TAPD.MemberActivityLog(ctx, q)
	r.mu.Lock()
	r.run.Requests++
	if err == nil && !count {
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
// ctx's cancellation: what was fetched is committed (unless the lease is
// gone, which the commit's fence finds out).
func (r *runState) writer(ctx context.Context) {
	ctx = context.WithoutCancel(ctx)
	for j := range r.writes {
		if r.writerErr() != nil {
			continue
		}
		var err error
		if len(j.batch) > 0 {
			err = r.store(ctx, j.batch, j.reread)
		}
		if err == nil && j.commit != nil {
			err = r.commit(ctx, *j.commit, j.total)
		}
		if err != nil {
			r.mu.Lock()
			r.writeErr = err
			r.mu.Unlock()
		}
	}
}

// store upserts normalized records in one transaction.
func (r *runState) store(ctx context.Context, batch []storage.Activity, reread bool) error {
	upsert := r.s.o.Store.UpsertMirrored
	if reread {
		upsert = r.s.o.Store.UpsertReread
	}
	res, err := upsert(ctx, batch)
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

// commit records a fully written window (fenced on the lease), then logs
// progress and saves the run's counters so status shows a run in flight.
func (r *runState) commit(ctx context.Context, c storage.WindowCommit, total int) error {
	if err := r.s.o.Store.CommitWindow(ctx, c); err != nil {
		return err
	}
	w := c.Window
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

func (r *runState) fmt(t time.Time) string { return t.In(r.s.loc).Format("2006-01-02 15:04") }

func (r *runState) fmtOr(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return r.fmt(t)
}

func (r *runState) fmtWindow(w Interval) string {
	return "[" + r.fmt(w.Start) + ", " + r.fmt(w.End) + ")"
}
