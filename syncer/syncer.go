// Package syncer mirrors TAPD's member activity log into storage: it plans
// windows inside TAPD's half year, pages each closed window, normalizes and
// upserts records, reconciles counts, and moves a per-target checkpoint only
// after a window's records are committed. Runs share a bounded pool, and each
// target is held by a lease row in the database, never by a lock on a pooled
// connection. It knows the tapd and storage packages; the api package only
// sees its trigger and status methods.
package syncer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-co-op/gocron/v2"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/tapd"
)

// Triggers of a run.
const (
	TriggerSchedule = "schedule"
	TriggerManual   = "manual"
	TriggerCLI      = "cli"
)

// ErrBusy means the target is being synced already (here or by another process).
var ErrBusy = errors.New("workspace is already being synced")

// BusyError is ErrBusy with who holds the target: another process (its
// lease), or this one.
type BusyError struct {
	Target    string
	InProcess bool
	Lease     storage.Lease // the lease in force, when another process holds it
}

func (e *BusyError) Error() string {
	if e.InProcess {
		return e.Target + ": " + ErrBusy.Error() + " (in this process)"
	}
	return fmt.Sprintf("%s: %v by %s (run %d, lease until %s)", e.Target, ErrBusy, e.Lease.Process,
		e.Lease.RunID, e.Lease.ExpiresAt.Format(time.RFC3339))
}

func (e *BusyError) Is(target error) bool { return target == ErrBusy }

// ErrUnknownWorkspace means a trigger named a workspace that is not configured.
var ErrUnknownWorkspace = errors.New("workspace is not configured")

// TAPD is what the syncer needs of the TAPD client.
type TAPD interface {
	MemberActivityLog(ctx context.Context, q tapd.Query) (tapd.Page, error)
	Projects(ctx context.Context, companyID string) ([]tapd.Project, error)
	// Location is TAPD's time zone: every window, month cut and horizon is
	// computed in it, never in the server's zone.
	Location() *time.Location
}

// Target is one unit of sync: one TAPD query scope with its own checkpoint.
type Target struct {
	Key         string // checkpoint and lease key: the project id, "company:ID" or "all:ID"
	WorkspaceID string // a project id, or the company id (company-level logs, or all its projects)
	CompanyOnly bool
	Configured  string // the sync.workspaces entry it comes from (its schedule)
}

// Options configures a Syncer. Zero values take the documented defaults.
type Options struct {
	Store      *storage.Store
	TAPD       TAPD
	Workspaces []config.Workspace
	PageSize   int           // default 200
	Overlap    time.Duration // look-back before the checkpoint; default 5m
	Interval   time.Duration // schedule; default 10m
	// TAPD's limits (config tapd.*): how far back it answers, the page×limit
	// cap, and how many records a window may hold before it is split.
	HorizonDays int // default 182
	PagingCap   int // default 20000
	SplitAbove  int // default 5000
	// MaxConcurrent bounds the runs syncing at once (default 4): TAPD's quota
	// is shared by all of them anyway.
	MaxConcurrent int
	// LeaseTTL is how long a target's lease lasts unrenewed (default 5m); it
	// is renewed every third of it and at every window commit.
	LeaseTTL time.Duration
	// Settle is how long after their end windows are re-counted at TAPD
	// (default 48h), at most every SettleCheck (default 1h).
	Settle      time.Duration
	SettleCheck time.Duration
	// RunHistory is how long finished runs are kept (default 90 days).
	RunHistory     time.Duration
	ReconcileTries int // fetches of one window before it is given up as unverified; default 3
	StopTimeout    time.Duration
	Now            func() time.Time
	Logger         *slog.Logger
	Metrics        Metrics
}

