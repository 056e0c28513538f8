package syncer

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/tapd"
)

// Diagnosis is what `doctor` learns of the configured targets before a first
// backfill: which exist, what TAPD's undocumented rules are for this
// account, how much each target holds over the half year, and what the
// backfill will cost and risk. It writes nothing to the archive; the facts
// the sync would otherwise probe for (end_time's meaning, the company-wide
// query) are stored where the sync reads them.
type Diagnosis struct {
	At          time.Time         `json:"at"`
	Horizon     HorizonCheck      `json:"horizon"`
	EndTime     LearnedFact       `json:"end_time"`
	CompanyWide *CompanyWideCheck `json:"company_wide,omitempty"`
	Entries     []EntryCheck      `json:"workspaces"`
	Targets     []TargetVolume    `json:"targets"`
	Estimate    Estimate          `json:"estimate"`
	// Alternatives are cheaper configurations found (all:ID for projects:ID).
	Alternatives []Alternative `json:"alternatives"`
	Advice       []string      `json:"advice"`
	// Blocking are the problems that stop a sync (a missing workspace,
	// refused credentials): doctor exits non-zero when there is any.
	Blocking []string `json:"blocking"`
}

// LearnedFact is one of TAPD's undocumented behaviours: its value ("" when
// still unknown) and whether doctor learned it now or found it learned before.
type LearnedFact struct {
	Value     string `json:"value"`
	LearnedBy string `json:"learned_by"` // "doctor" (now), "earlier" (stored before), "" (unknown)
}

// CompanyWideCheck says whether the company-wide query (all:ID) includes
// the company-level logs; when it does not, all:ID also syncs company:ID.
type CompanyWideCheck struct {
	Company string `json:"company"`
	CompanyWide
	LearnedBy string `json:"learned_by"`
}

// HorizonCheck compares TAPD's real horizon with tapd.horizon_days.
type HorizonCheck struct {
	Days       int       `json:"horizon_days"` // configured
	Configured time.Time `json:"configured"`   // now − horizon_days
	// Oldest is the oldest start_time TAPD accepted (Configured when it
	// accepted that; later when it refused it).
	Oldest  time.Time `json:"oldest_accepted"`
	Refused bool      `json:"refused"` // TAPD refused start_time = Configured
	// Earlier: TAPD also answered for a day before Configured (it keeps more).
	Earlier bool   `json:"accepts_earlier"`
	Error   string `json:"error,omitempty"`
}

// EntryCheck is one sync.workspaces entry.
type EntryCheck struct {
	Entry    string        `json:"entry"`
	Projects []ProjectInfo `json:"projects,omitempty"` // of projects:ID and all:ID
	Targets  []string      `json:"targets"`
	Error    string        `json:"error,omitempty"`
}

// ProjectInfo is one project of a company as TAPD lists it.
type ProjectInfo struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Status string `json:"status,omitempty"`
}

// TargetVolume is one target's records over the half year, counted one
// month at a time (limit=1), and what its backfill costs.
type TargetVolume struct {
	Target   string        `json:"target"`
	Months   []MonthVolume `json:"months"`
	Records  int           `json:"records"`
	Requests int           `json:"requests"` // estimated backfill requests
	AtRisk   *ExpiryRisk   `json:"at_risk,omitempty"`
	Error    string        `json:"error,omitempty"`
}

// MonthVolume is the count of one planned window (a calendar month, the
// first from the horizon, the last up to now).
type MonthVolume struct {
	Start   time.Time `json:"start"`
	End     time.Time `json:"end"`
	Records int       `json:"records"`
}

// ExpiryRisk is what of a target would expire before the backfill reaches it:
// TAPD's horizon moves a minute every minute.
type ExpiryRisk struct {
	Minutes float64 `json:"minutes"` // of TAPD time, from the horizon on
	Records int     `json:"records"` // estimated at the oldest window's density
}

// Estimate is the first backfill's cost under the current settings.
type Estimate struct {
	Requests  int     `json:"requests"`
	PerMinute float64 `json:"requests_per_minute"` // 0: the client-side limit is off
	Minutes   float64 `json:"minutes"`             // at PerMinute
	Records   int     `json:"records"`
	AtRisk    int     `json:"records_at_risk"`
}

