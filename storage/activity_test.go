package storage_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/migrations"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
)

var t0 = time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)

func mirrored(id string, at time.Time, title string) storage.Activity {
	return storage.Activity{
		Platform: "tapd", Serial: "10074561", ActionType: "add", ActionDetail: "迭代: " + title,
		Username: "啊啊啊", Timestamp: at, Source: storage.SourceTAPD, SourceID: id,
		WorkspaceID: "10074561", Extra: map[string]string{"ip": "1.1.1.1", "title": title},
	}
}

func TestInsertListCountOrder(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		// Same timestamp for two rows: id breaks the tie, newest id first.
		in := []storage.Activity{
			{Platform: "tiktok", Serial: "A", ActionType: "post", Username: "u1", Timestamp: t0},
			{Platform: "tiktok", Serial: "B", ActionType: "follow", Username: "u2", Timestamp: t0.Add(time.Hour)},
			{Platform: "instagram", Serial: "A", ActionType: "post", Username: "u1", Timestamp: t0},
		}
		var ids []int64
		for _, a := range in {
			id, err := s.InsertActivity(ctx, a)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		got, err := s.ListActivities(ctx, storage.Filter{}, 10, 0)
		if err != nil {
			t.Fatal(err)
		}
		want := []int64{ids[1], ids[2], ids[0]}
		if len(got) != 3 || got[0].ID != want[0] || got[1].ID != want[1] || got[2].ID != want[2] {
			t.Fatalf("order = %v, want ids %v", idsOf(got), want)
		}
		if !got[0].Timestamp.Equal(t0.Add(time.Hour)) || got[0].Source != storage.SourceLocal {
			t.Fatalf("round trip lost data: %+v", got[0])
		}
		cases := []struct {
			f    storage.Filter
			want int64
		}{
			{storage.Filter{Platform: "tiktok"}, 2},
			{storage.Filter{Serial: "A"}, 2},
			{storage.Filter{ActionType: "follow"}, 1},
			{storage.Filter{Username: "u1", Platform: "instagram"}, 1},
			{storage.Filter{Since: t0.Add(time.Minute)}, 1},
			{storage.Filter{Until: t0.Add(time.Hour)}, 2},
			{storage.Filter{Source: storage.SourceTAPD}, 0},
		}
		for _, c := range cases {
			n, err := s.CountActivities(ctx, c.f)
			if err != nil || n != c.want {
				t.Errorf("count %+v = %d, %v; want %d", c.f, n, err, c.want)
			}
			list, _ := s.ListActivities(ctx, c.f, 100, 0)
			if int64(len(list)) != c.want {
				t.Errorf("list %+v has %d rows; want %d", c.f, len(list), c.want)
			}
		}
		page, _ := s.ListActivities(ctx, storage.Filter{}, 1, 1)
		if len(page) != 1 || page[0].ID != want[1] {
			t.Fatalf("limit 1 offset 1 = %v, want [%d]", idsOf(page), want[1])
		}
	})
}

func TestUpsertMirroredIsIdempotentAndReports(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		// 1200 records: more than one chunk, so chunking is exercised.
		var batch []storage.Activity
		for i := range 1200 {
			batch = append(batch, mirrored(fmt.Sprint(7480000+i), t0.Add(time.Duration(i)*time.Second), fmt.Sprintf("t%d", i)))
		}
		r, err := s.UpsertMirrored(ctx, batch)
		if err != nil {
			t.Fatal(err)
		}
		if r != (storage.UpsertResult{Inserted: 1200}) {
			t.Fatalf("first upsert = %+v", r)
		}
		batch[5].ActionDetail = "迭代: renamed"
		batch[6].Extra = map[string]string{"ip": "2.2.2.2"}
		r, err = s.UpsertMirrored(ctx, append(batch, batch[0]))
		if err != nil {
			t.Fatal(err)
		}
		if r != (storage.UpsertResult{Updated: 2, Unchanged: 1199}) {
			t.Fatalf("second upsert = %+v", r)
		}
		n, _ := s.CountActivities(ctx, storage.Filter{Source: storage.SourceTAPD})
		if n != 1200 {
			t.Fatalf("count = %d after re-upsert, want 1200", n)
		}
		// New and known records mixed: PostgreSQL's COPY fast path must fall back, not fail.
		mixed := append([]storage.Activity{mirrored("1", t0, "new-a"), mirrored("2", t0, "new-b")}, batch[:3]...)
		if r, err = s.UpsertMirrored(ctx, mixed); err != nil || r != (storage.UpsertResult{Inserted: 2, Unchanged: 3}) {
			t.Fatalf("mixed upsert = %+v, %v", r, err)
		}
		list, _ := s.ListActivities(ctx, storage.Filter{Until: t0.Add(6 * time.Second), Since: t0.Add(5 * time.Second)}, 10, 0)
		if len(list) != 1 || list[0].ActionDetail != "迭代: renamed" || list[0].ExtraFields()["title"] != "t5" {
			t.Fatalf("updated row = %+v", list)
		}
	})
}

