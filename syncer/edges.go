package syncer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/tapd"
)

// endMinute is what TAPD's end_time means, which TAPD does not document:
// whether end_time hh:mm includes the records of hh:mm:01..59.
type endMinute string

const (
	endUnknown   endMinute = ""
	endInclusive endMinute = "inclusive"
	endExclusive endMinute = "exclusive"
)

// metaEndMinute is the sync_meta key that keeps the learned answer.
const metaEndMinute = "tapd.end_time_minute"

// learnedEndMinute loads what an earlier run learned about end_time.
func (s *Syncer) learnedEndMinute(ctx context.Context) error {
	s.mu.Lock()
	known := s.endMinute != endUnknown
	s.mu.Unlock()
	if known {
		return nil
	}
	v, err := s.o.Store.Meta(ctx, metaEndMinute)
	if err != nil {
		return err
	}
	s.mu.Lock()
	if s.endMinute == endUnknown { // another run may have learned it meanwhile
		s.endMinute = endMinute(v)
	}
	s.mu.Unlock()
	return nil
}

// discoverEndMinute learns end_time's meaning at the start of a run when
// nobody knows it yet, so that even the oldest month-end windows of a first
// backfill are judged right: one request for the target's newest records
// gives a record to probe with.
func (r *runState) discoverEndMinute(ctx context.Context) error {
	if r.s.endMinuteKnown() {
		return nil
	}
	month := r.to.In(r.s.loc)
	w := Interval{Start: maxTime(time.Date(month.Year(), month.Month(), 1, 0, 0, 0, 0, r.s.loc), r.horizon), End: r.to}
	if !w.Start.Before(w.End) {
		return nil
	}
	p, err := r.page(ctx, w, 1, 50, true)
	if errors.Is(err, tapd.ErrBaseURL) {
		return err // not TAPD's API: nothing else is worth a request
	}
	if err != nil {
		r.log.Warn("looking for a record to learn TAPD's end_time semantics failed; trying later", "err", err)
		return nil
	}
	for i, rec := range p.Records {
		if rec.Created.Second() > 0 {
			r.candidate = &p.Records[i]
			break
		}
	}
	_, err = r.s.endMinuteMode(ctx, r)
	return err
}

func (s *Syncer) endMinuteKnown() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.endMinute != endUnknown
}

// endMinuteMode returns what end_time means, probing TAPD once when nobody
// knows yet: ask for the one minute of a record seen in this run whose
// created time has seconds > 0, with start_time = end_time = that minute.
// An inclusive end_time returns the record; an exclusive one cannot.
func (s *Syncer) endMinuteMode(ctx context.Context, r *runState) (endMinute, error) {
	s.probeMu.Lock() // one probe at a time: the others wait for its answer
	defer s.probeMu.Unlock()
	s.mu.Lock()
	mode := s.endMinute
	s.mu.Unlock()
	if mode != endUnknown || r.candidate == nil {
		return mode, nil
	}
	c := *r.candidate
	minute := c.Created.Truncate(time.Minute)
	// A small page is enough for one minute, and TAPD is seen to fail on
	// large ones: halve it while TAPD fails.
	var p tapd.Page
	var err error
	for limit := min(s.o.PageSize, 50); ; limit /= 2 {
		p, err = s.o.TAPD.MemberActivityLog(ctx, tapd.Query{WorkspaceID: r.t.WorkspaceID, CompanyOnly: r.t.CompanyOnly,
			Limit: limit, Page: 1, Start: minute, End: minute})
		r.mu.Lock()
		r.run.Requests++
		r.mu.Unlock()
		if err == nil || limit/2 < minPageSize || !(errors.Is(err, tapd.ErrServer) || errors.Is(err, tapd.ErrMalformed)) {
			break
		}
	}
	switch {
	case errors.Is(err, tapd.ErrParam):
		mode = endExclusive // an empty start = end span is refused: the minute is not in it
	case err != nil:
		r.log.Warn("probing TAPD's end_time semantics failed; trying again later", "err", err)
		return endUnknown, nil
	case slices.ContainsFunc(p.Records, func(x tapd.Record) bool { return x.ID == c.ID }):
		mode = endInclusive
	case p.TotalItems == 0:
		mode = endExclusive
	default:
		r.log.Warn("probing TAPD's end_time semantics was inconclusive; trying again later", "record", c.ID, "total", p.TotalItems)
		return endUnknown, nil
	}
	if err := s.o.Store.SetMeta(ctx, metaEndMinute, string(mode)); err != nil {
		return endUnknown, err
	}
	s.mu.Lock()
	s.endMinute = mode
	s.mu.Unlock()
	r.log.Info("learned what TAPD's end_time means", "end_time_minute", string(mode), "probe_record", c.ID)
	if mode == endExclusive {
		r.log.Warn("TAPD's end_time excludes its minute: the last minute of each month cannot be fetched " +
			"(a query may not cross months); those minutes are listed as gaps in sync status")
	}
	return mode, nil
}

