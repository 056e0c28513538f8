package tapdtest

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"
)

// Fault is a kind of failure the fake can inject.
type Fault string

// The faults TAPD is seen to produce.
const (
	Fault500       Fault = "500"        // JSON error envelope, HTTP 500
	Fault502HTML   Fault = "502-html"   // an nginx-style HTML page, HTTP 502
	Fault503       Fault = "503"        // HTTP 503 with a plain body
	FaultTruncated Fault = "truncated"  // HTTP 200 with the JSON cut in half
	FaultReset     Fault = "reset"      // the connection is closed without an answer
	FaultRateLimit Fault = "rate-limit" // HTTP 429 with TAPD's body
	// FaultPenalty is a 429 sent during the penalty that follows a 429
	// (SetPenalty): the same body, told apart for counting.
	FaultPenalty Fault = "penalty"
)

// AllFaults are the random faults SetFaults can mix (429 has its own knobs).
var AllFaults = []Fault{Fault500, Fault502HTML, Fault503, FaultTruncated, FaultReset}

type faults struct {
	rate  float64
	kinds []Fault

	latency time.Duration

	limitMax        int
	limitPer        time.Duration
	limitRetryAfter bool
	hits            []time.Time

	next            []Fault
	stormRetryAfter bool

	arrivals   int
	arrivalLag time.Duration

	penalty      time.Duration // SetPenalty
	penaltyUntil time.Time     // on the fake's clock

	quotaLimit  int           // SetQuotaHeaders: requests per window, 0 off
	quotaWindow time.Duration // on the fake's clock
	quotaReset  bool          // send X-RateLimit-Reset
	quotaStart  time.Time     // the current window's start
	quotaCount  int           // requests in it

	rules  []failRule // persistent faults on activity-log requests
	ruleID int
}

// failRule fails every activity-log request that when matches.
type failRule struct {
	id    int
	when  func(url.Values) bool
	fault Fault
}

// SetFaults makes a share (0..1) of requests fail with a random one of kinds
// (AllFaults when none are given).
func (s *Server) SetFaults(rate float64, kinds ...Fault) {
	if len(kinds) == 0 {
		kinds = AllFaults
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.rate, s.faults.kinds = rate, kinds
}

// SetLatency delays every answer by d (slow responses).
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.latency = d
}

// SetRateLimit answers 429 once more than max requests arrive within per
// (real time); retryAfter adds a Retry-After header, which TAPD usually omits.
// max <= 0 turns the limit off.
func (s *Server) SetRateLimit(max int, per time.Duration, retryAfter bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.limitMax, s.faults.limitPer, s.faults.limitRetryAfter = max, per, retryAfter
	s.faults.hits = nil
}

// SetPenalty makes every 429 the fake sends (from any knob) start a penalty
// of d on the fake's clock: TAPD then refuses every request of the account,
// token requests included, with 429 (Fault FaultPenalty in Requests) until
// d has passed. Requests during the penalty do not lengthen it. DevLake's
// maintainers report that TAPD penalises for half an hour or more; tests
// use minutes on a clock they move. d <= 0 turns it off.
func (s *Server) SetPenalty(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.penalty = d
	if d <= 0 {
		s.faults.penaltyUntil = time.Time{}
	}
}

// SetQuotaHeaders enforces a quota of limit requests per fixed window (on
// the fake's clock, counted from the first request) and sends
// X-RateLimit-Limit and X-RateLimit-Remaining on every answer, as TAPD was
// seen to; with reset, X-RateLimit-Reset too (seconds to the window's end),
// which TAPD was not seen to send. A request beyond the limit is a 429.
// limit <= 0 turns it off.
func (s *Server) SetQuotaHeaders(limit int, window time.Duration, reset bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.quotaLimit, s.faults.quotaWindow, s.faults.quotaReset = limit, window, reset
	s.faults.quotaStart, s.faults.quotaCount = time.Time{}, 0
}

// rateHeadersLocked sets the SetQuotaHeaders headers for the request just counted.
func (s *Server) rateHeadersLocked(h http.Header) {
	f := &s.faults
	if f.quotaLimit <= 0 {
		return
	}
	h.Set("X-RateLimit-Limit", strconv.Itoa(f.quotaLimit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(max(0, f.quotaLimit-f.quotaCount)))
	if f.quotaReset {
		left := f.quotaStart.Add(f.quotaWindow).Sub(s.nowLocked())
		h.Set("X-RateLimit-Reset", strconv.Itoa(int(max(0, left.Seconds()))))
	}
}

// RateLimitStorm answers the next n requests with 429.
func (s *Server) RateLimitStorm(n int, retryAfter bool) {
	s.FailNext(FaultRateLimit, n)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.stormRetryAfter = retryAfter
}

// FailNext answers the next n requests with fault f (after faults already queued).
func (s *Server) FailNext(f Fault, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults.next = append(s.faults.next, f)
	}
}

