package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
	"github.com/tapd-mirror/tapd-mirror/tapd/tapdtest"
)

// TestMaintenanceRebuildsCountsEditedByHand: counts tables edited behind the
// service's back answer wrong until `maintenance rebuild-counts` recomputes
// them from activity_log.
func TestMaintenanceRebuildsCountsEditedByHand(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		ctx := context.Background()
		f := tapdtest.New(tapdtest.Options{Seed: 3})
		defer f.Close()
		env := fakeEnv(f, dbURL, "projects:2001")
		env["TAPD_MIRROR_TIMEZONE"] = "UTC" // the zone of the store opened below
		st := storagetest.Open(t, dbURL)
		at := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)
		var batch []storage.Activity
		for i := range 300 {
			batch = append(batch, storage.Activity{Platform: "tapd", Serial: "2001", ActionType: "add", ActionDetail: "需求: x",
				Username: "alice", Timestamp: at.Add(time.Duration(i) * 37 * time.Minute), Source: storage.SourceTAPD,
				SourceID: fmt.Sprint(i), WorkspaceID: "2001"})
		}
		if _, err := st.UpsertMirrored(ctx, batch); err != nil {
			t.Fatal(err)
		}
		for _, q := range []string{`UPDATE activity_daily_total SET n = n + 5`, `UPDATE activity_daily SET n = n + 5`, `DELETE FROM activity_hourly`} {
			if _, err := st.DB().ExecContext(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		filters := []storage.Filter{{}, {Serial: "2001"}, {Since: at.Add(90 * time.Minute), Until: at.Add(50 * time.Hour)}}
		exact := func() bool {
			for _, fl := range filters {
				fast, err := st.CountActivities(ctx, fl)
				if err != nil {
					t.Fatal(err)
				}
				slow, err := st.CountByScan(ctx, fl)
				if err != nil {
					t.Fatal(err)
				}
				if fast != slow {
					return false
				}
			}
			return true
		}
		if exact() {
			t.Fatal("counts edited by hand still answered exactly: the test edits nothing the counts read")
		}
		out, stderr, err := run(t, env, "maintenance", "rebuild-counts")
		if err != nil || !strings.Contains(out, "counts rebuilt") {
			t.Fatalf("rebuild-counts: %v\n%s%s", err, out, stderr)
		}
		if !exact() {
			t.Fatal("counts differ from COUNT(*) after rebuild-counts")
		}
		if _, _, err := run(t, env, "maintenance", "vacuum"); !errors.As(err, &usageError{}) {
			t.Fatalf("an unknown maintenance subcommand: %v", err)
		}
	})
}