// Syncer runs syncs: on a schedule, on demand, or once from the CLI.
type Syncer struct {
	o       Options
	log     *slog.Logger
	loc     *time.Location
	process string         // host:pid:instance, the lease holder prefix of this Syncer
	self    storage.Holder // this process, as recorded on its leases
	pool    *deadlinePool  // one slot per run allowed to sync at once, earliest deadline first

	mu        sync.Mutex
	active    map[string]string     // target key → "queued" or "running" in this process
	recording map[int64]bool        // runs whose outcome is still being written
	known     []Target              // last expansion of the configured workspaces
	jobs      map[string]gocron.Job // configured key → scheduled job
	sched     gocron.Scheduler
	bg        sync.WaitGroup  // manual runs and outcome writers
	bgCtx     context.Context // parent of manual runs, canceled by Stop
	stopBg    context.CancelFunc
	endMinute endMinute  // what TAPD's end_time means, once learned
	probeMu   sync.Mutex // serializes probes of end_time's meaning
}

// New returns a Syncer; Start adds the schedule.
func New(o Options) *Syncer {
	if o.PageSize <= 0 {
		o.PageSize = tapd.MaxLimit
	}
	setDur := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	setDur(&o.Overlap, 5*time.Minute)
	setDur(&o.Interval, 10*time.Minute)
	setDur(&o.StopTimeout, 30*time.Second)
	setDur(&o.LeaseTTL, 5*time.Minute)
	setDur(&o.Settle, 48*time.Hour)
	setDur(&o.SettleCheck, time.Hour)
	setDur(&o.RunHistory, 90*24*time.Hour)
	setInt := func(n *int, v int) {
		if *n <= 0 {
			*n = v
		}
	}
	setInt(&o.HorizonDays, 182)
	setInt(&o.PagingCap, 20000)
	setInt(&o.SplitAbove, 5000)
	setInt(&o.ReconcileTries, 3)
	setInt(&o.MaxConcurrent, 4)
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Metrics == nil {
		o.Metrics = nopMetrics{}
	}
	host, _ := os.Hostname()
	instance := make([]byte, 3)
	rand.Read(instance) //nolint:errcheck // crypto/rand never fails on supported platforms
	bgCtx, stop := context.WithCancel(context.Background())
	// process names this Syncer in lease rows: host:pid plus an instance tag,
	// so two Syncers in one process (tests) exclude each other like processes.
	s := &Syncer{o: o, log: o.Logger, loc: o.TAPD.Location(),
		process: fmt.Sprintf("%s:%d:%s", host, os.Getpid(), hex.EncodeToString(instance)),
		self:    storage.ThisProcess(host), pool: newDeadlinePool(o.MaxConcurrent), active: map[string]string{}, recording: map[int64]bool{},
		jobs: map[string]gocron.Job{}, bgCtx: bgCtx, stopBg: stop}
	for _, w := range o.Workspaces {
		if !w.ExpandProjects {
			s.known = append(s.known, staticTargets(w)...)
		}
	}
	return s
}

// staticTargets are the targets of an entry that needs no project list.
// all:ID is the company-wide stream plus the company-level logs, which
// targetsOf drops once TAPD is known to include them in the company-wide
// query.
func staticTargets(w config.Workspace) []Target {
	companyLevel := Target{Key: "company:" + w.ID, WorkspaceID: w.ID, CompanyOnly: true, Configured: w.Key}
	switch {
	case w.CompanyOnly:
		return []Target{companyLevel}
	case w.CompanyWide:
		return []Target{{Key: "all:" + w.ID, WorkspaceID: w.ID, Configured: w.Key}, companyLevel}
	}
	return []Target{{Key: w.ID, WorkspaceID: w.ID, Configured: w.Key}}
}

// targetsOf expands one configured workspace; projects:ID asks TAPD for the
// company's current project list, so new projects are picked up and removed
// ones stop being polled (their history stays).
func (s *Syncer) targetsOf(ctx context.Context, w config.Workspace) ([]Target, error) {
	var out []Target
	switch {
	case w.CompanyWide:
		out = staticTargets(w)
		included, err := s.companyWideIncludesCompanyLevel(ctx, w.ID)
		if err != nil {
			s.log.Warn("could not learn whether TAPD's company-wide query includes company-level logs; fetching them separately",
				"company", w.ID, "err", err)
		}
		if included {
			out = out[:1]
		}
	case !w.ExpandProjects:
		return staticTargets(w), nil
	default:
		projects, err := s.o.TAPD.Projects(ctx, w.ID)
		if err != nil {
			return nil, fmt.Errorf("listing projects of company %s: %w", w.ID, err)
		}
		out = []Target{}
		for _, p := range projects {
			out = append(out, Target{Key: p.ID, WorkspaceID: p.ID, Configured: w.Key})
		}
	}
	s.mu.Lock()
	s.known = slices.DeleteFunc(s.known, func(k Target) bool { return k.Configured == w.Key })
	for _, t := range out {
		if !slices.ContainsFunc(s.known, func(k Target) bool { return k.Key == t.Key }) {
			s.known = append(s.known, t)
		}
	}
	s.mu.Unlock()
	return out, nil
}

