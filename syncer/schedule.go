package syncer

import (
	"context"
	"fmt"
	"time"

	"github.com/go-co-op/gocron/v2"

	"github.com/tapd-mirror/tapd-mirror/config"
)

// Start schedules every configured workspace every Interval, first run at
// once. Jobs run in singleton mode: a run still going when the next is due
// makes gocron skip that turn instead of stacking runs.
func (s *Syncer) Start() error {
	sched, err := gocron.NewScheduler(gocron.WithStopTimeout(s.o.StopTimeout), gocron.WithLocation(time.UTC))
	if err != nil {
		return fmt.Errorf("creating scheduler: %w", err)
	}
	for _, w := range s.o.Workspaces {
		job, err := sched.NewJob(
			gocron.DurationJob(s.o.Interval),
			gocron.NewTask(func(ctx context.Context) { s.runScheduled(ctx, w) }),
			gocron.WithName("sync "+w.Key),
			gocron.WithSingletonMode(gocron.LimitModeReschedule),
			gocron.WithStartAt(gocron.WithStartImmediately()),
		)
		if err != nil {
			return fmt.Errorf("scheduling %s: %w", w.Key, err)
		}
		s.mu.Lock()
		s.jobs[w.Key] = job
		s.mu.Unlock()
	}
	s.mu.Lock()
	s.sched = sched
	s.mu.Unlock()
	sched.Start()
	s.log.Info("sync schedule started", "workspaces", len(s.o.Workspaces), "interval", s.o.Interval.String())
	return nil
}

// runScheduled syncs one configured workspace (all its projects for
// projects:ID, through the run pool). A turn that cannot start leaves a log
// line and a metric.
func (s *Syncer) runScheduled(ctx context.Context, w config.Workspace) {
	targets, err := s.targetsOf(ctx, w)
	if err != nil {
		s.log.Error("scheduled sync could not start", "workspace", w.Key, "err", err)
		s.o.Metrics.StartFailed(w.Key, "targets")
		return
	}
	s.runMany(ctx, targets, RunOptions{Trigger: TriggerSchedule}, nil) //nolint:errcheck // each run records and logs its outcome
}

// Stop ends the schedule and any manual runs: their contexts are canceled,
// each stops after committing the page in hand, and Stop waits for them.
func (s *Syncer) Stop() error {
	s.stopBg()
	s.mu.Lock()
	sched := s.sched
	s.mu.Unlock()
	var err error
	if sched != nil {
		err = sched.Shutdown()
	}
	s.bg.Wait()
	return err
}

// Running reports whether the scheduler is started (for readiness).
func (s *Syncer) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sched != nil
}

// nextRun is when the job syncing target t runs next (zero if unscheduled).
func (s *Syncer) nextRun(t Target) time.Time {
	s.mu.Lock()
	job, ok := s.jobs[t.Configured]
	s.mu.Unlock()
	if !ok {
		return time.Time{}
	}
	next, err := job.NextRun()
	if err != nil {
		return time.Time{}
	}
	return next
}
