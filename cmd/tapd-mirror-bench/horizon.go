package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/syncer"
	"github.com/tapd-mirror/tapd-mirror/tapd/tapdtest"
)

// Shape of the horizon step's company.
const (
	horizonProjects   = 100
	horizonNearAfter  = 5 * time.Minute  // dense records from this long after the horizon…
	horizonNearSpan   = 30 * time.Minute // …over this span
	horizonNearPerPrj = 100
)

// horizon measures a first backfill of 100 projects racing TAPD's moving
// horizon: the fake's clock moves one second per activity-log request
// (TAPD's default quota of 60 a minute, without waiting for it), every
// project holds dense records that expire 5–35 minutes after the backfill
// starts, and the mirror must lose none of them, at ≤ 1.10 × the floor.
func (b *bench) horizon(ctx context.Context) error {
	fmt.Fprintln(b.out, "### 9. First backfill against the moving horizon (PostgreSQL, loopback fake TAPD, scaled clock)")
	fmt.Fprintln(b.out)
	perDay := b.n(20)
	fmt.Fprintf(b.out, "%d projects (`projects:2001`), %d records a day each over 7 months, plus %d records per project spread over %s–%s after TAPD's horizon at the start. "+
		"Scaled clock: the fake TAPD's clock (and so its horizon) moves 1 s per activity-log request, i.e. TAPD's default quota of 60 requests/min with no real waiting; the mirror's clock is the fake's. "+
		"Pool of 1 run slot: with the clock moving only per request, a run waiting on the database in one of several slots would let the others spend minutes of TAPD time in no time (a real, shared quota would not). "+
		"Lost = records TAPD held for a target when the backfill started and that are not in the mirror after it; those expiring within the first %s are counted apart: the mirror needs two requests per project before its oldest day (page 1 of the oldest month, which tells that it takes more than one page, then its first day); no schedule could do with less than one (%s). "+
		"Floor = per target, Σ over the calendar months of its half year of max(1, ⌈records / 200⌉); requests count every activity-log request (probes included); no 429s occur here (no penalties to leave out).\n\n",
		horizonProjects, perDay, horizonNearPerPrj, horizonNearAfter, horizonNearAfter+horizonNearSpan, 2*time.Duration(horizonProjects)*time.Second, time.Duration(horizonProjects)*time.Second)
	fake := tapdtest.New(tapdtest.Options{Seed: 31, Projects: horizonProjects, Months: 7, RecordsPerDay: perDay,
		CompanyRecordsPerDay: 1, TimePerRequest: time.Second})
	defer fake.Close()
	fake.PlaceNearHorizon(horizonNearAfter, horizonNearSpan, horizonNearPerPrj)
	st, _, closeStore, err := b.freshStore(ctx, config.Postgres, "horizon")
	if err != nil {
		return err
	}
	defer closeStore()
	s, counted, err := b.syncerWith(st, fake, -1, func(o *syncer.Options) { o.MaxConcurrent = 1 }, "projects:2001")
	if err != nil {
		return err
	}
	// Records expiring before the mirror can reach every target are counted
	// apart: two requests per target (page 1 of its oldest month, which
	// tells whether it takes more than a page, then its first day). No
	// schedule could do with less than one.
	early := 2 * horizonProjects * time.Second
	rep, err := b.firstBackfill(ctx, fake, st, s, counted, syncer.RunOptions{Trigger: syncer.TriggerCLI}, early)
	if err != nil {
		return err
	}
	perTarget := make([]int, len(rep.Targets))
	for i, t := range rep.Targets {
		perTarget[i] = t.Requests
	}
	slices.Sort(perTarget)
	b.table([]string{"case", "measured", "target", "result"}, [][]string{
		{fmt.Sprintf("records lost to the horizon (of %d TAPD held at the start; %d of them dense, expiring %s–%s after it)", rep.Records,
			horizonProjects*horizonNearPerPrj, horizonNearAfter, horizonNearAfter+horizonNearSpan), fmt.Sprint(rep.Lost), "0", passFail(rep.Lost == 0)},
		{fmt.Sprintf("records expiring within the first %s, lost (before the mirror can reach every project)", early),
			fmt.Sprint(rep.LostEarly), "(information)", "—"},
		{fmt.Sprintf("backfill requests / floor (%d / %d)", rep.Requests, rep.Floor), ratio(float64(rep.Requests), float64(rep.Floor)),
			"≤ 1.10", passFail(float64(rep.Requests) <= 1.1*float64(rep.Floor))},
		{"requests per target: min / median / max", fmt.Sprintf("%d / %d / %d", perTarget[0], perTarget[len(perTarget)/2], perTarget[len(perTarget)-1]),
			"(information)", "—"},
		{"TAPD time the backfill took (scaled clock)", rep.TAPDTime.Round(time.Second).String(), "(information)", "—"},
		{fmt.Sprintf("TAPD minutes that expired before they were reached, as gaps (%d targets)", rep.ExpiredTargets),
			fmt.Sprint(rep.ExpiredMinutes), "(information)", "—"},
	})
	return nil
}