// Targets expands every configured workspace, deduplicated by key.
func (s *Syncer) Targets(ctx context.Context) ([]Target, error) {
	var out []Target
	var errs []error
	for _, w := range s.o.Workspaces {
		ts, err := s.targetsOf(ctx, w)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, t := range ts {
			if !slices.ContainsFunc(out, func(o Target) bool { return o.Key == t.Key }) {
				out = append(out, t)
			}
		}
	}
	return out, errors.Join(errs...)
}

// RunOptions shape one run.
type RunOptions struct {
	Trigger string
	Full    bool      // re-fetch the whole half year
	Since   time.Time // re-fetch from here (clipped to the half year)
	// WaitForLease makes a target held by another live process wait for
	// its lease instead of being skipped.
	WaitForLease bool
	// planAt is the instant every run of one batch plans from: each
	// target's plan starts where its data expires (the horizon then), not
	// where the horizon happens to be when its run gets a pool slot, so
	// what expires meanwhile is seen (a gap) rather than silently skipped.
	planAt time.Time
}

// planTime is when a run plans from: its batch's instant, or now.
func (s *Syncer) planTime(ro RunOptions) time.Time {
	if ro.planAt.IsZero() {
		return s.o.Now()
	}
	return ro.planAt
}

// reserve marks t as queued in this process; false when it is queued or
// running here already.
func (s *Syncer) reserve(t Target) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active[t.Key] != "" {
		return false
	}
	s.active[t.Key] = "queued"
	return true
}

func (s *Syncer) setActive(key, state string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if state == "" {
		delete(s.active, key)
	} else {
		s.active[key] = state
	}
}

// RunTarget syncs one target now (after waiting for a pool slot) and
// returns its run record. ErrBusy when the target runs already, here or in
// another process.
func (s *Syncer) RunTarget(ctx context.Context, t Target, ro RunOptions) (storage.SyncRun, error) {
	if !s.reserve(t) {
		return storage.SyncRun{}, &BusyError{Target: t.Key, InProcess: true}
	}
	defer s.setActive(t.Key, "")
	return s.runReserved(ctx, t, ro)
}

// runReserved waits for a pool slot, takes the target's lease, and runs.
// With ro.WaitForLease a lease held by another live process is waited for
// (without holding a slot meanwhile).
func (s *Syncer) runReserved(ctx context.Context, t Target, ro RunOptions) (storage.SyncRun, error) {
	for {
		run, err := s.runOnce(ctx, t, ro)
		var busy *BusyError
		if !ro.WaitForLease || !errors.As(err, &busy) {
			return run, err
		}
		wait := min(max(time.Until(busy.Lease.ExpiresAt), 0), s.o.LeaseTTL/10, 2*time.Second) + 50*time.Millisecond
		s.log.Info("waiting for the sync lease held by another process", "workspace", t.Key,
			"holder", busy.Lease.Process, "until", busy.Lease.ExpiresAt.Format(time.RFC3339))
		select {
		case <-ctx.Done():
			return storage.SyncRun{}, context.Cause(ctx)
		case <-time.After(wait):
		}
	}
}

