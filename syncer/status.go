package syncer

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/tapd-mirror/tapd-mirror/storage"
)

// WorkspaceStatus is what an operator needs to know of one target.
type WorkspaceStatus struct {
	Workspace string `json:"workspace"`
	Running   bool   `json:"running"`
	// RunningOn names where it runs: "this process (queued|running)" or the
	// lease holder's host:pid.
	RunningOn  string             `json:"running_on,omitempty"`
	Checkpoint *time.Time         `json:"checkpoint"`
	Covered    []storage.Interval `json:"covered"`
	Gaps       []storage.Gap      `json:"gaps"`
	// FreshAt is when a run last committed its newest window: the mirror
	// holds everything TAPD showed up to a minute before it. A partial run
	// (a gap elsewhere) still makes the target fresh.
	FreshAt     *time.Time       `json:"fresh_at"`
	LastSuccess *storage.SyncRun `json:"last_success"` // latest run that finished (success or partial)
	LastFailure *storage.SyncRun `json:"last_failure"`
	NextRun     *time.Time       `json:"next_run"`
	// RecordsStored counts the records this target reported (a record seen
	// through a project and its company counts for both).
	RecordsStored int64        `json:"records_stored"`
	Settle        *SettleCheck `json:"settle,omitempty"`
	// BeyondHorizon counts the target's records older than TAPD's horizon
	// now (by the syncer's clock), still in the archive: only the mirror has them.
	BeyondHorizon storage.Beyond `json:"beyond_horizon"`
	// AtRisk is the oldest TAPD time the mirror has not fetched yet, and
	// how long until it leaves TAPD's half year (absent when all is fetched).
	AtRisk *AtRisk `json:"at_risk,omitempty"`
	// TAPDQuotaPausedUntil is set while TAPD's quota penalty pauses every
	// request of the account (all targets alike); runs resume by themselves.
	TAPDQuotaPausedUntil *time.Time `json:"tapd_quota_paused_until,omitempty"`
}

// AtRisk is a target's oldest unfetched minute and its time to expiry.
type AtRisk struct {
	OldestUnfetched  time.Time `json:"oldest_unfetched"`
	ExpiresAt        time.Time `json:"expires_at"`
	ExpiresInSeconds int64     `json:"expires_in_seconds"` // 0 when it is expiring now
}

// atRisk is state's AtRisk at now (nil when nothing is left to fetch).
func (s *Syncer) atRisk(state storage.SyncState, now time.Time) *AtRisk {
	horizon := s.horizonAt(now)
	oldest, ok := state.OldestUnfetched(horizon, now)
	if !ok {
		return nil
	}
	expires := oldest.In(s.loc).AddDate(0, 0, s.o.HorizonDays)
	return &AtRisk{OldestUnfetched: oldest, ExpiresAt: expires, ExpiresInSeconds: max(int64(expires.Sub(now)/time.Second), 0)}
}

// QuotaPausedUntil is when TAPD's quota penalty ends (every target shares
// the API account); zero when TAPD is not refusing.
func (s *Syncer) QuotaPausedUntil() time.Time {
	if p, ok := s.o.TAPD.(interface{ PausedUntil() time.Time }); ok {
		return p.PausedUntil()
	}
	return time.Time{}
}

// SettleCheck is the last re-count of recent windows at TAPD.
type SettleCheck struct {
	At          time.Time `json:"at"`
	RemoteTotal int       `json:"remote_total"` // TAPD's count then
	Reported    int       `json:"reported"`     // records the target had reported in the same span
}

