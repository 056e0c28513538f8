package alert_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/alert"
	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
)

var shanghai = mustZone("Asia/Shanghai")

func mustZone(name string) *time.Location {
	loc, err := time.LoadLocation(name)
	if err != nil {
		panic(err)
	}
	return loc
}

// now is the tests' clock: a Tuesday, 10:00 in Shanghai.
var now = time.Date(2026, 12, 1, 10, 0, 0, 0, shanghai)

var seq atomic.Int64

// rec is a mirrored record of user at t with ip.
func rec(user, action, ip string, t time.Time) storage.Activity {
	return storage.Activity{Platform: "tapd", Serial: "20001", ActionType: action, ActionDetail: "附件: a.pdf",
		Username: user, Timestamp: t.UTC(), Source: storage.SourceTAPD, SourceID: fmt.Sprint(seq.Add(1)), WorkspaceID: "20001",
		Extra: map[string]string{"ip": ip, "operate_object": "附件", "operate_object_key": "attachment", "title": "a.pdf"}}
}

func store(t *testing.T, s *storage.Store, recs ...storage.Activity) {
	t.Helper()
	if _, err := s.UpsertMirrored(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
}

func engine(t *testing.T, s *storage.Store, rules ...config.AlertRule) *alert.Engine {
	t.Helper()
	e, err := alert.New(alert.Options{Store: s, Rules: rules, Location: shanghai, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func catchUp(t *testing.T, e *alert.Engine) {
	t.Helper()
	if err := e.CatchUp(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func firings(t *testing.T, s *storage.Store) []storage.AlertFiring {
	t.Helper()
	out, err := s.ListAlertFirings(context.Background(), storage.AlertQuery{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

var bulk = config.AlertRule{Name: "bulk", Match: config.AlertMatch{ActionType: "download"}, Notify: []string{"ops"},
	Threshold: &config.AlertThreshold{Count: 5, Window: config.Duration{Duration: time.Hour}}}

// TestThresholdWindowSurvivesRestart: the sliding window's matches are
// kept across a restart (persisted state), a firing names its window, its
// count and its first and last records, and repeats within suppress do
// not fire again; another user's matches do not count.
func TestThresholdWindowSurvivesRestart(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		base := now.Add(-30 * time.Minute)
		var batch []storage.Activity
		for i := range 4 {
			batch = append(batch, rec("alice", "download", "10.0.0.1", base.Add(time.Duration(i)*time.Minute)))
			batch = append(batch, rec("bob", "download", "10.0.0.2", base.Add(time.Duration(i)*time.Minute)))
		}
		batch = append(batch, rec("alice", "upload", "10.0.0.1", base)) // not a match
		store(t, s, batch...)
		catchUp(t, engine(t, s, bulk))
		if got := firings(t, s); len(got) != 0 {
			t.Fatalf("4 matches of 5 fired: %+v", got)
		}
		store(t, s, rec("alice", "download", "10.0.0.1", base.Add(10*time.Minute)))
		e := engine(t, s, bulk) // a restart: the window comes from the store
		catchUp(t, e)
		got := firings(t, s)
		if len(got) != 1 {
			t.Fatalf("firings %+v, want one for alice", got)
		}
		f := got[0]
		if f.Rule != "bulk" || f.Key != "alice" || f.Count != 5 || f.Condition != "threshold" ||
			!f.WindowStart.Equal(base) || !f.WindowEnd.Equal(base.Add(10*time.Minute)) || f.FirstRecordID >= f.LastRecordID {
			t.Fatalf("firing %+v", f)
		}
		if len(f.Deliveries) != 1 || f.Deliveries[0].Notifier != "ops" || f.Deliveries[0].Status != storage.DeliveryPending {
			t.Fatalf("deliveries %+v", f.Deliveries)
		}
		if f.Search != "action=download&user=alice" {
			t.Fatalf("search %q", f.Search)
		}
		// Suppressed: the same key within an hour of record time.
		store(t, s, rec("alice", "download", "10.0.0.1", base.Add(11*time.Minute)), rec("alice", "download", "10.0.0.1", base.Add(12*time.Minute)))
		catchUp(t, e)
		if got := firings(t, s); len(got) != 1 {
			t.Fatalf("suppressed repeat fired: %+v", got)
		}
		cursors, err := s.AlertCursors(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		head, _ := s.Head(context.Background())
		if cursors["bulk"] != head.Size {
			t.Fatalf("cursor %d, log size %d", cursors["bulk"], head.Size)
		}
		// Evaluating again from a fresh engine adds nothing: the cursor moved with the firing.
		catchUp(t, engine(t, s, bulk))
		if got := firings(t, s); len(got) != 1 {
			t.Fatalf("a restart fired again: %+v", got)
		}
	})
}

// TestBackfillIsLearnedNotPaged: records older than ignore_older_than feed
// the state (a first_seen rule learns the user's IPs) but never fire; a
// rule added later reads the log from its start.
func TestBackfillIsLearnedNotPaged(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		newIP := config.AlertRule{Name: "new-ip", FirstSeen: "ip", Notify: []string{"ops"}}
		old := now.Add(-72 * time.Hour)
		var batch []storage.Activity
		for i := range 200 { // a bulk download three days ago
			batch = append(batch, rec("alice", "download", "10.0.0.1", old.Add(time.Duration(i)*time.Second)))
		}
		store(t, s, batch...)
		catchUp(t, engine(t, s, bulk))
		if got := firings(t, s); len(got) != 0 {
			t.Fatalf("the backfill paged: %d firings", len(got))
		}
		store(t, s, rec("alice", "view", "10.0.0.1", now.Add(-time.Minute)), // known IP
			rec("alice", "view", "10.0.0.9", now.Add(-time.Minute)), // new IP
			rec("bob", "view", "10.0.0.1", now.Add(-time.Minute)),   // bob's first from this IP
			rec("bob", "view", "", now.Add(-time.Minute)))           // no IP: not a key
		catchUp(t, engine(t, s, bulk, newIP)) // new-ip is new: it reads from index 0
		got := firings(t, s)
		keys := map[string]bool{}
		for _, f := range got {
			if f.Rule != "new-ip" || f.Condition != "first_seen" || f.Count != 1 || f.FirstRecordID != f.LastRecordID {
				t.Fatalf("firing %+v", f)
			}
			keys[f.Key] = true
		}
		if len(got) != 2 || !keys["alice|10.0.0.9"] || !keys["bob|10.0.0.1"] {
			t.Fatalf("new-ip fired for %v, want alice|10.0.0.9 and bob|10.0.0.1", keys)
		}
	})
}

// TestEveryRuleOnLocalRecordsOutsideHours: a local record (POSTed) is
// evaluated like a mirrored one; the working-hours match reads the
// record's time in the alerts zone, weekends included.
func TestEveryRuleOnLocalRecordsOutsideHours(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		afterHours := config.AlertRule{Name: "after-hours", Notify: []string{"ops"}, IgnoreOlderThan: &config.Duration{}, Match: config.AlertMatch{Source: "local",
			When: &config.AlertWhen{Weekdays: []string{"mon", "tue", "wed", "thu", "fri"}, Hours: "08:00-20:00", Outside: true}}}
		ctx := context.Background()
		for _, a := range []struct {
			user string
			at   time.Time
		}{
			{"day", time.Date(2026, 12, 1, 9, 30, 0, 0, shanghai)},     // Tuesday 09:30: working hours
			{"night", time.Date(2026, 12, 1, 3, 0, 0, 0, shanghai)},    // Tuesday 03:00 (Monday 19:00 UTC)
			{"weekend", time.Date(2026, 11, 29, 9, 0, 0, 0, shanghai)}, // Sunday
		} {
			if _, err := s.InsertActivity(ctx, storage.Activity{Platform: "web", Serial: "local", ActionType: "login",
				Username: a.user, Timestamp: a.at.UTC(), Source: storage.SourceLocal}); err != nil {
				t.Fatal(err)
			}
		}
		store(t, s, rec("tapd-night", "view", "10.0.0.1", time.Date(2026, 12, 1, 2, 0, 0, 0, shanghai))) // source tapd: no match
		catchUp(t, engine(t, s, afterHours))
		keys := map[string]bool{}
		for _, f := range firings(t, s) {
			keys[f.Key] = true
		}
		if len(keys) != 2 || !keys["night"] || !keys["weekend"] {
			t.Fatalf("after-hours fired for %v, want night and weekend", keys)
		}
	})
}

// TestNewRuleDoesNotHoldTheOthers: while a rule added later reads the
// history, the rules already caught up keep firing on new records.
func TestNewRuleDoesNotHoldTheOthers(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		every := config.AlertRule{Name: "every-delete", Match: config.AlertMatch{ActionType: "delete"}, Notify: []string{"ops"}}
		var batch []storage.Activity
		for i := range 500 {
			batch = append(batch, rec(fmt.Sprintf("u%d", i), "view", "10.0.0.1", now.Add(-48*time.Hour)))
		}
		store(t, s, batch...)
		opts := alert.Options{Store: s, Location: shanghai, Now: func() time.Time { return now }, BatchSize: 50}
		opts.Rules = []config.AlertRule{every}
		e, err := alert.New(opts)
		if err != nil {
			t.Fatal(err)
		}
		catchUp(t, e)
		opts.Rules = []config.AlertRule{every, {Name: "new-ip", FirstSeen: "ip", Notify: []string{"ops"}}}
		if e, err = alert.New(opts); err != nil { // a restart with a rule added
			t.Fatal(err)
		}
		store(t, s, rec("mallory", "delete", "10.0.0.1", now.Add(-time.Minute)))
		ctx := context.Background()
		for range 2 { // the new rule's step, then the caught-up rule's
			if _, err := e.Step(ctx); err != nil {
				t.Fatal(err)
			}
		}
		got := firings(t, s)
		if len(got) != 1 || got[0].Rule != "every-delete" || got[0].Key != "mallory" {
			t.Fatalf("firings %+v, want every-delete for mallory while new-ip still reads the history", got)
		}
		cursors, _ := s.AlertCursors(ctx)
		if head, _ := s.Head(ctx); cursors["new-ip"] >= head.Size || cursors["every-delete"] != head.Size {
			t.Fatalf("cursors %v, log size %d", cursors, head.Size)
		}
		catchUp(t, e)
		if got := firings(t, s); len(got) != 2 || got[0].Rule != "new-ip" || got[0].Key != "mallory|10.0.0.1" {
			t.Fatalf("after catching up: %+v", got)
		}
	})
}
