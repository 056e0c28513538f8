package storage_test

import (
	"context"
	"strings"
	"testing"

	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
)

// TestReadsGoToTheReplica points the read side at a second database (a
// stand-in for a streaming replica) and checks which one each call reads.
func TestReadsGoToTheReplica(t *testing.T) {
	primaryURL, replicaURL := storagetest.URL(t, "postgres"), storagetest.URL(t, "postgres")
	ctx := context.Background()
	replica := storagetest.Open(t, replicaURL) // migrated; it holds one record of its own
	if _, err := replica.UpsertMirrored(ctx, []storage.Activity{mirrored("r1", t0, "on the replica")}); err != nil {
		t.Fatal(err)
	}
	st := storagetest.Open(t, primaryURL)
	if err := st.UseReplica(ctx, replicaURL); err != nil {
		t.Fatal(err)
	}
	if _, err := st.UpsertMirrored(ctx, []storage.Activity{mirrored("p1", t0, "a"), mirrored("p2", t0, "b")}); err != nil {
		t.Fatal(err)
	}
	// Reads: the replica's one record.
	list, _ := st.ListActivities(ctx, storage.Filter{}, 10, 0)
	n, _ := st.CountActivities(ctx, storage.Filter{})
	exported := 0
	st.StreamExportRows(ctx, storage.Filter{}, func(*storage.ExportRow) error { exported++; return nil }) //nolint:errcheck // counted
	if len(list) != 1 || list[0].SourceID != "r1" || n != 1 || exported != 1 {
		t.Fatalf("reads did not go to the replica: list %d, count %d, export %d", len(list), n, exported)
	}
	// Writes and the reads that decide them: the primary.
	if state, err := st.Leases(ctx); err != nil || len(state) != 0 {
		t.Fatal(state, err)
	}
	direct := storagetest.Open(t, primaryURL)
	if n, _ := direct.CountActivities(ctx, storage.Filter{}); n != 2 {
		t.Fatalf("the primary holds %d records, want the 2 written", n)
	}
	if lag, err := st.ReplicaLag(ctx); err != nil || lag != 0 {
		t.Fatalf("lag of a database that replays nothing: %v, %v", lag, err)
	}
	sqlite := storagetest.Open(t, storagetest.URL(t, "sqlite"))
	if err := sqlite.UseReplica(ctx, replicaURL); err == nil || !strings.Contains(err.Error(), "PostgreSQL") {
		t.Fatalf("SQLite with a replica: %v", err)
	}
}