func (s *Syncer) runOnce(ctx context.Context, t Target, ro RunOptions) (storage.SyncRun, error) {
	d := s.deadline(ctx, t, ro)
	s.log.Debug("run waiting for a pool slot", "workspace", t.Key, "deadline", d)
	if err := s.pool.acquire(ctx, d); err != nil {
		return storage.SyncRun{}, err
	}
	defer s.pool.release()
	s.setActive(t.Key, "running")
	defer s.setActive(t.Key, "queued")

	c, err := s.claim(ctx, t, ro.Trigger)
	if err != nil {
		if !errors.Is(err, ErrBusy) {
			s.log.Error("sync run could not start", "workspace", t.Key, "trigger", ro.Trigger, "err", err)
			s.o.Metrics.StartFailed(t.Key, "claim")
		}
		return storage.SyncRun{}, err
	}
	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stopBeat := s.heartbeat(runCtx, cancel, t, c.holder)
	run, err := s.execute(runCtx, t, c.run, ro, c.holder)
	stopBeat()
	if rerr := s.o.Store.ReleaseLease(context.WithoutCancel(ctx), t.Key, c.holder); rerr != nil {
		s.log.Warn("releasing the sync lease failed; it expires by itself", "workspace", t.Key, "err", rerr)
	}
	return run, err
}

// deadline is the urgency of the first window t's run would fetch: its
// place in the pool's queue. Unknown (the database away) counts as most
// urgent: such a run fails at once and frees its slot.
func (s *Syncer) deadline(ctx context.Context, t Target, ro RunOptions) time.Time {
	state, err := s.o.Store.SyncState(ctx, t.Key)
	if err != nil {
		return time.Time{}
	}
	windows, _, _ := s.plan(state, ro, s.planTime(ro))
	if len(windows) == 0 {
		return notUrgent
	}
	return s.urgency(windows[0].Start)
}

// urgency is a window's deadline in the pool: its start while that is
// within firstWindow of the horizon (it expires within a day: earliest
// first), else notUrgent.
func (s *Syncer) urgency(start time.Time) time.Time {
	if start.Before(s.horizonAt(s.o.Now()).Add(firstWindow)) {
		return start
	}
	return notUrgent
}

// yieldSlot lets more urgent runs go first: every run calls it between
// windows with the start of its next window. A window about to expire goes
// before any that is not, earliest first, so a backfill of many targets
// fetches every target's oldest day before anyone's newer windows; the rest
// take turns window by window, so an incremental run never waits for a
// whole backfill. The run keeps its lease meanwhile. It waits for the slot
// back even when ctx ends, so the run still holds one when it returns it.
func (s *Syncer) yieldSlot(next time.Time) {
	d := s.urgency(next)
	if !s.pool.shouldYield(d) {
		return
	}
	s.pool.release()
	s.pool.acquire(context.Background(), d) //nolint:errcheck // cannot fail without a deadline
}

// claimed is a run that holds its target's lease.
type claimed struct {
	run    *storage.SyncRun
	holder string
}

// claim takes t's lease, marks runs left by dead processes abandoned, prunes
// old run history and records a new run.
func (s *Syncer) claim(ctx context.Context, t Target, trigger string) (claimed, error) {
	token := make([]byte, 6)
	rand.Read(token) //nolint:errcheck // crypto/rand never fails on supported platforms
	holder := s.process + ":" + hex.EncodeToString(token)
	current, ok, err := s.o.Store.TakeLease(ctx, t.Key, holder, s.process, s.self, s.o.LeaseTTL)
	if err != nil {
		return claimed{}, err
	}
	if !ok {
		return claimed{}, &BusyError{Target: t.Key, Lease: current}
	}
	if current.TakenOver != "" {
		s.log.Warn("sync lease taken over: its holder's process is gone", "workspace", t.Key,
			"holder", current.TakenOver)
	}
	release := func() { s.o.Store.ReleaseLease(context.WithoutCancel(ctx), t.Key, holder) } //nolint:errcheck // it expires anyway
	if n, err := s.o.Store.AbandonRuns(ctx, t.Key, s.recordingRuns()...); err != nil {
		release()
		return claimed{}, err
	} else if n > 0 {
		s.log.Warn("earlier runs never finished: their process died; marked abandoned", "workspace", t.Key, "runs", n)
	}
	if n, err := s.o.Store.PruneRuns(ctx, time.Now().Add(-s.o.RunHistory)); err != nil {
		s.log.Warn("pruning run history failed", "err", err)
	} else if n > 0 {
		s.log.Info("old sync runs pruned", "runs", n, "older_than", s.o.RunHistory.String())
	}
	run := &storage.SyncRun{Workspace: t.Key, Trigger: trigger, Outcome: storage.OutcomeRunning, StartedAt: time.Now()}
	if err := s.o.Store.CreateRun(ctx, run); err != nil {
		release()
		return claimed{}, err
	}
	if err := s.o.Store.SetLeaseRun(ctx, t.Key, holder, run.ID); err != nil {
		s.log.Warn("recording the run on its lease failed", "workspace", t.Key, "err", err)
	}
	return claimed{run: run, holder: holder}, nil
}