// Alternative is another configuration of the same data and its cost.
type Alternative struct {
	Instead  string `json:"instead_of"`
	Use      string `json:"use"`
	Requests int    `json:"requests"` // its backfill estimate
	Was      int    `json:"was"`      // the configured entry's
}

// Diagnose performs doctor's checks: a bounded number of TAPD requests (per
// entry one project list, per target one count per month, and a few probes
// learned once). perMinute reports the client's rate limit after the
// requests (TAPD may have announced a lower quota meanwhile).
func (s *Syncer) Diagnose(ctx context.Context, perMinute func() float64) (Diagnosis, error) {
	now := s.o.Now().In(s.loc) // every time of the report in TAPD's zone
	to := now.Truncate(time.Minute).Add(-time.Minute)
	d := Diagnosis{At: now, Entries: []EntryCheck{}, Targets: []TargetVolume{}, Alternatives: []Alternative{},
		Advice: []string{}, Blocking: []string{}}
	horizon := s.horizonAt(now).Truncate(time.Minute)
	d.Horizon = HorizonCheck{Days: s.o.HorizonDays, Configured: horizon, Oldest: horizon}

	// The entries and their targets.
	var targets []Target
	overhead := 0 // requests a sync spends besides windows: project lists
	companies := map[string]bool{}
	for _, w := range s.o.Workspaces {
		ec := EntryCheck{Entry: w.Key, Targets: []string{}}
		var ts []Target
		if w.ExpandProjects || w.CompanyWide {
			companies[w.ID] = true
			projects, err := s.o.TAPD.Projects(ctx, w.ID)
			if err != nil {
				ec.Error = err.Error()
				d.Blocking = append(d.Blocking, fmt.Sprintf("%s: %s", w.Key, describe(err, "company "+w.ID)))
				d.Entries = append(d.Entries, ec)
				continue
			}
			for _, p := range projects {
				ec.Projects = append(ec.Projects, ProjectInfo{ID: p.ID, Name: p.Name, Status: p.Status})
				if w.ExpandProjects {
					ts = append(ts, Target{Key: p.ID, WorkspaceID: p.ID, Configured: w.Key})
				}
			}
			if w.ExpandProjects {
				overhead++
			}
		}
		if !w.ExpandProjects {
			ts = staticTargets(w)
		}
		for _, t := range ts {
			ec.Targets = append(ec.Targets, t.Key)
		}
		d.Entries = append(d.Entries, ec)
		targets = append(targets, ts...)
	}

	// Whether all:ID needs company:ID beside it: learned once, for every company.
	for _, w := range s.o.Workspaces {
		if !companies[w.ID] || d.CompanyWide != nil {
			continue
		}
		before, err := s.learnedCompanyWide(ctx)
		if err != nil {
			return d, err
		}
		cw, err := s.CompanyWide(ctx, w.ID)
		cw.Since = cw.Since.In(s.loc)
		check := &CompanyWideCheck{Company: w.ID, CompanyWide: cw}
		switch {
		case err != nil:
			d.Advice = append(d.Advice, "could not learn whether TAPD's company-wide query includes company-level logs: "+err.Error())
		case before.Includes != "":
			check.LearnedBy = "earlier"
		case cw.Includes != "":
			check.LearnedBy = "doctor"
		default:
			d.Advice = append(d.Advice, "whether TAPD's company-wide query includes company-level logs is unknown (no company-level record "+
				"in the half year to tell by): all:ID also syncs company:ID, and the sync asks again in a day")
		}
		d.CompanyWide = check
	}
	if d.CompanyWide != nil && d.CompanyWide.Includes == "yes" {
		for i := 0; i < len(targets); i++ {
			if targets[i].CompanyOnly && companyWideConfigured(s.o.Workspaces, targets[i]) {
				targets = append(targets[:i], targets[i+1:]...)
				i--
			}
		}
		for i := range d.Entries {
			d.Entries[i].Targets = keysOfEntry(targets, d.Entries[i].Entry)
		}
	}
	targets = dedupe(targets)

	// TAPD's real horizon, found with the first target's oldest count.
	if len(targets) > 0 {
		s.diagnoseHorizon(ctx, targets[0], to, &d)
	}

	// Volume: one limit=1 count per planned window.
	endBefore, err := s.o.Store.Meta(ctx, metaEndMinute)
	if err != nil {
		return d, err
	}
	months := len(splitByMonth(Interval{Start: d.Horizon.Oldest, End: to}, s.loc))
	s.log.Info("doctor: counting each target's records per month", "targets", len(targets), "requests", len(targets)*months)
	var candidate *runState
	for _, t := range targets {
		r := s.doctorRun(t, d.Horizon.Oldest, to)
		v := TargetVolume{Target: t.Key, Months: []MonthVolume{}}
		for _, m := range splitByMonth(Interval{Start: d.Horizon.Oldest, End: to}, s.loc) {
			p, err := r.page(ctx, m, 1, 1, true)
			if err != nil {
				v.Error = err.Error()
				if fatal(err) {
					d.Blocking = append(d.Blocking, fmt.Sprintf("%s: %s", t.Key, describe(err, "workspace "+t.WorkspaceID)))
				} else {
					d.Advice = append(d.Advice, fmt.Sprintf("%s could not be counted: the estimate leaves out what was not counted (%v)", t.Key, err))
				}
				break
			}
			if len(p.Records) > 0 && p.Records[0].Created.Second() > 0 && candidate == nil {
				r.candidate = &p.Records[0]
				candidate = r
			}
			v.Months = append(v.Months, MonthVolume{Start: m.Start, End: m.End, Records: p.TotalItems})
			v.Records += p.TotalItems
		}
		d.Targets = append(d.Targets, v)
	}

	// end_time's meaning, probed once with a record seen above.
	if err := s.learnedEndMinute(ctx); err != nil {
		return d, err
	}
	if candidate != nil {
		if _, err := s.endMinuteMode(ctx, candidate); err != nil {
			return d, err
		}
	}
	s.mu.Lock()
	d.EndTime = LearnedFact{Value: string(s.endMinute)}
	s.mu.Unlock()
	switch {
	case d.EndTime.Value == "":
		overhead += 2 // the sync looks for a record and probes itself
		d.Advice = append(d.Advice, "end_time's meaning is still unknown (no record with seconds to probe with); the first sync probes it")
	case endBefore != "":
		d.EndTime.LearnedBy = "earlier"
	default:
		d.EndTime.LearnedBy = "doctor"
	}
	if d.EndTime.Value == string(endExclusive) {
		d.Advice = append(d.Advice, "TAPD's end_time excludes its minute: the last minute of each month cannot be fetched; sync status lists those minutes")
	}

	s.estimate(&d, overhead, perMinute())
	s.alternatives(ctx, &d, to)
	return d, nil
}

