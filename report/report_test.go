package report_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/integrity"
	"github.com/tapd-mirror/tapd-mirror/report"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
	"github.com/tapd-mirror/tapd-mirror/syncer"
	"github.com/tapd-mirror/tapd-mirror/tapd"
	"github.com/tapd-mirror/tapd-mirror/tapd/tapdtest"
)

var fakeNow = time.Date(2026, 11, 25, 12, 0, 30, 0, tapdtest.Shanghai)

// memoryTrail stands in for the access trail (storage.ListAccess, built
// beside this package): a list of entries, filtered by time as the real
// one is. It tests the report's summary of a trail, not the trail.
type memoryTrail []report.AccessEntry

func (m memoryTrail) source(_ context.Context, from, to time.Time, each func(report.AccessEntry) error) error {
	for _, e := range m {
		if !e.At.Before(from) && e.At.Before(to) {
			if err := each(e); err != nil {
				return err
			}
		}
	}
	return nil
}

type fixture struct {
	fake    *tapdtest.Server
	store   *storage.Store
	key     *integrity.Key
	project string
	horizon time.Time // TAPD's horizon at the first run: the mirror begins there
	opts    report.Options
}

// newFixture syncs one project from a fake TAPD whose end_time excludes its
// minute, so that the last minute of each month is a gap (with that reason),
// which an operator acknowledges; an hour later a second run overlaps the
// first by the look-back and its settle check finds late records.
func newFixture(t *testing.T, dbURL string) *fixture {
	t.Helper()
	ctx := context.Background()
	fake := tapdtest.New(tapdtest.Options{Now: fakeNow, Seed: 7, Projects: 1, RecordsPerDay: 5, EndExclusive: true})
	t.Cleanup(fake.Close)
	st := storagetest.Open(t, dbURL)
	st.SetCountsZone(tapdtest.Shanghai)
	if _, err := st.EnsureCounts(ctx); err != nil {
		t.Fatal(err)
	}
	user, pw := fake.Credentials()
	clock := tapdtest.NewVirtualClock(fake.Now())
	client, err := tapd.New(tapd.Options{BaseURL: fake.URL, APIUser: user, APIPassword: pw, RequestsPerMinute: -1,
		RetryWaitMin: time.Millisecond, RetryWaitMax: 2 * time.Millisecond, MaxRetries: 2, Timeout: 10 * time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: clock.Now, WaitUntil: clock.WaitUntil})
	if err != nil {
		t.Fatal(err)
	}
	project := fake.Projects()[0].ID
	ws, err := config.ParseWorkspace(project)
	if err != nil {
		t.Fatal(err)
	}
	horizon := fake.Horizon()
	sy := syncer.New(syncer.Options{Store: st, TAPD: client, Workspaces: []config.Workspace{ws}, Now: fake.Now,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Overlap: 5 * time.Minute, SettleCheck: time.Minute})
	if _, err := sy.RunAll(ctx, syncer.RunOptions{Trigger: syncer.TriggerCLI}, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := sy.AcknowledgeGaps(storage.WithToken(ctx, "ops-lead"), project, "month-end minutes TAPD cannot serve"); err != nil {
		t.Fatal(err)
	}
	fake.Advance(time.Hour)
	fake.AddRecords(project, fake.Now().Add(-3*time.Minute), 4) // inside the look-back of the next run
	fake.AddRecords(project, fake.Now().Add(-2*time.Hour), 3)   // late: before the checkpoint, found by the settle check
	if _, err := sy.RunAll(ctx, syncer.RunOptions{Trigger: syncer.TriggerCLI}, ""); err != nil {
		t.Fatal(err)
	}
	skey, err := integrity.GenerateKey("archive.example")
	if err != nil {
		t.Fatal(err)
	}
	key, err := integrity.ParseKey(skey)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.SignCheckpoint(ctx, key, fake.Now()); err != nil {
		t.Fatal(err)
	}
	trail := memoryTrail{
		{At: fake.Now().Add(-48 * time.Hour), Principal: "auditor", Action: "export.csv", Rows: 120, Outcome: "ok", LogIndex: 5},
		{At: fake.Now().Add(-47 * time.Hour), Principal: "auditor", Action: "export.csv", Rows: 30, Outcome: "ok", LogIndex: 6},
		{At: fake.Now().Add(-46 * time.Hour), Principal: "admin", Action: "record.delete", Rows: 1, Outcome: "ok", LogIndex: 7},
		{At: fake.Now().Add(-45 * time.Hour), Principal: "reader", Action: "console.search", Rows: 20, Outcome: "ok", LogIndex: 8},
		{At: fake.Now().AddDate(-2, 0, 0), Principal: "old", Action: "export.csv", Rows: 1, Outcome: "ok", LogIndex: 1}, // outside the period
	}
	return &fixture{fake: fake, store: st, key: key, project: project, horizon: horizon, opts: report.Options{
		Store: st, Key: key, Location: tapdtest.Shanghai, Horizon: fake.Horizon(), Now: fake.Now(), By: "test",
		From: time.Date(2026, 4, 1, 0, 0, 0, 0, tapdtest.Shanghai), To: time.Date(2026, 11, 30, 0, 0, 0, 0, tapdtest.Shanghai),
		Access: trail.source,
	}}
}

// truth counts the fake's records of the project created in [from, to),
// but for the month's last minute (no query reaches it).
func (f *fixture) truth(from, to time.Time) int64 {
	var n int64
	for _, r := range f.fake.Truth() {
		if !r.CompanyLevel && r.Workspace == f.project && !r.Created.Before(from) && r.Created.Before(to.Add(-time.Minute)) {
			n++
		}
	}
	return n
}

func TestReportFiguresAgainstTheFakeTAPD(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		f := newFixture(t, dbURL)
		r, err := report.Build(context.Background(), f.opts)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Targets) != 1 || r.Targets[0].Target != f.project || len(r.Targets[0].Months) != 8 {
			t.Fatalf("targets = %+v", r.Targets)
		}
		tg := r.Targets[0]
		for _, m := range tg.Months {
			if !f.horizon.Before(m.End) { // before the first window: never mirrored
				if m.MirrorCount != 0 || m.TAPDVerified != nil || m.Difference != nil {
					t.Errorf("%s: a month never synced = %+v", m.Month, m)
				}
				continue
			}
			want := f.truth(later(m.Start, f.horizon.Truncate(time.Minute)), m.End)
			if m.MirrorCount != want {
				t.Errorf("%s: mirror_count = %d, want %d (the fake's records)", m.Month, m.MirrorCount, want)
			}
			if m.TAPDVerified == nil || m.TAPDVerified.Total != want || *m.Difference != 0 || *m.MirrorInVerified != want {
				t.Errorf("%s: TAPD verified %+v (difference %v), want %d", m.Month, m.TAPDVerified, m.Difference, want)
			}
		}
		// The second run's settle check found the 3 late records: TAPD had 3 more than the target had reported.
		last := tg.Months[len(tg.Months)-1]
		if last.TAPDSettle == nil || last.TAPDSettle.Total != *last.TAPDSettle.Reported+3 {
			t.Errorf("settle check of %s = %+v", last.Month, last.TAPDSettle)
		}
		// The month-end minutes: gaps with their reason, acknowledged by the token that did it.
		if len(tg.Gaps) < 5 {
			t.Fatalf("gaps = %+v", tg.Gaps)
		}
		for _, g := range tg.Gaps {
			if g.End.Sub(g.Start) != time.Minute || g.End.In(tapdtest.Shanghai).Day() != 1 || !g.Acknowledged ||
				g.AcknowledgedBy != "ops-lead" || g.AcknowledgedAt == nil || g.Note != "month-end minutes TAPD cannot serve" ||
				g.Reason != storage.ReasonUnreachableMinute {
				t.Fatalf("gap = %+v", g)
			}
		}
		if r.Totals.Unacked != 0 || r.Totals.Gaps != len(tg.Gaps) {
			t.Errorf("totals = %+v", r.Totals)
		}
		// What only the mirror holds: what left TAPD's horizon in the hour between the runs.
		if want := f.truth(f.horizon.Truncate(time.Minute), f.fake.Horizon()); tg.MirrorOnly == nil ||
			!tg.MirrorOnly.End.Equal(f.fake.Horizon().UTC()) || tg.MirrorOnly.Records != want || want == 0 {
			t.Errorf("mirror only = %+v, want %d records", tg.MirrorOnly, want)
		}
		var verified time.Duration
		for _, s := range tg.Coverage {
			if s.Kind == "verified" {
				verified += s.End.Sub(s.Start)
			}
			if s.Kind == "gap" {
				t.Errorf("unacknowledged gap segment %+v", s)
			}
		}
		if verified < 100*24*time.Hour {
			t.Errorf("coverage = %+v", tg.Coverage)
		}
		// Integrity: the checkpoint signed in the period; the trail summarised within the period only.
		if r.Integrity.CheckpointsInPeriod != 1 || len(r.Integrity.Checkpoints) != 1 || r.Integrity.Checkpoints[0].Size == 0 ||
			r.Integrity.Covering == nil || r.Integrity.Covering.Size != r.Integrity.Checkpoints[0].Size {
			t.Errorf("integrity = %+v", r.Integrity)
		}
		a := r.Access
		if !a.Available || a.Entries != 4 || a.NotableCount != 3 || len(a.ByAction) != 3 ||
			a.ByAction[1] != (report.ActionCount{Principal: "auditor", Action: "export.csv", Outcome: "ok", Count: 2, Rows: 150}) {
			t.Errorf("access summary = %+v", a)
		}
	})
}