// backfillReport is what one first backfill did, per target and in all,
// for any step that compares it with an estimate made before it.
type backfillReport struct {
	Targets        []targetBackfill
	Records        int           // TAPD held for all targets at the start (their half year)
	Requests       int64         // activity-log requests, probes included
	Floor          int           // Σ of the targets' floors
	Lost           int           // of Records, not in the mirror afterwards (LostEarly apart)
	LostEarly      int           // lost, and expiring within early of the start: no schedule could reach them
	TAPDTime       time.Duration // how far TAPD's clock moved meanwhile
	ExpiredMinutes int           // minutes recorded as expired gaps
	ExpiredTargets int           // targets with such a gap
}

// targetBackfill is one target's share of a backfill.
type targetBackfill struct {
	Key      string
	Requests int // its run's requests
	Records  int // TAPD held for it at the start, within its half year
	Floor    int // see streamFloor
	Lost     int // LostEarly apart
	// LostEarly are lost records that expired within early of the start.
	LostEarly int
}

// firstBackfill runs one batch of s (built by syncerWith over an empty
// store) and reports it against the fake's truth; lost records that expired
// within early of the start are counted apart (LostEarly).
func (b *bench) firstBackfill(ctx context.Context, fake *tapdtest.Server, st *storage.Store, s *syncer.Syncer,
	counted *countingTAPD, ro syncer.RunOptions, early time.Duration) (backfillReport, error) {
	truth := fake.Truth()
	startAt := fake.Now()
	earlyBefore := fake.Horizon().Add(early)
	before := counted.calls.Load()
	runs, err := s.RunAll(ctx, ro, "")
	if err != nil {
		return backfillReport{}, err
	}
	rep := backfillReport{Requests: counted.calls.Load() - before, TAPDTime: fake.Now().Sub(startAt)}
	stored, err := st.ListActivities(ctx, storage.Filter{Source: storage.SourceTAPD}, 100_000_000, 0)
	if err != nil {
		return backfillReport{}, err
	}
	have := make(map[string]bool, len(stored))
	for _, a := range stored {
		have[a.SourceID] = true
	}
	states, err := st.SyncStates(ctx)
	if err != nil {
		return backfillReport{}, err
	}
	for _, run := range runs {
		t := targetBackfill{Key: run.Workspace, Requests: run.Requests}
		t.Records, t.Floor = streamFloor(truth, run.Workspace, run.WindowStart, run.WindowEnd)
		for _, r := range truth {
			if r.Created.Before(run.WindowStart) || !r.Created.Before(run.WindowEnd) || !inStream(run.Workspace, r) || have[r.ID] {
				continue
			}
			if r.Created.Before(earlyBefore) {
				t.LostEarly++
			} else {
				t.Lost++
			}
		}
		expired := 0
		for _, g := range states[run.Workspace].Gaps() {
			if g.Reason == storage.ReasonExpired {
				expired += int(g.End.Sub(g.Start) / time.Minute)
			}
		}
		if expired > 0 {
			rep.ExpiredMinutes += expired
			rep.ExpiredTargets++
		}
		rep.Records += t.Records
		rep.Floor += t.Floor
		rep.Lost += t.Lost
		rep.LostEarly += t.LostEarly
		rep.Targets = append(rep.Targets, t)
	}
	return rep, nil
}
