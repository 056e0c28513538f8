// Package syncer mirrors TAPD's member activity log into storage: it plans
// windows inside TAPD's half year, pages each closed window, normalizes and
// upserts records, reconciles counts, and moves a per-workspace checkpoint
// only after a window's records are committed. It knows the tapd and storage
// packages; the api package only sees its trigger and status methods.
package syncer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
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

// ErrBusy means the workspace is being synced already (here or by another replica).
var ErrBusy = errors.New("workspace is already being synced")

// ErrUnknownWorkspace means a trigger named a workspace that is not configured.
var ErrUnknownWorkspace = errors.New("workspace is not configured")

// TAPD is what the syncer needs of the TAPD client.
type TAPD interface {
	MemberActivityLog(ctx context.Context, q tapd.Query) (tapd.Page, error)
	Projects(ctx context.Context, companyID string) ([]tapd.Project, error)
}

// Target is one unit of sync: one TAPD query scope with its own checkpoint.
type Target struct {
	Key         string // checkpoint and lock key: the project id, or "company:ID"
	WorkspaceID string
	CompanyOnly bool
	Configured  string // the sync.workspaces entry it comes from (its schedule)
}

// Options configures a Syncer. Zero values take the documented defaults.
type Options struct {
	Store      *storage.Store
	TAPD       TAPD
	Workspaces []config.Workspace
	Location   *time.Location // TAPD's zone; default Asia/Shanghai
	PageSize   int            // default 200
	Overlap    time.Duration  // look-back before the checkpoint; default 5m
	Interval   time.Duration  // schedule; default 10m
	// HorizonDays is how far back TAPD answers (default 182); HorizonMargin
	// keeps the oldest window clear of it (default 5m), so clock skew never
	// asks TAPD for a minute it no longer serves.
	HorizonDays    int
	HorizonMargin  time.Duration
	PagingCap      int // TAPD's page×limit cap; default 20000
	SplitAbove     int // split a window in time before paging more records than this; default 5000
	ReconcileTries int // fetches of one window before it is given up as unverified; default 3
	StopTimeout    time.Duration
	Now            func() time.Time
	Logger         *slog.Logger
	Metrics        Metrics
}

// Syncer runs syncs: on a schedule, on demand, or once from the CLI.
type Syncer struct {
	o   Options
	log *slog.Logger

	mu      sync.Mutex
	running map[string]bool
	known   []Target              // last expansion of the configured workspaces
	jobs    map[string]gocron.Job // configured key → scheduled job
	sched   gocron.Scheduler
	bg      sync.WaitGroup  // manual runs
	bgCtx   context.Context // parent of manual runs, canceled by Stop
	stopBg  context.CancelFunc
}

// New returns a Syncer; Start adds the schedule.
func New(o Options) *Syncer {
	if o.Location == nil {
		o.Location = config.Default().Location()
	}
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
	setDur(&o.HorizonMargin, 5*time.Minute)
	setDur(&o.StopTimeout, 30*time.Second)
	setInt := func(n *int, v int) {
		if *n <= 0 {
			*n = v
		}
	}
	setInt(&o.HorizonDays, 182)
	setInt(&o.PagingCap, 20000)
	setInt(&o.SplitAbove, 5000)
	setInt(&o.ReconcileTries, 3)
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Metrics == nil {
		o.Metrics = nopMetrics{}
	}
	bgCtx, stop := context.WithCancel(context.Background())
	s := &Syncer{o: o, log: o.Logger, running: map[string]bool{}, jobs: map[string]gocron.Job{}, bgCtx: bgCtx, stopBg: stop}
	for _, w := range o.Workspaces {
		if !w.ExpandProjects {
			s.known = append(s.known, staticTarget(w))
		}
	}
	return s
}

func staticTarget(w config.Workspace) Target {
	if w.CompanyOnly {
		return Target{Key: "company:" + w.ID, WorkspaceID: w.ID, CompanyOnly: true, Configured: w.Key}
	}
	return Target{Key: w.ID, WorkspaceID: w.ID, Configured: w.Key}
}

// targetsOf expands one configured workspace; projects:ID asks TAPD for the
// company's current project list.
func (s *Syncer) targetsOf(ctx context.Context, w config.Workspace) ([]Target, error) {
	if !w.ExpandProjects {
		return []Target{staticTarget(w)}, nil
	}
	projects, err := s.o.TAPD.Projects(ctx, w.ID)
	if err != nil {
		return nil, fmt.Errorf("listing projects of company %s: %w", w.ID, err)
	}
	var out []Target
	for _, p := range projects {
		out = append(out, Target{Key: p.ID, WorkspaceID: p.ID, Configured: w.Key})
	}
	s.remember(out...)
	return out, nil
}

