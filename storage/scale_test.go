package storage_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
)

func TestChangedRecordKeepsItsEarlierVersion(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		a := mirrored("9", t0, "old title")
		if _, err := s.UpsertMirrored(ctx, []storage.Activity{a}); err != nil {
			t.Fatal(err)
		}
		a.ActionDetail, a.Extra = "迭代: new title", map[string]string{"ip": "1.1.1.1", "title": "new title"}
		r, err := s.UpsertReread(ctx, []storage.Activity{a})
		if err != nil || r != (storage.UpsertResult{Updated: 1}) {
			t.Fatalf("changed record: %+v, %v", r, err)
		}
		var previous string
		if err := s.DB().GetContext(ctx, &previous, `SELECT previous FROM activity_history WHERE source_id = '9'`); err != nil {
			t.Fatalf("no history row: %v", err)
		}
		var old struct {
			ActionDetail string            `json:"action_detail"`
			Extra        map[string]string `json:"extra"`
		}
		if err := json.Unmarshal([]byte(previous), &old); err != nil || old.ActionDetail != "迭代: old title" || old.Extra["title"] != "old title" {
			t.Fatalf("history keeps %s (%v)", previous, err)
		}
		got, _ := s.ListActivities(ctx, storage.Filter{Source: storage.SourceTAPD}, 10, 0)
		if got[0].ActionDetail != "迭代: new title" {
			t.Fatalf("stored %q", got[0].ActionDetail)
		}
	})
}

func TestMembershipCountsEveryTargetThatReportedARecord(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		viaProject := mirrored("5", t0, "x")
		viaCompany := viaProject
		viaCompany.WorkspaceID = "company-wide"
		if _, err := s.UpsertMirrored(ctx, []storage.Activity{viaProject, mirrored("6", t0.Add(time.Hour), "y")}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.UpsertReread(ctx, []storage.Activity{viaCompany}); err != nil {
			t.Fatal(err)
		}
		counts, err := s.ReportedCounts(ctx)
		if err != nil || counts["10074561"] != 2 || counts["company-wide"] != 1 {
			t.Fatalf("reported counts %v, %v", counts, err)
		}
		if n, _ := s.CountReported(ctx, "10074561", t0, t0.Add(time.Minute)); n != 1 {
			t.Fatalf("reported in the first minute: %d", n)
		}
		if n, _ := s.CountActivities(ctx, storage.Filter{}); n != 2 {
			t.Fatalf("%d rows for 2 records", n)
		}
		// A new record's membership is its row: only the second target's is a row of its own.
		var explicit int
		if err := s.DB().GetContext(ctx, &explicit, `SELECT COUNT(*) FROM activity_target`); err != nil || explicit != 1 {
			t.Fatalf("%d membership rows, %v", explicit, err)
		}
		// Deleted, the record stays reported by both targets (TAPD did report it).
		if _, err := s.DeleteActivity(ctx, idBySourceID(t, s, "5")); err != nil {
			t.Fatal(err)
		}
		counts, _ = s.ReportedCounts(ctx)
		if counts["10074561"] != 2 || counts["company-wide"] != 1 {
			t.Fatalf("reported counts after a delete %v", counts)
		}
		oldest, newest, err := s.WorkspaceSpan(ctx, "10074561")
		if err != nil || !oldest.Equal(t0) || !newest.Equal(t0.Add(time.Hour)) {
			t.Fatalf("span %v–%v, %v", oldest, newest, err)
		}
		// Reported again after the delete (tombstoned): counted once.
		if _, err := s.UpsertReread(ctx, []storage.Activity{viaProject, viaCompany}); err != nil {
			t.Fatal(err)
		}
		if n, _ := s.CountReported(ctx, "10074561", t0, t0.Add(time.Minute)); n != 1 {
			t.Fatalf("reported in the first minute after the delete: %d", n)
		}
		if n, _ := s.CountReported(ctx, "company-wide", time.Time{}, time.Time{}); n != 1 {
			t.Fatalf("reported by the company stream after the delete: %d", n)
		}
	})
}

func TestDeleteAllWorksInChunksAndTombstonesEverything(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		var batch []storage.Activity
		for i := range 12_345 { // two full chunks and a part
			batch = append(batch, mirrored(fmt.Sprint(i), t0.Add(time.Duration(i)*time.Second), "t"))
		}
		if _, err := s.UpsertMirrored(ctx, batch); err != nil {
			t.Fatal(err)
		}
		if _, err := s.InsertActivity(ctx, storage.Activity{Platform: "x", ActionType: "y", Timestamp: t0}); err != nil {
			t.Fatal(err)
		}
		n, err := s.DeleteAllActivities(ctx)
		if err != nil || n != 12_346 {
			t.Fatalf("deleted %d, %v", n, err)
		}
		if left, _ := s.CountActivities(ctx, storage.Filter{}); left != 0 {
			t.Fatalf("%d rows left", left)
		}
		if tomb, _ := s.CountTombstones(ctx); tomb != 12_345 {
			t.Fatalf("%d tombstones", tomb)
		}
	})
}

func TestRunHistoryIsPrunedAndLatestRunsAreOneQuery(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		old := &storage.SyncRun{Workspace: "1", Trigger: "cli", Outcome: storage.OutcomeRunning, StartedAt: time.Now().Add(-100 * 24 * time.Hour)}
		recent := &storage.SyncRun{Workspace: "1", Trigger: "cli", Outcome: storage.OutcomeRunning, StartedAt: time.Now()}
		for _, r := range []*storage.SyncRun{old, recent} {
			if err := s.CreateRun(ctx, r); err != nil {
				t.Fatal(err)
			}
			r.Outcome, r.FinishedAt = storage.OutcomeSuccess, r.StartedAt.Add(time.Minute)
			if err := s.UpdateRun(ctx, *r); err != nil {
				t.Fatal(err)
			}
		}
		if n, err := s.PruneRuns(ctx, time.Now().Add(-90*24*time.Hour)); err != nil || n != 1 {
			t.Fatalf("pruned %d, %v", n, err)
		}
		latest, err := s.LatestRuns(ctx, storage.OutcomeSuccess, storage.OutcomePartial)
		if err != nil || latest["1"].ID != recent.ID {
			t.Fatalf("latest %+v, %v", latest, err)
		}
	})
}

// TestUpgradeDropsImpliedMembership: before 0009 every record had its own
// membership row; the upgrade drops those its row implies, and counts stay.
func TestUpgradeDropsImpliedMembership(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		viaCompany := mirrored("5", t0, "x")
		viaCompany.WorkspaceID = "company-wide"
		if _, err := s.UpsertMirrored(ctx, []storage.Activity{mirrored("5", t0, "x"), mirrored("6", t0.Add(time.Hour), "y")}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.UpsertReread(ctx, []storage.Activity{viaCompany}); err != nil {
			t.Fatal(err)
		}
		// As the earlier version wrote it: a row per record and target.
		if _, err := s.DB().ExecContext(ctx, s.DB().Rebind(`INSERT INTO activity_target (target, source_id, timestamp)
			SELECT workspace_id, source_id, timestamp FROM activity_log`)); err != nil {
			t.Fatal(err)
		}
		exec(t, s, `DELETE FROM schema_migrations WHERE version = '0009_membership_implied'`)
		if _, err := s.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		counts, err := s.ReportedCounts(ctx)
		if err != nil || len(counts) != 2 || counts["10074561"] != 2 || counts["company-wide"] != 1 {
			t.Fatalf("reported counts after the upgrade %v, %v", counts, err)
		}
	})
}
