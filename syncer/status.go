package syncer

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/tapd-mirror/tapd-mirror/storage"
)

// WorkspaceStatus is what an operator needs to know of one workspace.
type WorkspaceStatus struct {
	Workspace     string             `json:"workspace"`
	Running       bool               `json:"running"`
	Checkpoint    *time.Time         `json:"checkpoint"`
	Covered       []storage.Interval `json:"covered"`
	Gaps          []storage.Gap      `json:"gaps"`
	LastSuccess   *storage.SyncRun   `json:"last_success"`
	LastFailure   *storage.SyncRun   `json:"last_failure"`
	NextRun       *time.Time         `json:"next_run"`
	RecordsStored int64              `json:"records_stored"`
}

// Status reports every workspace known so far (projects of projects:ID
// appear once they were listed).
func (s *Syncer) Status(ctx context.Context) ([]WorkspaceStatus, error) {
	s.mu.Lock()
	known := slices.Clone(s.known)
	s.mu.Unlock()
	out := []WorkspaceStatus{}
	for _, t := range known {
		st, err := s.statusOf(ctx, t)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

func (s *Syncer) statusOf(ctx context.Context, t Target) (WorkspaceStatus, error) {
	store := s.o.Store
	state, err := store.SyncState(ctx, t.Key)
	if err != nil {
		return WorkspaceStatus{}, err
	}
	st := WorkspaceStatus{Workspace: t.Key, Covered: state.Coverage, Gaps: state.Gaps()}
	if st.Covered == nil {
		st.Covered = []storage.Interval{}
	}
	s.mu.Lock()
	st.Running = s.running[t.Key]
	s.mu.Unlock()
	if state.Synced() {
		st.Checkpoint = &state.HighWater
	}
	if next := s.nextRun(t); !next.IsZero() {
		st.NextRun = &next
	}
	for outcome, dst := range map[string]**storage.SyncRun{storage.OutcomeSuccess: &st.LastSuccess, storage.OutcomeFailed: &st.LastFailure} {
		runs, err := store.ListRuns(ctx, t.Key, outcome, 1, 0)
		if err != nil {
			return st, err
		}
		if len(runs) > 0 {
			*dst = &runs[0]
		}
	}
	if st.RecordsStored, err = store.CountWorkspaceRecords(ctx, t.Key); err != nil {
		return st, err
	}
	return st, nil
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

func (s *Syncer) horizonAt(now time.Time) time.Time { return now.AddDate(0, 0, -s.o.HorizonDays) }

// AcknowledgeGaps marks a known workspace's current gaps as acknowledged.
func (s *Syncer) AcknowledgeGaps(ctx context.Context, workspace, note string) ([]storage.Interval, error) {
	if !slices.Contains(s.KnownKeys(), workspace) {
		return nil, fmt.Errorf("%q: %w", workspace, ErrUnknownWorkspace)
	}
	return s.o.Store.AcknowledgeGaps(ctx, workspace, note)
}