// heartbeat renews the lease every third of its TTL while the run works, so
// a slow window (rate limits, retries) never lets it expire. When the lease
// was taken by another process the run is canceled with errLeaseLost.
func (s *Syncer) heartbeat(ctx context.Context, cancel context.CancelCauseFunc, t Target, holder string) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(s.o.LeaseTTL / 3)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
				err := s.o.Store.RenewLease(ctx, t.Key, holder, s.o.LeaseTTL)
				if errors.Is(err, storage.ErrLeaseLost) {
					s.log.Error("sync lease taken by another process; stopping this run", "workspace", t.Key)
					cancel(storage.ErrLeaseLost) // the run's cancellation cause
					return
				}
				if err != nil {
					s.log.Warn("renewing the sync lease failed; retrying", "workspace", t.Key, "err", err)
				}
			}
		}
	}()
	return func() { close(done); <-finished }
}

func (s *Syncer) recordingRuns() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]int64, 0, len(s.recording))
	for id := range s.recording {
		out = append(out, id)
	}
	return out
}

// RunAll syncs every configured workspace once, up to MaxConcurrent at a
// time. Targets busy elsewhere are skipped; the error joins every failure.
func (s *Syncer) RunAll(ctx context.Context, ro RunOptions, only string) ([]storage.SyncRun, error) {
	rep, err := s.Sync(ctx, ro, only)
	return rep.Runs, err
}

// Report is what one batch did with every target it was asked for.
type Report struct {
	Targets []Target          // every target asked for, in configuration order
	Runs    []storage.SyncRun // by run id
	Skipped []*BusyError      // targets held by another run, here or elsewhere
	Failed  map[string]error  // targets whose run could not start or failed, by key
}

// Sync is RunAll with a report of every target: run, skipped (and who
// holds it), or failed to start.
func (s *Syncer) Sync(ctx context.Context, ro RunOptions, only string) (Report, error) {
	targets, err := s.choose(ctx, only)
	return s.runMany(ctx, targets, ro, err)
}

// runMany runs targets through the pool and waits for all of them. They
// all plan from one instant (see RunOptions.planAt).
func (s *Syncer) runMany(ctx context.Context, targets []Target, ro RunOptions, err error) (Report, error) {
	if ro.planAt.IsZero() {
		ro.planAt = s.o.Now()
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := []error{err}
	rep := Report{Targets: targets, Failed: map[string]error{}}
	for _, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			run, err := s.RunTarget(ctx, t, ro)
			mu.Lock()
			defer mu.Unlock()
			var busy *BusyError
			switch {
			case errors.As(err, &busy):
				s.log.Info("workspace skipped: already being synced", "workspace", t.Key, "why", err)
				rep.Skipped = append(rep.Skipped, busy)
				return
			case run.ID != 0:
				rep.Runs = append(rep.Runs, run)
			case err != nil:
				rep.Failed[t.Key] = err
			}
			errs = append(errs, err)
		}()
	}
	wg.Wait()
	slices.SortFunc(rep.Runs, func(a, b storage.SyncRun) int { return int(a.ID - b.ID) })
	slices.SortFunc(rep.Skipped, func(a, b *BusyError) int { return strings.Compare(a.Target, b.Target) })
	return rep, errors.Join(errs...)
}