// Status reports every target known so far (projects of projects:ID
// appear once they were listed) in a fixed number of queries.
func (s *Syncer) Status(ctx context.Context) ([]WorkspaceStatus, error) {
	s.mu.Lock()
	known := slices.Clone(s.known)
	active := make(map[string]string, len(s.active))
	for k, v := range s.active {
		active[k] = v
	}
	s.mu.Unlock()
	store := s.o.Store
	states, err := store.SyncStates(ctx)
	if err != nil {
		return nil, err
	}
	leases, err := store.Leases(ctx)
	if err != nil {
		return nil, err
	}
	finished, err := store.LatestRuns(ctx, storage.OutcomeSuccess, storage.OutcomePartial)
	if err != nil {
		return nil, err
	}
	failed, err := store.LatestRuns(ctx, storage.OutcomeFailed, storage.OutcomeLostLease)
	if err != nil {
		return nil, err
	}
	counts, err := store.ReportedCounts(ctx)
	if err != nil {
		return nil, err
	}
	keys := make([]string, len(known))
	for i, t := range known {
		keys[i] = t.Key
	}
	beyond, err := store.ReportedBeyond(ctx, s.Horizon(), keys)
	if err != nil {
		return nil, err
	}
	out := []WorkspaceStatus{}
	now := s.o.Now()
	paused := s.QuotaPausedUntil()
	for _, t := range known {
		state := states[t.Key]
		st := WorkspaceStatus{Workspace: t.Key, Covered: state.Coverage, Gaps: state.Gaps(), RecordsStored: counts[t.Key],
			BeyondHorizon: beyond[t.Key], AtRisk: s.atRisk(state, now)}
		if !paused.IsZero() {
			st.TAPDQuotaPausedUntil = &paused
		}
		if st.Covered == nil {
			st.Covered = []storage.Interval{}
		}
		if a := active[t.Key]; a != "" {
			st.Running, st.RunningOn = true, "this process ("+a+")"
		} else if l, ok := leases[t.Key]; ok && s.heldElsewhere(l) {
			st.Running, st.RunningOn = true, l.Process
		}
		if state.Synced() {
			st.Checkpoint = &state.HighWater
		}
		if !state.FreshAt.IsZero() {
			st.FreshAt = &state.FreshAt
		}
		if !state.SettledAt.IsZero() {
			st.Settle = &SettleCheck{At: state.SettledAt, RemoteTotal: state.SettleRemote, Reported: state.SettleStored}
		}
		if next := s.nextRun(t); !next.IsZero() {
			st.NextRun = &next
		}
		if r, ok := finished[t.Key]; ok {
			st.LastSuccess = &r
		}
		if r, ok := failed[t.Key]; ok {
			st.LastFailure = &r
		}
		out = append(out, st)
	}
	return out, nil
}

// KnownKeys lists the workspace keys known so far.
func (s *Syncer) KnownKeys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, len(s.known))
	for i, t := range s.known {
		out[i] = t.Key
	}
	return out
}

// Horizon is the oldest instant TAPD still answers for, by the syncer's clock.
func (s *Syncer) Horizon() time.Time { return s.horizonAt(s.o.Now()) }

// ExpiresIn is how long until target's oldest unfetched minute leaves
// TAPD's half year; ok is false when nothing is left to fetch (metrics).
func (s *Syncer) ExpiresIn(state storage.SyncState) (time.Duration, bool) {
	r := s.atRisk(state, s.o.Now())
	if r == nil {
		return 0, false
	}
	return time.Duration(r.ExpiresInSeconds) * time.Second, true
}

// horizonAt is TAPD's horizon, computed in TAPD's zone: days back on TAPD's
// calendar, so a server in a daylight-saving zone never asks for an hour
// TAPD no longer serves.
func (s *Syncer) horizonAt(now time.Time) time.Time {
	return now.In(s.loc).AddDate(0, 0, -s.o.HorizonDays)
}

// AcknowledgeGaps marks a known workspace's current gaps as acknowledged.
func (s *Syncer) AcknowledgeGaps(ctx context.Context, workspace, note string) ([]storage.Interval, error) {
	if !slices.Contains(s.KnownKeys(), workspace) {
		return nil, fmt.Errorf("%q: %w", workspace, ErrUnknownWorkspace)
	}
	return s.o.Store.AcknowledgeGaps(ctx, workspace, note)
}
