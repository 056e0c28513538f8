package storage_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
)

// console builds a mirrored record with the extra fields the console filters on.
func consoleRecord(id string, at time.Time, detail, ip, object, project, serial string) storage.Activity {
	a := mirrored(id, at, detail)
	a.ActionDetail, a.Serial = detail, serial
	a.Extra = map[string]string{"ip": ip, "operate_object_key": object, "project_name": project}
	return a
}

func TestConsoleFiltersOnListCountAndExport(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		in := []storage.Activity{
			consoleRecord("1", t0, "需求: 登录页改版 #12", "10.0.0.1", "story", "Alpha", "100"),
			consoleRecord("2", t0.Add(time.Minute), "缺陷: Payment CALLBACK broken", "10.0.0.2", "bug", "Alpha", "100"),
			consoleRecord("3", t0.Add(2*time.Minute), "附件: report_100%_final.pdf", "10.0.0.1", "attachment", "Beta", "200"),
			consoleRecord("4", t0.Add(3*time.Minute), "附件: report_1000 final.pdf", "10.0.0.3", "attachment", "Beta", "200"),
			consoleRecord("5", t0.Add(4*time.Minute), `wiki: "quoted" title`, "10.0.0.1", "wiki", "Beta", "200"),
		}
		if _, err := s.UpsertMirrored(ctx, in); err != nil {
			t.Fatal(err)
		}
		cases := []struct {
			name string
			f    storage.Filter
			want []string // source ids, newest first
		}{
			{"object", storage.Filter{Object: "attachment"}, []string{"4", "3"}},
			{"ip", storage.Filter{IP: "10.0.0.1"}, []string{"5", "3", "1"}},
			{"ip and object", storage.Filter{IP: "10.0.0.1", Object: "attachment"}, []string{"3"}},
			{"q, Chinese substring", storage.Filter{Query: "登录页"}, []string{"1"}},
			{"q, case-insensitive", storage.Filter{Query: "payment callback"}, []string{"2"}},
			{"q, percent is literal", storage.Filter{Query: "100%_"}, []string{"3"}},
			{"q, underscore is literal", storage.Filter{Query: "_final"}, []string{"3"}},
			{"q, quotes", storage.Filter{Query: `"quoted"`}, []string{"5"}},
			{"q, two characters", storage.Filter{Query: "附件"}, []string{"4", "3"}},
			{"q, one character", storage.Filter{Query: "#"}, []string{"1"}},
			{"q matches nothing", storage.Filter{Query: "nothing like it"}, nil},
			{"q with other filters", storage.Filter{Query: "report", Serial: "200", Until: t0.Add(3 * time.Minute)}, []string{"3"}},
		}
		for _, c := range cases {
			list, err := s.ListActivities(ctx, c.f, 100, 0)
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			if got := sourceIDs(list); !slices.Equal(got, c.want) {
				t.Errorf("%s: list = %v, want %v", c.name, got, c.want)
			}
			n, err := s.CountActivities(ctx, c.f)
			if err != nil || n != int64(len(c.want)) {
				t.Errorf("%s: count = %d, %v; want %d", c.name, n, err, len(c.want))
			}
			if n, exact, err := s.CountActivitiesUpTo(ctx, c.f, 1); err != nil || n != min(2, int64(len(c.want))) || exact != (len(c.want) <= 1) {
				t.Errorf("%s: count up to 1 = %d (exact %v), %v; want %d", c.name, n, exact, err, min(2, len(c.want)))
			}
			var streamed []string
			if err := s.StreamExportRows(ctx, c.f, func(r *storage.ExportRow) error {
				streamed = append(streamed, string(r.SourceID))
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			slices.Reverse(streamed) // export is oldest first
			if !slices.Equal(streamed, c.want) {
				t.Errorf("%s: export = %v, want %v", c.name, streamed, c.want)
			}
		}

		// The text index follows updates and deletions (SQLite: triggers).
		in[1].ActionDetail = "缺陷: refund webhook"
		if _, err := s.UpsertMirrored(ctx, in[1:2]); err != nil {
			t.Fatal(err)
		}
		if n, _ := s.CountActivities(ctx, storage.Filter{Query: "callback"}); n != 0 {
			t.Errorf("the old text still matches after an update: %d", n)
		}
		if n, _ := s.CountActivities(ctx, storage.Filter{Query: "webhook"}); n != 1 {
			t.Errorf("the new text does not match after an update: %d", n)
		}
		list, _ := s.ListActivities(ctx, storage.Filter{Query: "登录页"}, 1, 0)
		if _, err := s.DeleteActivity(ctx, list[0].ID); err != nil {
			t.Fatal(err)
		}
		if n, _ := s.CountActivities(ctx, storage.Filter{Query: "登录页"}); n != 0 {
			t.Errorf("a deleted record still matches: %d", n)
		}
		if _, err := s.DeleteAllActivities(ctx); err != nil {
			t.Fatal(err)
		}
		if n, _ := s.CountActivities(ctx, storage.Filter{Query: "report"}); n != 0 {
			t.Errorf("records deleted by delete-all still match: %d", n)
		}
		if _, err := s.InsertActivity(ctx, storage.Activity{Platform: "x", ActionType: "y", ActionDetail: "local report", Timestamp: t0}); err != nil {
			t.Fatal(err)
		}
		if n, _ := s.CountActivities(ctx, storage.Filter{Query: "report"}); n != 1 {
			t.Errorf("a POSTed record does not match: %d", n)
		}
	})
}