// choose expands the configured workspaces and keeps the ones named by
// workspace: a target key, a project id, a configured entry (ID,
// company:ID, projects:ID), or "" for all. Naming one that matches nothing
// is ErrUnknownWorkspace.
func (s *Syncer) choose(ctx context.Context, workspace string) ([]Target, error) {
	targets, err := s.Targets(ctx)
	var chosen []Target
	for _, t := range targets {
		if workspace == "" || t.Key == workspace || t.Configured == workspace || (t.WorkspaceID == workspace && !t.CompanyOnly) {
			chosen = append(chosen, t)
		}
	}
	if len(chosen) == 0 && workspace != "" && err == nil {
		err = fmt.Errorf("%q: %w (sync.workspaces; forms: ID, company:ID, projects:ID, or a project of a projects:ID entry)", workspace, ErrUnknownWorkspace)
	}
	return chosen, err
}

// Triggered says what a manual trigger did with each target it named.
type Triggered struct {
	Queued         []string           `json:"queued"`          // will run as soon as a pool slot is free
	AlreadyRunning []RunningElsewhere `json:"already_running"` // not started again
	Failed         []TriggerFailure   `json:"failed"`          // could not be queued, and why
}

// RunningElsewhere is a target that was running (or queued) when triggered.
type RunningElsewhere struct {
	Workspace string `json:"workspace"`
	Where     string `json:"where"` // "this process (queued|running)" or the holder's host:pid
	RunID     int64  `json:"run_id,omitempty"`
}

// TriggerFailure is a target or entry that could not be queued.
type TriggerFailure struct {
	Workspace string `json:"workspace"`
	Error     string `json:"error"`
}

// Trigger queues runs of the named workspace ("" for all) in the background
// and answers at once with what was queued, what was already running, and
// what failed to start. ErrUnknownWorkspace when the name matches nothing.
func (s *Syncer) Trigger(ctx context.Context, workspace string, full bool) (Triggered, error) {
	return s.trigger(ctx, workspace, RunOptions{Trigger: TriggerManual, Full: full})
}

// TriggerSince is Trigger re-fetching from since (clipped to TAPD's half year).
func (s *Syncer) TriggerSince(ctx context.Context, workspace string, since time.Time) (Triggered, error) {
	return s.trigger(ctx, workspace, RunOptions{Trigger: TriggerManual, Since: since})
}

func (s *Syncer) trigger(ctx context.Context, workspace string, ro RunOptions) (Triggered, error) {
	out := Triggered{Queued: []string{}, AlreadyRunning: []RunningElsewhere{}, Failed: []TriggerFailure{}}
	chosen, err := s.choose(ctx, workspace)
	if err != nil {
		if len(chosen) == 0 {
			return out, err
		}
		out.Failed = append(out.Failed, TriggerFailure{Workspace: workspace, Error: err.Error()})
	}
	leases, err := s.o.Store.Leases(ctx)
	if err != nil {
		return out, err
	}
	ro.planAt = s.o.Now() // one batch: see RunOptions.planAt
	for _, t := range chosen {
		if l, held := leases[t.Key]; held && s.heldElsewhere(l) {
			out.AlreadyRunning = append(out.AlreadyRunning, RunningElsewhere{Workspace: t.Key, Where: l.Process, RunID: l.RunID})
			continue
		}
		if !s.reserve(t) {
			s.mu.Lock()
			state := s.active[t.Key]
			s.mu.Unlock()
			r := RunningElsewhere{Workspace: t.Key, Where: "this process (" + state + ")"}
			if l, held := leases[t.Key]; held {
				r.RunID = l.RunID
			}
			out.AlreadyRunning = append(out.AlreadyRunning, r)
			continue
		}
		out.Queued = append(out.Queued, t.Key)
		s.bg.Add(1)
		go func() {
			defer s.bg.Done()
			defer s.setActive(t.Key, "")
			s.runReserved(s.bgCtx, t, ro) //nolint:errcheck // recorded on the run
		}()
	}
	return out, nil
}

// heldElsewhere reports whether l is held by another live process (a lease
// of a process gone from this host is taken over by the next run).
func (s *Syncer) heldElsewhere(l storage.Lease) bool {
	return l.Process != s.process && !l.Owner.GoneFrom(s.self.Host)
}

// Wait blocks until background (manual) runs end.
func (s *Syncer) Wait() { s.bg.Wait() }