// doctorRun is a run state for doctor's queries: no run row, no lease.
func (s *Syncer) doctorRun(t Target, horizon, to time.Time) *runState {
	return &runState{s: s, t: t, run: &storage.SyncRun{}, horizon: horizon, to: to,
		log: s.log.With("workspace", t.Key, "doctor", true)}
}

// diagnoseHorizon asks for the oldest window from the configured horizon;
// refused, it finds TAPD's oldest accepted minute; accepted, it asks for a
// day earlier to tell whether TAPD keeps more than tapd.horizon_days.
func (s *Syncer) diagnoseHorizon(ctx context.Context, t Target, to time.Time, d *Diagnosis) {
	h := &d.Horizon
	months := splitByMonth(Interval{Start: h.Configured, End: to}, s.loc)
	if len(months) == 0 {
		return
	}
	r := s.doctorRun(t, h.Configured, to)
	_, err := r.page(ctx, months[0], 1, 1, true)
	switch {
	case horizonRefusal(err): // whatever TAPD's words: this start is at the horizon
		h.Refused = true
		oldest, err := r.oldestAccepted(ctx, months[0])
		if err != nil {
			h.Error = err.Error()
			return
		}
		h.Oldest = oldest
		// The days back TAPD keeps, counting the minute's seconds the probe cannot see.
		days := int((d.At.Sub(oldest) + time.Minute) / (24 * time.Hour))
		d.Advice = append(d.Advice, fmt.Sprintf("TAPD refuses start_time before %s, %s later than tapd.horizon_days (%d) says: set tapd.horizon_days to %d; "+
			"the sync finds this itself on every run, at a few requests each and a warning", r.fmt(oldest), oldest.Sub(h.Configured).Round(time.Minute), h.Days, days))
	case err != nil:
		h.Error = err.Error()
	default:
		earlier := h.Configured.Add(-24 * time.Hour)
		m := splitByMonth(Interval{Start: earlier, End: to}, s.loc)[0]
		if _, err := r.page(ctx, m, 1, 1, true); err == nil {
			h.Earlier = true
			d.Advice = append(d.Advice, fmt.Sprintf("TAPD still answers for a day before tapd.horizon_days (%d) reaches: it keeps more; "+
				"a larger tapd.horizon_days mirrors those records too", h.Days))
		}
	}
}

