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