func TestReportVerifiesOfflineAndNamesAChangedNumber(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		f := newFixture(t, dbURL)
		ctx := context.Background()
		vkey := f.key.VerifierKey()
		j, err := report.Make(ctx, f.opts, "en", true, nil)
		if err != nil {
			t.Fatal(err)
		}
		var recorded []report.Report
		h, err := report.Make(ctx, f.opts, "zh", false, func(_ context.Context, r report.Report) error {
			recorded = append(recorded, r)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(recorded) != 1 {
			t.Fatalf("the report was recorded %d times", len(recorded))
		}
		for name, body := range map[string][]byte{"json": j.Body, "html": h.Body} {
			if _, err := report.Verify(body, vkey); err != nil {
				t.Fatalf("%s: a fresh report does not verify: %v", name, err)
			}
		}
		if !bytes.Contains(h.Body, []byte("完整性报告")) {
			t.Error("the zh page is not in Chinese")
		}

		// One number changed in the JSON a tool reads.
		var d report.Document
		if err := json.Unmarshal(j.Body, &d); err != nil {
			t.Fatal(err)
		}
		var shown report.Report
		if err := json.Unmarshal(d.Report, &shown); err != nil {
			t.Fatal(err)
		}
		shown.Targets[0].Months[1].MirrorCount++
		d.Report, _ = json.Marshal(shown)
		changed, _ := d.JSON()
		_, err = report.Verify(changed, vkey)
		if !errors.Is(err, report.ErrMismatch) || !strings.Contains(err.Error(), "targets[0].months[1].mirror_count") {
			t.Fatalf("changed JSON: %v", err)
		}

		// One number changed in the page a person reads.
		re := regexp.MustCompile(`(data-field="targets\[0\]\.months\[2\]\.mirror_count">)([0-9,]+)<`)
		if !re.Match(h.Body) {
			t.Fatal("the page does not show targets[0].months[2].mirror_count")
		}
		page := re.ReplaceAll(h.Body, []byte("${1}999999<"))
		_, err = report.Verify(page, vkey)
		if !errors.Is(err, report.ErrMismatch) || !strings.Contains(err.Error(), "targets[0].months[2].mirror_count") {
			t.Fatalf("changed page: %v", err)
		}

		// The signed copy changed too: the signature no longer matches.
		sd := d
		sd.Report = json.RawMessage(nil)
		if err := json.Unmarshal(j.Body, &sd); err != nil {
			t.Fatal(err)
		}
		sd.Signed = sd.Signed[:len(sd.Signed)-8] + "AAAAAAA="
		forged, _ := sd.JSON()
		if _, err := report.Verify(forged, vkey); !errors.Is(err, report.ErrMismatch) {
			t.Fatalf("changed signed copy: %v", err)
		}

		// Another archive's key.
		other, _ := integrity.GenerateKey("archive.example")
		ok, _ := integrity.ParseKey(other)
		if _, err := report.Verify(j.Body, ok.VerifierKey()); !errors.Is(err, integrity.ErrSignature) {
			t.Fatalf("wrong key: %v", err)
		}
	})
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
