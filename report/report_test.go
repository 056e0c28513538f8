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
		{At: fake.Now().Add(-44 * time.Hour), Principal: "admin", Action: "forward.replay", Outcome: "ok", LogIndex: 9},
		{At: fake.Now().Add(-43 * time.Hour), Principal: "admin", Action: "hold.release", Rows: 1, Outcome: "ok", LogIndex: 10},
		{At: fake.Now().Add(-42 * time.Hour), Principal: "admin", Action: "console.ack", Rows: 2, Outcome: "denied", LogIndex: 11},
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
		if !a.Available || a.Entries != 7 || len(a.ByAction) != 6 ||
			a.ByAction[4] != (report.ActionCount{Principal: "auditor", Action: "export.csv", Outcome: "ok", Count: 2, Rows: 150}) {
			t.Errorf("access summary = %+v", a)
		}
		// Exports, deletions and admin actions (a replay resends the archive), not a search.
		var notable []string
		for _, n := range a.Notable {
			notable = append(notable, n.Action+":"+n.Outcome)
		}
		if got := strings.Join(notable, " "); a.NotableCount != 6 ||
			got != "export.csv:ok export.csv:ok record.delete:ok forward.replay:ok hold.release:ok console.ack:denied" {
			t.Errorf("exports, deletions and admin actions (%d): %s", a.NotableCount, got)
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

// The page a person reads must be the page the signed report makes: the
// doctorings a value-by-value check let through (the review's probe) are
// refused, each naming what it can; an untouched page verifies in either
// language.
func TestReportPageRefusesDoctoring(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		f := newFixture(t, dbURL)
		vkey := f.key.VerifierKey()
		pages := map[string][]byte{}
		for _, lang := range report.Languages {
			h, err := report.Make(context.Background(), f.opts, lang, false, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := report.Verify(h.Body, vkey); err != nil {
				t.Fatalf("%s: an untouched page does not verify: %v", lang, err)
			}
			pages[lang] = h.Body
		}
		gapTable := map[string]*regexp.Regexp{"en": regexp.MustCompile(`(?s)<table>\n<tr><th>Span</th>.*?</table>`),
			"zh": regexp.MustCompile(`(?s)<table>\n<tr><th>范围</th>.*?</table>`)}
		noGaps := map[string]string{"en": `<p class="small">No gaps in the period.</p>`, "zh": `<p class="small">该期间没有缺口。</p>`}
		gapsCell := regexp.MustCompile(`<span data-field="totals.gaps">([0-9,]+)</span>`)
		for lang, page := range pages {
			doctored := map[string]struct {
				page []byte
				want string
			}{
				"gap table removed": {gapTable[lang].ReplaceAll(page, []byte(noGaps[lang])), "targets[0].gaps[0].start: missing from the page"},
				"bar recoloured": {bytes.ReplaceAll(page, []byte(`<span class="k-acknowledged" style`), []byte(`<span class="k-verified" style`)),
					"altered outside the signed fields: line "},
				"signed cell hidden": {gapsCell.ReplaceAll(page, []byte(`<span data-field="totals.gaps" hidden>$1</span>0`)),
					"totals.gaps: the page alters the cell"},
			}
			for name, d := range doctored {
				if bytes.Equal(d.page, page) {
					t.Fatalf("%s %s: the doctoring did not apply", lang, name)
				}
				_, err := report.Verify(d.page, vkey)
				if !errors.Is(err, report.ErrMismatch) || !strings.Contains(err.Error(), d.want) {
					t.Errorf("%s %s: %v, want %q", lang, name, err, d.want)
				}
			}
		}
	})
}

// The review's probe as it was: one unacknowledged gap, its table removed,
// the red bar turned green, gaps shown as 0.
func TestReportPageProbeRefused(t *testing.T) {
	skey, _ := integrity.GenerateKey("archive.example")
	key, err := integrity.ParseKey(skey)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r := report.Report{Format: report.Format, Archive: "archive.example", GeneratedAt: t0,
		Period: report.Period{From: "2026-01-01", To: "2026-01-31", Timezone: "UTC", Start: t0, End: t0.AddDate(0, 1, 0)},
		Targets: []report.Target{{Target: "1234", CountedBy: "daily_counts",
			Coverage: []report.Segment{{Kind: "gap", Start: t0, End: t0.AddDate(0, 1, 0)}},
			Months:   []report.Month{{Month: "2026-01", MirrorCount: 10}},
			Gaps:     []report.Gap{{Start: t0, End: t0.AddDate(0, 0, 10), Reason: "TAPD failed"}}}},
		Totals: report.Totals{Targets: 1, MirrorCount: 10, Gaps: 1, Unacked: 1}}
	d, err := report.Sign(r, key)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := report.HTML(&buf, d, "en"); err != nil {
		t.Fatal(err)
	}
	page := buf.Bytes()
	if _, err := report.Verify(page, key.VerifierKey()); err != nil {
		t.Fatal(err)
	}
	p := regexp.MustCompile(`(?s)<table>\s*<tr><th>Span.*?</table>`).ReplaceAll(page, []byte(`<p class="small">No gaps in the period.</p>`))
	p = bytes.ReplaceAll(p, []byte(`class="k-gap"`), []byte(`class="k-verified"`))
	p = bytes.ReplaceAll(p, []byte(`<span data-field="totals.gaps">1</span>`), []byte(`<span data-field="totals.gaps" hidden>1</span>0`))
	p = bytes.ReplaceAll(p, []byte(`<span data-field="totals.gaps_unacknowledged">1</span>`), []byte(`0`))
	if _, err := report.Verify(p, key.VerifierKey()); !errors.Is(err, report.ErrMismatch) || !strings.Contains(err.Error(), "totals.gaps") {
		t.Fatalf("the probe's page: %v", err)
	}
	// Only the chart recoloured: no signed cell differs.
	p = bytes.ReplaceAll(page, []byte(`<span class="k-gap"`), []byte(`<span class="k-verified"`))
	if _, err := report.Verify(p, key.VerifierKey()); !errors.Is(err, report.ErrMismatch) || !strings.Contains(err.Error(), "outside the signed fields") {
		t.Fatalf("the recoloured chart: %v", err)
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