func TestPagingBackAndForth(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		var in []storage.Activity
		for i := range 7 {
			// Pairs share a timestamp, so the id must break ties both ways.
			in = append(in, consoleRecord(fmt.Sprint(i), t0.Add(time.Duration(i/2)*time.Minute), "x", "", "", "", "1"))
		}
		if _, err := s.UpsertMirrored(ctx, in); err != nil {
			t.Fatal(err)
		}
		all, _ := s.ListActivities(ctx, storage.Filter{}, 100, 0)
		pos := func(a storage.Activity) *storage.Position { return &storage.Position{Timestamp: a.Timestamp, ID: a.ID} }
		var pages [][]int64
		f := storage.Filter{}
		for {
			page, err := s.ListActivities(ctx, f, 3, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) == 0 {
				break
			}
			pages = append(pages, idsOf(page))
			f.After = pos(page[len(page)-1])
		}
		if len(pages) != 3 || !slices.Equal(slices.Concat(pages...), idsOf(all)) {
			t.Fatalf("forward pages %v, want %v in threes", pages, idsOf(all))
		}
		// Back from the last page's first row: the middle page, newest first.
		last, _ := s.ListActivities(ctx, storage.Filter{After: pos(all[5])}, 3, 0)
		back, err := s.ListActivitiesBefore(ctx, storage.Filter{Before: pos(last[0])}, 3)
		if err != nil || !slices.Equal(idsOf(back), pages[1]) {
			t.Fatalf("back from %d = %v, %v; want %v", last[0].ID, idsOf(back), err, pages[1])
		}
		top, _ := s.ListActivitiesBefore(ctx, storage.Filter{Before: pos(all[1])}, 3)
		if !slices.Equal(idsOf(top), idsOf(all[:1])) {
			t.Fatalf("back from the second row = %v, want %v", idsOf(top), idsOf(all[:1]))
		}
	})
}