// windowRequests is what fetching a window of n records costs: its pages,
// or, above sync's split threshold, one look at page 1 plus its parts.
func (s *Syncer) windowRequests(n int) int {
	o := s.o
	if n > o.SplitAbove || n > o.PagingCap {
		parts := max(2, (n+o.SplitAbove-1)/o.SplitAbove)
		return 1 + parts*s.windowRequests((n+parts-1)/parts)
	}
	return max(1, (n+o.PageSize-1)/o.PageSize)
}

// chunk is a span of one target that a backfill fetches in one go.
type chunk struct {
	target   int
	start    time.Time
	minutes  float64 // of TAPD time
	records  int
	requests int
}

// backfillChunks is how a backfill fetches a target's planned windows
// (months, oldest first): each window with its pages (windowRequests),
// except that the oldest, when it is longer than a day and takes more than
// a page, is fetched as its first day (after one look at its page 1, see
// oldestDayFirst) and then the rest; the records are taken as spread
// evenly over the window.
func (s *Syncer) backfillChunks(target int, months []MonthVolume) []chunk {
	out := make([]chunk, 0, len(months)+1)
	for i, m := range months {
		c := chunk{target: target, start: m.Start, minutes: m.End.Sub(m.Start).Minutes(), records: m.Records,
			requests: s.windowRequests(m.Records)}
		if i > 0 || m.End.Sub(m.Start) <= firstWindow || m.Records <= s.o.PageSize {
			out = append(out, c)
			continue
		}
		day := int(math.Round(float64(m.Records) * firstWindow.Minutes() / c.minutes))
		out = append(out,
			chunk{target: target, start: m.Start, minutes: firstWindow.Minutes(), records: day, requests: 1 + s.windowRequests(day)},
			chunk{target: target, start: m.Start.Add(firstWindow), minutes: c.minutes - firstWindow.Minutes(), records: m.Records - day,
				requests: s.windowRequests(m.Records - day)})
	}
	return out
}

// backfillRequests is what a backfill of months costs.
func (s *Syncer) backfillRequests(months []MonthVolume) int {
	n := 0
	for _, c := range s.backfillChunks(0, months) {
		n += c.requests
	}
	return n
}

// estimate adds the targets' requests, the time they take at the quota,
// and what would expire before it is fetched. A backfill fetches every
// target's oldest chunk first, the targets in turn, then the rest oldest
// first; TAPD's horizon moves a minute per minute meanwhile, so a chunk
// fetched later than its start is old loses the records of the TAPD
// minutes that expired first (estimated at the chunk's mean density).
func (s *Syncer) estimate(d *Diagnosis, overhead int, perMinute float64) {
	e := &d.Estimate
	e.Requests, e.PerMinute = overhead, perMinute
	var first, rest []chunk
	for i := range d.Targets {
		v := &d.Targets[i]
		v.AtRisk = nil
		cs := s.backfillChunks(i, v.Months)
		v.Requests = 0
		for _, c := range cs {
			v.Requests += c.requests
		}
		e.Requests += v.Requests
		e.Records += v.Records
		if len(cs) > 0 {
			first, rest = append(first, cs[0]), append(rest, cs[1:]...)
		}
	}
	if perMinute > 0 {
		e.Minutes = math.Round(float64(e.Requests)/perMinute*10) / 10
	}
	if perMinute <= 0 || len(first) == 0 {
		return // no quota, no time to tell
	}
	horizon := first[0].start
	for _, c := range first {
		horizon = minTimeOf(horizon, c.start)
	}
	slices.SortStableFunc(rest, func(a, b chunk) int { return a.start.Compare(b.start) })
	elapsed := float64(overhead)
	for _, c := range append(first, rest...) {
		elapsed += float64(c.requests)
		late := elapsed/perMinute - c.start.Sub(horizon).Minutes() // minutes of c expired when it is fetched
		if late <= 0 || c.minutes <= 0 {
			continue
		}
		late = min(late, c.minutes)
		risk := int(math.Round(float64(c.records) * late / c.minutes))
		if risk == 0 {
			continue
		}
		v := &d.Targets[c.target]
		if v.AtRisk == nil {
			v.AtRisk = &ExpiryRisk{}
		}
		v.AtRisk.Minutes = math.Round((v.AtRisk.Minutes+late)*10) / 10
		v.AtRisk.Records += risk
		e.AtRisk += risk
	}
	if e.AtRisk > 0 {
		d.Advice = append(d.Advice, fmt.Sprintf("about %d records would expire before the first backfill reaches them at %.0f requests/minute: "+
			"ask TAPD for a higher quota and raise tapd.requests_per_minute to it, or sync fewer streams (all:ID instead of projects:ID)", e.AtRisk, perMinute))
	}
}