// settle re-counts at TAPD the recently closed windows that ended within
// sync.settle, at most every sync.settle_check: audit records can appear
// hours after their created time, later than the overlap reaches. A span
// where TAPD now holds more records than the target reported is returned to
// be fetched again. Each month costs one limit=1 request. A failing count is
// a warning, tried again on the next run.
func (r *runState) settle(ctx context.Context, state storage.SyncState, before time.Time) []Interval {
	o := r.s.o
	now := o.Now()
	r.s.mu.Lock()
	mode := r.s.endMinute
	r.s.mu.Unlock()
	if !state.Synced() || now.Sub(state.SettledAt) < o.SettleCheck || mode == endUnknown {
		return nil
	}
	span := Interval{Start: r.settleFrom(state), End: before}
	if !span.Start.Before(span.End) {
		return nil
	}
	var refetch []Interval
	var months []storage.SettleMonth
	remote, stored := 0, 0
	for _, m := range splitByMonth(span, r.s.loc) {
		p, err := r.page(ctx, m, 1, 1, true)
		if err != nil {
			r.log.Warn("settle check failed; tried again on the next run", "window", r.fmtWindow(m), "err", err)
			return refetch
		}
		end := r.countedEnd(m)
		n, err := o.Store.CountReported(ctx, r.t.Key, m.Start, end)
		if err != nil {
			r.log.Warn("settle check failed; tried again on the next run", "err", err)
			return refetch
		}
		remote, stored = remote+p.TotalItems, stored+n
		months = append(months, storage.SettleMonth{Month: r.s.monthOf(m.Start), Span: Interval{Start: m.Start, End: end},
			Remote: int64(p.TotalItems), Reported: int64(n)})
		if p.TotalItems > n {
			r.log.Info("TAPD holds records that appeared late; fetching the window again", "window", r.fmtWindow(m),
				"remote_total", p.TotalItems, "reported", n)
			refetch = append(refetch, m)
			if r.prior == nil {
				r.prior = map[Interval]int{}
			}
			r.prior[m] = n
		}
	}
	if err := o.Store.RecordSettle(ctx, r.t.Key, now, remote, stored); err != nil {
		r.log.Warn("recording the settle check failed", "err", err)
	}
	if err := o.Store.RecordSettleMonths(ctx, r.t.Key, now, months); err != nil {
		r.log.Warn("recording the settle check's months failed", "err", err)
	}
	r.log.Debug("settle check", "span", r.fmtWindow(span), "remote_total", remote, "reported", stored, "refetch", len(refetch))
	return refetch
}

// settleFrom is where the settle span starts: sync.settle ago, but not
// before TAPD's horizon or the target's first window.
func (r *runState) settleFrom(state storage.SyncState) time.Time {
	return maxTime(maxTime(r.s.o.Now().Add(-r.s.o.Settle), r.horizon), state.Origin).Truncate(time.Minute)
}

// metaCompanyWide keeps whether TAPD's company-wide query (workspace_id =
// the company id) also returns company-level logs, which TAPD does not say:
// "yes", "no", or "unknown since T" (T RFC3339, by the syncer's clock) when
// the last probe could not tell.
const metaCompanyWide = "tapd.company_wide_includes_company_level"

// companyWideRetry is how long an inconclusive probe is remembered: polls
// in between fetch the company-level logs as their own stream without
// probing again.
const companyWideRetry = 24 * time.Hour

const companyWideUnknown = "unknown since "

// CompanyWide is what is known of TAPD's company-wide query: Includes is
// "yes", "no" or "" (unknown), Since when it was learned (or last probed).
type CompanyWide struct {
	Includes string    `json:"includes_company_level"`
	Since    time.Time `json:"since,omitzero"`
}