func TestDailyCountsInTheZone(t *testing.T) {
	shanghai, _ := time.LoadLocation("Asia/Shanghai")
	newYork, _ := time.LoadLocation("America/New_York")
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		at := func(loc *time.Location, y int, m time.Month, d, h, min int) time.Time {
			return time.Date(y, m, d, h, min, 0, 0, loc)
		}
		in := []storage.Activity{
			// 23:59 and 00:00 in Shanghai are different days, though both are 15:59/16:00 UTC the day before.
			consoleRecord("a", at(shanghai, 2026, 3, 1, 23, 59), "x", "", "story", "", "1"),
			consoleRecord("b", at(shanghai, 2026, 3, 2, 0, 0), "x", "", "story", "", "1"),
			consoleRecord("c", at(shanghai, 2026, 3, 2, 12, 0), "x", "", "bug", "", "1"),
			// Around New York's spring-forward (2026-03-08) and fall-back (2026-11-01).
			consoleRecord("d", at(newYork, 2026, 3, 7, 23, 30), "x", "", "story", "", "2"),
			consoleRecord("e", at(newYork, 2026, 3, 8, 23, 30), "x", "", "story", "", "2"),
			consoleRecord("f", at(newYork, 2026, 11, 1, 23, 30), "x", "", "story", "", "2"),
			consoleRecord("g", at(newYork, 2026, 11, 2, 0, 30), "x", "", "story", "", "2"),
		}
		if _, err := s.UpsertMirrored(ctx, in); err != nil {
			t.Fatal(err)
		}
		type dc struct {
			day string
			n   int64
		}
		got := func(f storage.Filter, loc *time.Location) []dc {
			t.Helper()
			counts, err := s.DailyCounts(ctx, f, loc)
			if err != nil {
				t.Fatal(err)
			}
			var out []dc
			for _, c := range counts {
				if c.Day.Location() != loc || c.Day.Hour() != 0 {
					t.Errorf("day %v is not a midnight in %v", c.Day, loc)
				}
				out = append(out, dc{c.Day.Format("2006-01-02"), c.Count})
			}
			return out
		}
		if g, want := got(storage.Filter{Serial: "1"}, shanghai), []dc{{"2026-03-01", 1}, {"2026-03-02", 2}}; !slices.Equal(g, want) {
			t.Errorf("Shanghai days = %v, want %v", g, want)
		}
		if g, want := got(storage.Filter{Serial: "1"}, time.UTC), []dc{{"2026-03-01", 2}, {"2026-03-02", 1}}; !slices.Equal(g, want) {
			t.Errorf("UTC days = %v, want %v", g, want)
		}
		if g, want := got(storage.Filter{Serial: "2"}, newYork), []dc{{"2026-03-07", 1}, {"2026-03-08", 1}, {"2026-11-01", 1}, {"2026-11-02", 1}}; !slices.Equal(g, want) {
			t.Errorf("New York days across daylight saving = %v, want %v", g, want)
		}
		bounded := storage.Filter{Object: "story", Since: at(shanghai, 2026, 3, 2, 0, 0), Until: at(shanghai, 2026, 4, 1, 0, 0)}
		if g, want := got(bounded, shanghai), []dc{{"2026-03-02", 1}, {"2026-03-08", 1}, {"2026-03-09", 1}}; !slices.Equal(g, want) {
			t.Errorf("bounded, filtered days = %v, want %v", g, want)
		}
		if g := got(storage.Filter{Serial: "nope"}, shanghai); len(g) != 0 {
			t.Errorf("no rows gave days %v", g)
		}
		oldest, newest, ok, err := s.ActivitySpan(ctx, storage.Filter{Serial: "2"})
		if err != nil || !ok || !oldest.Equal(in[3].Timestamp) || !newest.Equal(in[6].Timestamp) {
			t.Errorf("span = %v, %v, %v, %v", oldest, newest, ok, err)
		}
	})
}

func TestProjectsListsSerialsWithNewestNames(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		if got, err := s.Projects(ctx); err != nil || len(got) != 0 {
			t.Fatalf("projects of an empty archive = %v, %v", got, err)
		}
		in := []storage.Activity{
			consoleRecord("1", t0, "x", "", "", "Old name", "100"),
			consoleRecord("2", t0.Add(time.Hour), "x", "", "", "New name", "100"),
			consoleRecord("3", t0, "x", "", "", "Beta", "200"),
			consoleRecord("4", t0, "x", "", "", "", "2001"),
		}
		if _, err := s.UpsertMirrored(ctx, in); err != nil {
			t.Fatal(err)
		}
		got, err := s.Projects(ctx)
		want := []storage.Project{{Serial: "100", Name: "New name"}, {Serial: "200", Name: "Beta"}, {Serial: "2001"}}
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("projects = %v, %v; want %v", got, err, want)
		}
	})
}

func sourceIDs(as []storage.Activity) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.SourceID)
	}
	return out
}