func TestDeleteLeavesTombstone(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		if _, err := s.UpsertMirrored(ctx, []storage.Activity{mirrored("1", t0, "a"), mirrored("2", t0, "b")}); err != nil {
			t.Fatal(err)
		}
		list, _ := s.ListActivities(ctx, storage.Filter{}, 10, 0)
		var id1 int64
		for _, a := range list {
			if a.SourceID == "1" {
				id1 = a.ID
			}
		}
		del, err := s.DeleteActivity(ctx, id1)
		if err != nil || del.SourceID != "1" {
			t.Fatalf("delete = %+v, %v", del, err)
		}
		if _, err := s.DeleteActivity(ctx, id1); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("second delete err = %v, want ErrNotFound", err)
		}
		r, err := s.UpsertMirrored(ctx, []storage.Activity{mirrored("1", t0, "a"), mirrored("2", t0, "b")})
		if err != nil {
			t.Fatal(err)
		}
		if r != (storage.UpsertResult{Unchanged: 1, Suppressed: 1}) {
			t.Fatalf("resync after delete = %+v", r)
		}
		if _, err := s.InsertActivity(ctx, storage.Activity{Platform: "x", ActionType: "y", Timestamp: t0}); err != nil {
			t.Fatal(err)
		}
		n, err := s.DeleteAllActivities(ctx)
		if err != nil || n != 2 {
			t.Fatalf("delete all = %d, %v; want 2", n, err)
		}
		r, _ = s.UpsertMirrored(ctx, []storage.Activity{mirrored("2", t0, "b")})
		if r.Suppressed != 1 {
			t.Fatalf("record deleted by delete-all came back: %+v", r)
		}
		if tomb, _ := s.CountTombstones(ctx); tomb != 2 {
			t.Fatalf("tombstones = %d, want 2", tomb)
		}
	})
}

func TestMigrationsAreIdempotentAndSerialized(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, u string) {
		ctx := context.Background()
		all, err := migrations.For(map[bool]string{true: "postgres", false: "sqlite"}[u[:8] == "postgres"])
		if err != nil || len(all) == 0 {
			t.Fatalf("migrations.For = %v, %v", all, err)
		}
		// Several processes' worth of stores migrating at once: each file is applied exactly once.
		const n = 4
		applied := make([][]string, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s, err := storage.Open(ctx, u)
				if err != nil {
					t.Error(err)
					return
				}
				defer s.Close()
				if applied[i], err = s.Migrate(ctx); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		total := 0
		for _, a := range applied {
			total += len(a)
		}
		if total != len(all) {
			t.Fatalf("applied %d migrations across %d processes, want %d: %v", total, n, len(all), applied)
		}
		s := storagetest.Open(t, u)
		if err := s.Ready(ctx); err != nil {
			t.Fatalf("ready after migrate: %v", err)
		}
	})
}

func idsOf(as []storage.Activity) []int64 {
	var out []int64
	for _, a := range as {
		out = append(out, a.ID)
	}
	return out
}

func TestGapsAreHolesBetweenOriginAndCheckpoint(t *testing.T) {
	h := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Hour) }
	st := storage.SyncState{Origin: h(0), HighWater: h(10),
		Coverage: []storage.Interval{{Start: h(1), End: h(3)}, {Start: h(5), End: h(8)}}}
	got := st.Gaps()
	want := []storage.Interval{{Start: h(0), End: h(1)}, {Start: h(3), End: h(5)}, {Start: h(8), End: h(10)}}
	if len(got) != len(want) {
		t.Fatalf("gaps = %v", got)
	}
	for i := range want {
		if !got[i].Start.Equal(want[i].Start) || !got[i].End.Equal(want[i].End) {
			t.Fatalf("gap %d = %v, want %v", i, got[i], want[i])
		}
	}
	if gaps := (storage.SyncState{}).Gaps(); len(gaps) != 0 {
		t.Fatalf("never-synced workspace has gaps %v", gaps)
	}
}