func (s *Syncer) remember(ts ...Target) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range ts {
		if !slices.ContainsFunc(s.known, func(k Target) bool { return k.Key == t.Key }) {
			s.known = append(s.known, t)
		}
	}
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
}

// claim takes the in-process and database locks of t and records a new run.
func (s *Syncer) claim(ctx context.Context, t Target, trigger string) (*storage.SyncRun, func(), error) {
	s.mu.Lock()
	if s.running[t.Key] {
		s.mu.Unlock()
		return nil, nil, fmt.Errorf("%s: %w", t.Key, ErrBusy)
	}
	s.running[t.Key] = true
	s.mu.Unlock()
	releaseLocal := func() {
		s.mu.Lock()
		delete(s.running, t.Key)
		s.mu.Unlock()
	}
	unlock, ok, err := s.o.Store.TryLock(ctx, "sync:"+t.Key)
	if err != nil || !ok {
		releaseLocal()
		if err == nil {
			err = fmt.Errorf("%s: %w (by another tapd-mirror process)", t.Key, ErrBusy)
		}
		return nil, nil, err
	}
	release := func() { unlock(); releaseLocal() }
	if n, err := s.o.Store.AbandonRuns(ctx, t.Key); err != nil {
		release()
		return nil, nil, err
	} else if n > 0 {
		s.log.Warn("earlier runs never finished; marked abandoned", "workspace", t.Key, "runs", n)
	}
	run := &storage.SyncRun{Workspace: t.Key, Trigger: trigger, Outcome: storage.OutcomeRunning, StartedAt: time.Now()}
	if err := s.o.Store.CreateRun(ctx, run); err != nil {
		release()
		return nil, nil, err
	}
	return run, release, nil
}

// RunTarget syncs one target now and returns its run record. ErrBusy when
// another run of the same target holds its lock.
func (s *Syncer) RunTarget(ctx context.Context, t Target, ro RunOptions) (storage.SyncRun, error) {
	run, release, err := s.claim(ctx, t, ro.Trigger)
	if err != nil {
		return storage.SyncRun{}, err
	}
	defer release()
	return s.execute(ctx, t, run, ro)
}

// RunAll syncs every configured workspace once, one after another. Busy
// workspaces are skipped (another process has them); the error joins every
// failure.
func (s *Syncer) RunAll(ctx context.Context, ro RunOptions, only string) ([]storage.SyncRun, error) {
	targets, err := s.choose(ctx, only)
	errs := []error{err}
	var runs []storage.SyncRun
	for _, t := range targets {
		if ctx.Err() != nil {
			break
		}
		run, err := s.RunTarget(ctx, t, ro)
		if errors.Is(err, ErrBusy) {
			s.log.Info("workspace skipped: already being synced", "workspace", t.Key)
			continue
		}
		if run.ID != 0 {
			runs = append(runs, run)
		}
		errs = append(errs, err)
	}
	return runs, errors.Join(errs...)
}

// choose expands the configured workspaces and keeps the ones named by
// workspace: a configured key, a project of a projects:ID entry, or "" for
// all. Naming one that matches nothing is ErrUnknownWorkspace.
func (s *Syncer) choose(ctx context.Context, workspace string) ([]Target, error) {
	targets, err := s.Targets(ctx)
	var chosen []Target
	for _, t := range targets {
		if workspace == "" || t.Key == workspace || t.WorkspaceID == workspace {
			chosen = append(chosen, t)
		}
	}
	if len(chosen) == 0 && workspace != "" && err == nil {
		err = fmt.Errorf("%q: %w (sync.workspaces)", workspace, ErrUnknownWorkspace)
	}
	return chosen, err
}

// Trigger starts runs in the background for one workspace (a configured key,
// a company's project id, or "" for all) and returns their records at once.
func (s *Syncer) Trigger(ctx context.Context, workspace string, full bool) ([]storage.SyncRun, error) {
	chosen, err := s.choose(ctx, workspace)
	if len(chosen) == 0 {
		if err == nil { // nothing configured at all
			err = fmt.Errorf("%q: %w (sync.workspaces)", workspace, ErrUnknownWorkspace)
		}
		return nil, err
	}
	var started []storage.SyncRun
	var errs []error
	for _, t := range chosen {
		run, release, err := s.claim(ctx, t, TriggerManual)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		started = append(started, *run)
		s.bg.Add(1)
		go func() {
			defer s.bg.Done()
			defer release()
			s.execute(s.bgCtx, t, run, RunOptions{Trigger: TriggerManual, Full: full}) //nolint:errcheck // recorded on the run
		}()
	}
	if len(started) == 0 {
		return nil, errors.Join(errs...)
	}
	return started, nil
}

// Wait blocks until background (manual) runs end.
func (s *Syncer) Wait() { s.bg.Wait() }