// A page of a text search is the same whichever way it is found: on SQLite
// a common substring's page comes from the rows nearest the page's start, a
// rare one's from the FTS5 index.
func TestTextSearchPagesAgreeWithAScan(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		var in []storage.Activity
		for i := range 300 {
			title := fmt.Sprintf("plain %d", i)
			switch {
			case i%3 == 0:
				title = fmt.Sprintf("Common Word %d", i)
			case i == 7 || i == 250:
				title = fmt.Sprintf("rare ZOË %d", i)
			}
			in = append(in, consoleRecord(fmt.Sprint(i), t0.Add(time.Duration(i/2)*time.Minute), "需求: "+title, "", "", "", "1"))
		}
		if _, err := s.UpsertMirrored(ctx, in); err != nil {
			t.Fatal(err)
		}
		all, _ := s.ListActivities(ctx, storage.Filter{}, 1000, 0)
		match := func(sub string) []int64 {
			var ids []int64
			for _, a := range all {
				if strings.Contains(strings.ToLower(a.ActionDetail), strings.ToLower(sub)) {
					ids = append(ids, a.ID)
				}
			}
			return ids
		}
		for _, q := range []string{"common word", "zoë", "ZOË", "rare", "plain 1"} {
			want := match(q)
			var got []int64
			f := storage.Filter{Query: q}
			for {
				page, err := s.ListActivities(ctx, f, 7, 0)
				if err != nil {
					t.Fatal(err)
				}
				if len(page) == 0 {
					break
				}
				got = append(got, idsOf(page)...)
				f.After = &storage.Position{Timestamp: page[len(page)-1].Timestamp, ID: page[len(page)-1].ID}
			}
			if !slices.Equal(got, want) {
				t.Errorf("q=%q paged by 7: %d rows, want %d", q, len(got), len(want))
			}
			if len(want) > 10 {
				second, _ := s.ListActivities(ctx, storage.Filter{Query: q}, 5, 5)
				var eleventh storage.Activity
				for _, a := range all {
					if a.ID == want[10] {
						eleventh = a
					}
				}
				back, _ := s.ListActivitiesBefore(ctx, storage.Filter{Query: q, Before: &storage.Position{Timestamp: eleventh.Timestamp, ID: eleventh.ID}}, 5)
				if !slices.Equal(idsOf(second), want[5:10]) || !slices.Equal(idsOf(back), want[5:10]) {
					t.Errorf("q=%q offset 5 = %v, back from the 11th = %v; want %v", q, idsOf(second), idsOf(back), want[5:10])
				}
			}
		}
	})
}

// Per-day counts agree whether the daily counts answer them (whole days,
// filters they keep, their zone) or a scan does (partial days, other
// filters, another zone).
func TestDailyCountsFromTheAggregateAgreeWithAScan(t *testing.T) {
	shanghai, _ := time.LoadLocation("Asia/Shanghai")
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		s.SetCountsZone(shanghai) // before any write, as serve does
		ctx := context.Background()
		start := time.Date(2026, 3, 1, 0, 0, 0, 0, shanghai)
		var in []storage.Activity
		for i := range 200 {
			a := consoleRecord(fmt.Sprint(i), start.Add(time.Duration(i*53)*time.Minute), "x", "", []string{"story", "bug"}[i%2], "", fmt.Sprint(i%3))
			a.ActionType = []string{"add", "download"}[i%2]
			in = append(in, a)
		}
		if _, err := s.UpsertMirrored(ctx, in); err != nil {
			t.Fatal(err)
		}
		want := func(f storage.Filter, loc *time.Location) map[string]int64 {
			out := map[string]int64{}
			for _, a := range in {
				if (!f.Since.IsZero() && a.Timestamp.Before(f.Since)) || (!f.Until.IsZero() && !a.Timestamp.Before(f.Until)) ||
					(f.Serial != "" && a.Serial != f.Serial) || (f.ActionType != "" && a.ActionType != f.ActionType) ||
					(f.Object != "" && a.ExtraFields()["operate_object_key"] != f.Object) {
					continue
				}
				out[a.Timestamp.In(loc).Format("2006-01-02")]++
			}
			return out
		}
		since, until := start.Add(30*time.Hour+7*time.Minute), start.Add(5*24*time.Hour+13*time.Hour)
		for _, c := range []struct {
			name string
			f    storage.Filter
			loc  *time.Location
		}{
			{"aggregate, partial edge days", storage.Filter{Since: since, Until: until}, shanghai},
			{"aggregate by serial and action", storage.Filter{Serial: "1", ActionType: "download", Since: since, Until: until}, shanghai},
			{"aggregate, whole days", storage.Filter{Since: start.AddDate(0, 0, 1), Until: start.AddDate(0, 0, 4)}, shanghai},
			{"aggregate, less than a day", storage.Filter{Since: since, Until: since.Add(5 * time.Hour)}, shanghai},
			{"scan: object", storage.Filter{Object: "bug", Since: since, Until: until}, shanghai},
			{"scan: another zone", storage.Filter{Since: since, Until: until}, time.UTC},
			{"aggregate, unbounded", storage.Filter{}, shanghai},
		} {
			days, err := s.DailyCounts(ctx, c.f, c.loc)
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			got := map[string]int64{}
			for i, d := range days {
				got[d.Day.Format("2006-01-02")] += d.Count
				if i > 0 && !days[i-1].Day.Before(d.Day) {
					t.Errorf("%s: days out of order or repeated: %v then %v", c.name, days[i-1].Day, d.Day)
				}
			}
			if w := want(c.f, c.loc); !maps.Equal(got, w) {
				t.Errorf("%s:\n got %v\nwant %v", c.name, got, w)
			}
		}
	})
}