// SetArrivals adds perRequest new records before answering each activity-log
// request, created up to maxLag before now (audit logs show events late), in
// a random project: records arriving while a client pages.
func (s *Server) SetArrivals(perRequest int, maxLag time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.arrivals, s.faults.arrivalLag = perRequest, maxLag
}

// FailWhen makes every activity-log request whose parameters satisfy when
// fail with f, for as long as the rule stands (TAPD failing one window over
// and over); it returns a func that lifts the rule. when sees a copy of the
// query (and form) parameters and is called without the fake's lock held.
func (s *Server) FailWhen(when func(q url.Values) bool, f Fault) (clear func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.ruleID++
	id := s.faults.ruleID
	// A new slice each time: serve reads a snapshot without the lock.
	s.faults.rules = append(slices.Clip(s.faults.rules), failRule{id: id, when: when, fault: f})
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.faults.rules = slices.DeleteFunc(slices.Clone(s.faults.rules), func(r failRule) bool { return r.id == id })
	}
}

// FailWindow makes every activity-log request whose start_time falls in
// [start, end) fail with f until cleared. A request without start_time
// starts at end_time − 7 days, as TAPD defaults it.
func (s *Server) FailWindow(start, end time.Time, f Fault) (clear func()) {
	return s.FailWhen(func(q url.Values) bool {
		from, ok := s.queryStart(q)
		return ok && !from.Before(start) && from.Before(end)
	}, f)
}

// queryStart is the start a query asks for, explicit or defaulted.
func (s *Server) queryStart(q url.Values) (time.Time, bool) {
	if v := q.Get("start_time"); v != "" {
		t, err := time.ParseInLocation(queryLayout, v, Shanghai)
		return t, err == nil
	}
	end := s.Now()
	if v := q.Get("end_time"); v != "" {
		var err error
		if end, err = time.ParseInLocation(queryLayout, v, Shanghai); err != nil {
			return time.Time{}, false
		}
	}
	return end.AddDate(0, 0, -7), true
}

// pickFaultLocked decides a fault that does not depend on the request:
// queued ones first, then the quota. It says whether a 429 carries Retry-After.
func (s *Server) pickFaultLocked() (Fault, bool) {
	f := &s.faults
	now := s.nowLocked()
	if now.Before(f.penaltyUntil) {
		return FaultPenalty, false
	}
	if f.quotaLimit > 0 {
		if f.quotaStart.IsZero() || !now.Before(f.quotaStart.Add(f.quotaWindow)) {
			f.quotaStart, f.quotaCount = now, 0
		}
		f.quotaCount++
		if f.quotaCount > f.quotaLimit {
			return FaultRateLimit, false
		}
	}
	if len(f.next) > 0 {
		next := f.next[0]
		f.next = f.next[1:]
		return next, f.stormRetryAfter
	}
	if f.limitMax > 0 {
		now := time.Now()
		keep := f.hits[:0]
		for _, h := range f.hits {
			if now.Sub(h) < f.limitPer {
				keep = append(keep, h)
			}
		}
		f.hits = keep
		if len(f.hits) >= f.limitMax {
			return FaultRateLimit, f.limitRetryAfter
		}
		f.hits = append(f.hits, now)
	}
	return "", false
}

// ruleFault is the persistent fault for an activity-log request, if any:
// FailPagesAbove first, then the FailWhen rules in the order they were set.
func (s *Server) ruleFault(q url.Values, rules []failRule) Fault {
	if s.opts.FailPagesAbove > 0 && askedLimit(q) > s.opts.FailPagesAbove {
		return Fault500
	}
	for _, r := range rules {
		if r.when(cloneValues(q)) {
			return r.fault
		}
	}
	return ""
}

// randomFaultLocked rolls SetFaults' dice.
func (s *Server) randomFaultLocked() Fault {
	f := &s.faults
	if f.rate > 0 && s.rng.Float64() < f.rate {
		return f.kinds[s.rng.IntN(len(f.kinds))]
	}
	return ""
}

func cloneValues(q url.Values) url.Values {
	out := make(url.Values, len(q))
	for k, v := range q {
		out[k] = slices.Clone(v)
	}
	return out
}

// arriveLocked adds the configured arrivals.
func (s *Server) arriveLocked() {
	f := &s.faults
	now := s.nowLocked()
	for range f.arrivals {
		lag := time.Duration(0)
		if f.arrivalLag > 0 {
			lag = time.Duration(s.rng.Int64N(int64(f.arrivalLag)))
		}
		p := s.projects[s.rng.IntN(len(s.projects))]
		s.appendLocked(newRecord(s.rng, p.ID, p.Name, false, now.Add(-lag)))
	}
}
