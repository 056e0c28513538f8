package tapdtest

import (
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

// pickFaultLocked decides this request's fault ("" for none) and whether a
// 429 carries Retry-After.
func (s *Server) pickFaultLocked() (Fault, bool) {
	f := &s.faults
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
	if f.rate > 0 && s.rng.Float64() < f.rate {
		return f.kinds[s.rng.IntN(len(f.kinds))], false
	}
	return "", false
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
