// Package report builds the completeness report an auditor checks offline:
// per target and calendar month what TAPD said it had, what the mirror
// holds, the gaps and who acknowledged them, the spans only the mirror still
// holds, the signed checkpoints and the last database verification, a
// summary of the access trail, and the commands that check it all. The
// report is a JSON document signed with the archive's key (sign.go) and an
// HTML page for people that embeds it (html.go).
package report

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tapd-mirror/tapd-mirror/integrity"
	"github.com/tapd-mirror/tapd-mirror/storage"
)

// Format names this version of the report's JSON.
const Format = "tapd-mirror-report/1"

// Report is the content that is signed. Field names are the paths
// verify-report names (targets[3].months[1].mirror_count).
type Report struct {
	Format      string        `json:"format"`
	Archive     string        `json:"archive"`      // the log's name (the signing key's)
	VerifierKey string        `json:"verifier_key"` // the key it is signed with; trust the one you were given, not this
	GeneratedAt time.Time     `json:"generated_at"`
	GeneratedBy string        `json:"generated_by"` // the token or the command that made it
	Period      Period        `json:"period"`
	Horizon     time.Time     `json:"tapd_horizon"` // TAPD answers nothing older
	Targets     []Target      `json:"targets"`
	Totals      Totals        `json:"totals"`
	Integrity   Integrity     `json:"integrity"`
	Access      AccessSummary `json:"access"`
	HowToVerify []Command     `json:"how_to_verify"`
}

// Period is what was asked for and the whole calendar months it covers.
type Period struct {
	From     string    `json:"from"` // the dates asked for, inclusive
	To       string    `json:"to"`
	Timezone string    `json:"timezone"` // TAPD's, in which months and dates are read
	Start    time.Time `json:"start"`    // the first month's first instant
	End      time.Time `json:"end"`      // the instant after the last month
}

// Totals sums the targets.
type Totals struct {
	Targets      int   `json:"targets"`
	TAPDVerified int64 `json:"tapd_verified"`
	MirrorCount  int64 `json:"mirror_count"`
	Gaps         int   `json:"gaps"`
	Unacked      int   `json:"gaps_unacknowledged"`
	MirrorOnly   int64 `json:"mirror_only_records"`
}

// Target is one sync target (a project, "company:ID" or "all:ID").
type Target struct {
	Target string `json:"target"`
	// CountedBy says how mirror_count is counted: "daily_counts" (the
	// records of the target's serial, from the daily counts) or
	// "membership" (the records the target reported, deleted ones included:
	// a company-wide target's records have many serials).
	CountedBy    string      `json:"counted_by"`
	Synced       bool        `json:"synced"`
	Coverage     []Segment   `json:"coverage"`
	Months       []Month     `json:"months"`
	Gaps         []Gap       `json:"gaps"`
	MirrorOnly   *MirrorOnly `json:"mirror_only"`
	TAPDVerified int64       `json:"tapd_verified"`
	MirrorCount  int64       `json:"mirror_count"`
}