// learnedCompanyWide reads the stored answer; an unknown one is returned
// with the time of its probe.
func (s *Syncer) learnedCompanyWide(ctx context.Context) (CompanyWide, error) {
	v, err := s.o.Store.Meta(ctx, metaCompanyWide)
	if err != nil {
		return CompanyWide{}, err
	}
	if at, ok := strings.CutPrefix(v, companyWideUnknown); ok {
		t, _ := time.Parse(time.RFC3339, at) // unreadable: probed long ago
		return CompanyWide{Since: t}, nil
	}
	return CompanyWide{Includes: v}, nil
}

// companyWideIncludesCompanyLevel answers from what was learned before, or
// probes (see probeCompanyWide). When nothing can be learned the answer is
// false, which is safe: the company-level logs are then fetched as their own
// stream; the inconclusive probe is remembered for a day.
func (s *Syncer) companyWideIncludesCompanyLevel(ctx context.Context, companyID string) (bool, error) {
	cw, err := s.CompanyWide(ctx, companyID)
	return cw.Includes == "yes", err
}

// CompanyWide returns what is known of whether TAPD's company-wide query
// includes company-level logs, probing through companyID when it is not
// known and not probed inconclusively within a day. The answer is stored
// where every later run reads it.
func (s *Syncer) CompanyWide(ctx context.Context, companyID string) (CompanyWide, error) {
	now := s.o.Now()
	switch cw, err := s.learnedCompanyWide(ctx); {
	case err != nil:
		return CompanyWide{}, err
	case cw.Includes != "", now.Sub(cw.Since) < companyWideRetry:
		return cw, nil
	}
	includes, err := s.probeCompanyWide(ctx, companyID, now)
	if err != nil {
		return CompanyWide{}, err
	}
	value := includes
	if includes == "" {
		value = companyWideUnknown + now.UTC().Format(time.RFC3339)
		s.log.Info("could not learn whether TAPD's company-wide query includes company-level logs; fetching them separately, asking again in a day",
			"company", companyID)
	} else {
		s.log.Info("learned whether TAPD's company-wide query includes company-level logs", "company", companyID, "includes", includes)
	}
	if err := s.o.Store.SetMeta(ctx, metaCompanyWide, value); err != nil {
		return CompanyWide{}, err
	}
	return CompanyWide{Includes: includes, Since: now}, nil
}

// probeCompanyWide finds the newest company-level record of the whole half
// year (company_only=1, limit 1, one month at a time from the newest, so a
// quiet start of a month is not taken for "none") and asks the company-wide
// query for its minute: "yes" or "no", or "" when there is no company-level
// record at all or the minute is too busy to tell.
func (s *Syncer) probeCompanyWide(ctx context.Context, companyID string, now time.Time) (string, error) {
	now = now.Truncate(time.Minute)
	months := splitByMonth(Interval{Start: s.horizonAt(now).Truncate(time.Minute), End: now}, s.loc)
	var rec *tapd.Record
	for i := len(months) - 1; i >= 0 && rec == nil; i-- {
		m := months[i]
		end := m.End
		if s.monthStart(end) || i == len(months)-1 { // stay inside the month, and in closed minutes
			end = end.Add(-time.Minute)
		}
		p, err := s.o.TAPD.MemberActivityLog(ctx, tapd.Query{WorkspaceID: companyID, CompanyOnly: true, Limit: 1, Page: 1,
			Start: m.Start, End: end})
		if err != nil {
			return "", fmt.Errorf("looking for a company-level record of company %s: %w", companyID, err)
		}
		if len(p.Records) > 0 {
			rec = &p.Records[0]
		}
	}
	if rec == nil {
		return "", nil
	}
	start, end := rec.Created.Truncate(time.Minute), rec.Created.Truncate(time.Minute).Add(time.Minute)
	if s.monthStart(end) { // stay inside the record's month whatever end_time means
		start, end = start.Add(-time.Minute), start
	}
	wide, err := s.o.TAPD.MemberActivityLog(ctx, tapd.Query{WorkspaceID: companyID, Limit: tapd.MaxLimit, Page: 1, Start: start, End: end})
	if err != nil {
		return "", fmt.Errorf("asking company %s's company-wide query for a company-level record: %w", companyID, err)
	}
	found := slices.ContainsFunc(wide.Records, func(x tapd.Record) bool { return x.ID == rec.ID })
	switch {
	case found:
		return "yes", nil
	case wide.TotalItems > len(wide.Records):
		return "", nil // too busy a minute to tell
	}
	return "no", nil
}