func minTimeOf(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// alternatives counts, for each projects:ID entry, what all:ID would cost
// instead (one count per month of the company-wide query, and of the
// company-level logs when that query leaves them out).
func (s *Syncer) alternatives(ctx context.Context, d *Diagnosis, to time.Time) {
	for _, w := range s.o.Workspaces {
		if !w.ExpandProjects {
			continue
		}
		was := 0
		for _, v := range d.Targets {
			if keyIn(d.Entries, w.Key, v.Target) {
				was += v.Requests
			}
		}
		wide := []Target{{Key: "all:" + w.ID, WorkspaceID: w.ID}}
		if d.CompanyWide == nil || d.CompanyWide.Includes != "yes" {
			wide = append(wide, Target{Key: "company:" + w.ID, WorkspaceID: w.ID, CompanyOnly: true})
		}
		cost := 0
	streams:
		for _, t := range wide {
			for _, v := range d.Targets { // configured too: counted already
				if v.Target == t.Key && v.Error == "" {
					cost += v.Requests
					continue streams
				}
			}
			r := s.doctorRun(t, d.Horizon.Oldest, to)
			var months []MonthVolume
			for _, m := range splitByMonth(Interval{Start: d.Horizon.Oldest, End: to}, s.loc) {
				p, err := r.page(ctx, m, 1, 1, true)
				if err != nil {
					return
				}
				months = append(months, MonthVolume{Start: m.Start, End: m.End, Records: p.TotalItems})
			}
			cost += s.backfillRequests(months)
		}
		d.Alternatives = append(d.Alternatives, Alternative{Instead: w.Key, Use: "all:" + w.ID, Requests: cost, Was: was})
		if cost < was {
			d.Advice = append(d.Advice, fmt.Sprintf("all:%s instead of %s: one company-wide stream, about %d backfill requests instead of %d, "+
				"and one request per poll instead of one per project", w.ID, w.Key, cost, was))
		}
	}
}

// describe says what a fatal TAPD error means for a sync.
func describe(err error, what string) string {
	switch {
	case errors.Is(err, tapd.ErrNotFound):
		return what + " not found at TAPD (404): " + err.Error()
	case errors.Is(err, tapd.ErrAuth):
		return "TAPD refused access: " + err.Error()
	}
	return err.Error()
}

func companyWideConfigured(ws []config.Workspace, t Target) bool {
	for _, w := range ws {
		if w.CompanyWide && w.Key == t.Configured {
			return true
		}
	}
	return false
}

func keysOfEntry(targets []Target, entry string) []string {
	out := []string{}
	for _, t := range targets {
		if t.Configured == entry {
			out = append(out, t.Key)
		}
	}
	return out
}

func keyIn(entries []EntryCheck, entry, key string) bool {
	for _, e := range entries {
		if e.Entry == entry {
			for _, k := range e.Targets {
				if k == key {
					return true
				}
			}
		}
	}
	return false
}

// dedupe keeps the first target of each key, as Targets does.
func dedupe(ts []Target) []Target {
	seen := map[string]bool{}
	out := ts[:0]
	for _, t := range ts {
		if !seen[t.Key] {
			seen[t.Key] = true
			out = append(out, t)
		}
	}
	return out
}