// Segment is a stretch of the period's time line: verified, gap (not
// acknowledged), acknowledged (a gap an operator accepted), or unsynced
// (before the target's first window or after its checkpoint).
type Segment struct {
	Kind  string    `json:"kind"`
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// Month is one calendar month of one target.
type Month struct {
	Month        string     `json:"month"` // 2026-01
	Start        time.Time  `json:"start"`
	End          time.Time  `json:"end"`
	TAPDVerified *TAPDCount `json:"tapd_verified"` // null: no verified window recorded
	TAPDSettle   *TAPDCount `json:"tapd_settle"`   // null: no settle check of this month
	MirrorCount  int64      `json:"mirror_count"`
	// MirrorInVerified is what the mirror holds in tapd_verified's span
	// (the month's count when the span is the whole month), and
	// Difference is it − tapd_verified.total (both null without a verified
	// total): negative, the mirror holds fewer than TAPD counted.
	MirrorInVerified *int64 `json:"mirror_count_in_verified_span"`
	Difference       *int64 `json:"difference"`
	VerifiedPct      int    `json:"verified_percent"` // of the month's time, rounded down
	BeyondHorizon    bool   `json:"beyond_horizon"`   // the whole month is older than TAPD's horizon
}

// TAPDCount is a total TAPD gave for a span of a month, and when.
type TAPDCount struct {
	Total    int64     `json:"total"`
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	At       time.Time `json:"at"`
	Reported *int64    `json:"reported,omitempty"` // settle checks: records the target had reported in the span then
}

// Gap is a span never verified, with why and who acknowledged it.
type Gap struct {
	Start          time.Time  `json:"start"`
	End            time.Time  `json:"end"`
	Reason         string     `json:"reason"`
	Acknowledged   bool       `json:"acknowledged"`
	AcknowledgedBy string     `json:"acknowledged_by,omitempty"`
	AcknowledgedAt *time.Time `json:"acknowledged_at,omitempty"`
	Note           string     `json:"note,omitempty"`
}

// MirrorOnly is the part of the period older than TAPD's horizon: TAPD no
// longer answers for it; the mirror's records are the only copy.
type MirrorOnly struct {
	Start   time.Time `json:"start"`
	End     time.Time `json:"end"`
	Records int64     `json:"records"`
}

// Integrity is what proves the records were not changed.
type Integrity struct {
	// Checkpoints are the first checkpoints signed in the period (up to
	// maxCheckpoints of CheckpointsInPeriod), Covering the first signed
	// after it (its tree holds every event of the period), or the latest
	// while the period is not over.
	Checkpoints         []Checkpoint `json:"checkpoints"`
	CheckpointsInPeriod int64        `json:"checkpoints_in_period"`
	Covering            *Checkpoint  `json:"covering"`
	LastVerify          *LastVerify  `json:"last_verify_database"` // null: never run
}

// Checkpoint is a signed checkpoint, with its note so it can be checked alone.
type Checkpoint struct {
	Size     int64     `json:"tree_size"`
	Root     string    `json:"root"`
	SignedAt time.Time `json:"signed_at"`
	Note     string    `json:"signed_note"`
}

// LastVerify is the outcome of the last `verify --database` (or the
// service's background verification).
type LastVerify struct {
	OK       bool      `json:"ok"`
	Full     bool      `json:"full"`
	TreeSize int64     `json:"tree_size"`
	Records  int64     `json:"records"`
	Problems int64     `json:"problem_count"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
}

// Command is one way to check the report, with what it proves.
type Command struct {
	Purpose string `json:"purpose"`
	Command string `json:"command"`
}

const maxCheckpoints = 20

// Options say what to report on and where the parts come from.
type Options struct {
	Store *storage.Store
	Key   *integrity.Key
	// From and To are the dates asked for (inclusive), in Location (TAPD's zone).
	From, To   time.Time
	Location   *time.Location
	Workspaces []string // only these targets; empty: every target the sync state knows
	Horizon    time.Time
	Now        time.Time
	By         string // who asks: a token's name, or "command"
	// Access reads the access trail; nil: the trail is not available in
	// this build and the report says so.
	Access AccessSource
}

// ErrNoTargets: none of the asked-for targets is known to the sync state.
var ErrNoTargets = errors.New("no such sync target")

// Build gathers the report from the database.
func Build(ctx context.Context, o Options) (Report, error) {
	loc := o.Location
	if loc == nil {
		loc = time.UTC
	}
	if o.To.Before(o.From) {
		return Report{}, fmt.Errorf("the period ends (%s) before it starts (%s)", o.To.Format(time.DateOnly), o.From.Format(time.DateOnly))
	}
	f, t := o.From.In(loc), o.To.In(loc)
	start := time.Date(f.Year(), f.Month(), 1, 0, 0, 0, 0, loc)
	end := time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, loc)
	r := Report{
		Format: Format, Archive: o.Key.Name(), VerifierKey: o.Key.VerifierKey(),
		GeneratedAt: o.Now.UTC().Truncate(time.Second), GeneratedBy: o.By,
		Period:  Period{From: f.Format(time.DateOnly), To: t.Format(time.DateOnly), Timezone: loc.String(), Start: start, End: end},
		Horizon: o.Horizon.UTC().Truncate(time.Second),
		Targets: []Target{},
	}
	states, err := o.Store.SyncStates(ctx)
	if err != nil {
		return r, err
	}
	keys := make([]string, 0, len(states))
	for k := range states {
		if len(o.Workspaces) == 0 || slices.Contains(o.Workspaces, k) {
			keys = append(keys, k)
		}
	}
	for _, w := range o.Workspaces {
		if _, ok := states[w]; !ok {
			return r, fmt.Errorf("%w %q (known: %s)", ErrNoTargets, w, strings.Join(sortedKeys(states), ", "))
		}
	}
	slices.Sort(keys)
	totals, err := o.Store.MonthTotals(ctx, start, end)
	if err != nil {
		return r, err
	}
	acks, err := o.Store.GapAcks(ctx)
	if err != nil {
		return r, err
	}
	for _, k := range keys {
		tg, err := buildTarget(ctx, o, k, states[k], totals[k], acks[k], start, end, loc)
		if err != nil {
			return r, err
		}
		r.Targets = append(r.Targets, tg)
		r.Totals.Targets++
		r.Totals.TAPDVerified += tg.TAPDVerified
		r.Totals.MirrorCount += tg.MirrorCount
		r.Totals.Gaps += len(tg.Gaps)
		for _, g := range tg.Gaps {
			if !g.Acknowledged {
				r.Totals.Unacked++
			}
		}
		if tg.MirrorOnly != nil {
			r.Totals.MirrorOnly += tg.MirrorOnly.Records
		}
	}
	if r.Integrity, err = buildIntegrity(ctx, o.Store, start, end); err != nil {
		return r, err
	}
	if r.Access, err = summarize(ctx, o.Access, start, end); err != nil {
		return r, err
	}
	r.HowToVerify = howTo(r)
	return r, nil
}

func sortedKeys(m map[string]storage.SyncState) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// serialOf is the serial whose daily counts hold a target's records, if
// one does: a project's id, a company's id for its company-level logs. A
// company-wide target ("all:ID") spans many serials.
func serialOf(target string) (string, bool) {
	if id, ok := strings.CutPrefix(target, "company:"); ok {
		return id, true
	}
	if strings.HasPrefix(target, "all:") {
		return "", false
	}
	return target, true
}

// mirrorCount counts what the mirror holds of target in [since, until).
func mirrorCount(ctx context.Context, st *storage.Store, target string, since, until time.Time) (int64, error) {
	if serial, ok := serialOf(target); ok {
		return st.CountActivities(ctx, storage.Filter{Source: storage.SourceTAPD, Serial: serial, Since: since, Until: until})
	}
	n, err := st.CountReported(ctx, target, since, until)
	return int64(n), err
}

func buildTarget(ctx context.Context, o Options, key string, st storage.SyncState, totals []storage.MonthTotal,
	acks []storage.GapAck, start, end time.Time, loc *time.Location) (Target, error) {
	tg := Target{Target: key, CountedBy: "daily_counts", Synced: st.Synced(), Months: []Month{}, Gaps: []Gap{}}
	if _, ok := serialOf(key); !ok {
		tg.CountedBy = "membership"
	}
	tg.Coverage = segments(st, start, end)
	for m := start; m.Before(end); m = m.AddDate(0, 1, 0) {
		next := m.AddDate(0, 1, 0)
		mo := Month{Month: m.Format("2006-01"), Start: m.UTC(), End: next.UTC(), BeyondHorizon: !next.After(o.Horizon)}
		n, err := mirrorCount(ctx, o.Store, key, m, next)
		if err != nil {
			return tg, err
		}
		mo.MirrorCount = n
		if i := slices.IndexFunc(totals, func(t storage.MonthTotal) bool { return t.Month.Equal(m) }); i >= 0 {
			t := totals[i]
			if !t.Verified.Start.IsZero() {
				mo.TAPDVerified = &TAPDCount{Total: t.VerifiedTotal, Start: t.Verified.Start, End: t.Verified.End, At: t.VerifiedAt.Truncate(time.Second)}
				in := mo.MirrorCount
				if lo, hi := later(t.Verified.Start, m), earlier(t.Verified.End, next); !lo.Equal(m) || !hi.Equal(next) {
					if in, err = mirrorCount(ctx, o.Store, key, lo, hi); err != nil {
						return tg, err
					}
				}
				d := in - t.VerifiedTotal
				mo.MirrorInVerified, mo.Difference = &in, &d
				tg.TAPDVerified += t.VerifiedTotal
			}
			if !t.Settle.Start.IsZero() {
				rep := t.SettleReported
				mo.TAPDSettle = &TAPDCount{Total: t.SettleTotal, Start: t.Settle.Start, End: t.Settle.End, At: t.SettledAt.Truncate(time.Second), Reported: &rep}
			}
		}
		var verified time.Duration
		for _, c := range st.Coverage {
			if lo, hi := later(c.Start, m), earlier(c.End, next); lo.Before(hi) {
				verified += hi.Sub(lo)
			}
		}
		mo.VerifiedPct = int(100 * verified / next.Sub(m))
		tg.MirrorCount += n
		tg.Months = append(tg.Months, mo)
	}
	for _, g := range st.Gaps() {
		if !g.Start.Before(end) || !start.Before(g.End) {
			continue
		}
		gap := Gap{Start: g.Start, End: g.End, Reason: g.Reason, Acknowledged: g.Acknowledged}
		if gap.Reason == "" {
			gap.Reason = "not verified: a window that did not reconcile, or was not fetched"
		}
		for _, a := range acks {
			if a.Start.Equal(g.Start) && a.End.Equal(g.End) {
				at := a.At.Truncate(time.Second)
				gap.AcknowledgedBy, gap.AcknowledgedAt, gap.Note = a.By, &at, a.Note
			}
		}
		tg.Gaps = append(tg.Gaps, gap)
	}
	if o.Horizon.After(start) {
		mo := &MirrorOnly{Start: start.UTC(), End: earlier(end, o.Horizon).UTC()}
		n, err := mirrorCount(ctx, o.Store, key, mo.Start, mo.End)
		if err != nil {
			return tg, err
		}
		mo.Records = n
		tg.MirrorOnly = mo
	}
	return tg, nil
}

// segments cuts [start, end) into the target's verified spans, gaps
// (acknowledged or not) and unsynced time, in order.
func segments(st storage.SyncState, start, end time.Time) []Segment {
	var out []Segment
	add := func(kind string, a, b time.Time) {
		a, b = later(a, start), earlier(b, end)
		if !a.Before(b) {
			return
		}
		if n := len(out); n > 0 && out[n-1].Kind == kind && out[n-1].End.Equal(a) {
			out[n-1].End = b.UTC()
			return
		}
		out = append(out, Segment{Kind: kind, Start: a.UTC(), End: b.UTC()})
	}
	type piece struct {
		kind string
		iv   storage.Interval
	}
	var pieces []piece
	for _, c := range st.Coverage {
		pieces = append(pieces, piece{"verified", c})
	}
	for _, g := range st.Gaps() {
		kind := "gap"
		if g.Acknowledged {
			kind = "acknowledged"
		}
		pieces = append(pieces, piece{kind, g.Interval})
	}
	slices.SortFunc(pieces, func(a, b piece) int { return a.iv.Start.Compare(b.iv.Start) })
	cursor := start
	for _, p := range pieces {
		if p.iv.Start.After(cursor) {
			add("unsynced", cursor, p.iv.Start)
		}
		add(p.kind, p.iv.Start, p.iv.End)
		cursor = later(cursor, p.iv.End)
	}
	add("unsynced", cursor, end)
	if out == nil {
		out = []Segment{}
	}
	return out
}

func buildIntegrity(ctx context.Context, st *storage.Store, start, end time.Time) (Integrity, error) {
	in, count, after, err := st.CheckpointsSigned(ctx, start, end, maxCheckpoints)
	if err != nil {
		return Integrity{}, err
	}
	ig := Integrity{Checkpoints: []Checkpoint{}, CheckpointsInPeriod: count}
	for _, c := range in {
		ig.Checkpoints = append(ig.Checkpoints, checkpointOf(c))
	}
	if after.Size == 0 { // the period is not over, or nothing was signed since: the latest covers what there is
		switch after, err = st.LatestCheckpoint(ctx); {
		case errors.Is(err, storage.ErrNotFound):
		case err != nil:
			return ig, err
		}
	}
	if after.Size > 0 {
		c := checkpointOf(after)
		ig.Covering = &c
	}
	switch v, err := st.LastVerifyReport(ctx); {
	case err == nil:
		ig.LastVerify = &LastVerify{OK: v.OK, Full: v.Full, TreeSize: v.TreeSize, Records: v.Records, Problems: v.Count,
			Started: v.Started.Truncate(time.Second), Finished: v.Finished.Truncate(time.Second)}
	case !errors.Is(err, storage.ErrNotFound):
		return ig, err
	}
	return ig, nil
}

func checkpointOf(c storage.SignedCheckpoint) Checkpoint {
	return Checkpoint{Size: c.Size, Root: c.Root.String(), SignedAt: c.SignedAt.UTC(), Note: string(c.Signed)}
}

// howTo lists the commands that check what the report says, offline first.
func howTo(r Report) []Command {
	out := []Command{
		{"report", "tapd-mirror verify-report REPORT_FILE --key VERIFIER_KEY"},
		{"database", "tapd-mirror verify --database --key VERIFIER_KEY"},
		{"bundle", fmt.Sprintf("tapd-mirror export --bundle period.bundle --source tapd --since %s --until %s && tapd-mirror verify period.bundle --key VERIFIER_KEY",
			r.Period.Start.UTC().Format(time.RFC3339), r.Period.End.UTC().Format(time.RFC3339))},
	}
	if r.Integrity.Covering != nil {
		out = append(out, Command{"checkpoint", "tapd-mirror verify LATER_BUNDLE --key VERIFIER_KEY --checkpoint covering-checkpoint.txt (the covering checkpoint's signed_note saved as a file)"})
	}
	return out
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// Made is a report made, in the form asked for.
type Made struct {
	Report Report
	Body   []byte
	JSON   bool // Body is the JSON document; otherwise the HTML page
}

// Make builds, signs and renders a report: the JSON document when asJSON,
// else the HTML page in lang. Then it calls record, when set, so that the
// report itself is in the access trail (the integrator wires it to the
// trail); a failure to record fails the report.
func Make(ctx context.Context, o Options, lang string, asJSON bool, record func(context.Context, Report) error) (Made, error) {
	if _, ok := words[lang]; !ok && !asJSON {
		return Made{}, fmt.Errorf("no report language %q (use %s)", lang, strings.Join(Languages, " or "))
	}
	r, err := Build(ctx, o)
	if err != nil {
		return Made{}, err
	}
	d, err := Sign(r, o.Key)
	if err != nil {
		return Made{}, err
	}
	m := Made{Report: r, JSON: asJSON}
	if asJSON {
		m.Body, err = d.JSON()
	} else {
		var b bytes.Buffer
		err = HTML(&b, d, lang)
		m.Body = b.Bytes()
	}
	if err != nil {
		return Made{}, err
	}
	if record != nil {
		if err := record(ctx, r); err != nil {
			return Made{}, fmt.Errorf("recording the report in the access trail: %w", err)
		}
	}
	return m, nil
}

// Request is a report asked for by someone (the console): the period's
// dates, the targets (none: all), the page's language or the JSON
// document, and who asks (the token's name, for the access trail).
type Request struct {
	From, To   time.Time
	Workspaces []string
	Lang       string
	JSON       bool
	By         string
}

// Maker makes the report asked for, signed; the serving process wires it
// (key, store, TAPD's horizon, the access trail).
type Maker func(ctx context.Context, q Request) (Made, error)
