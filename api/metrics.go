package api

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tapd-mirror/tapd-mirror/storage"
)

// Metrics holds every Prometheus metric of the process. It implements
// syncer.Metrics; TAPDAttempt is the TAPD client's Observe hook.
type Metrics struct {
	reg *prometheus.Registry

	runs          *prometheus.CounterVec
	fetched       *prometheus.CounterVec
	written       *prometheus.CounterVec
	tapdRequests  *prometheus.CounterVec
	tapdRetries   prometheus.Counter
	tapdDuration  prometheus.Histogram
	httpRequests  *prometheus.CounterVec
	httpDurations *prometheus.HistogramVec
	startFailures *prometheus.CounterVec
	authFailures  *prometheus.CounterVec
	afterRun      func(storage.SyncRun) // see AfterRun
}

// WorkspaceGauges are read at scrape time from the database, so they are
// right after a restart and across replicas.
type WorkspaceGauges struct {
	Store      *storage.Store
	Workspaces func() []string      // known workspace keys
	Horizon    func() time.Time     // TAPD's current half-year horizon
	LimitWait  func() time.Duration // time spent waiting for the TAPD rate limiter
	RateLimit  func() float64       // the client-side TAPD limit in use, requests per minute
	QuotaPause func() time.Time     // end of TAPD's quota penalty; zero when none
	// ExpiresIn is how long until a workspace's oldest unfetched minute
	// leaves TAPD's half year (ok false when nothing is left to fetch).
	ExpiresIn func(storage.SyncState) (time.Duration, bool)
	Logger    *slog.Logger
}

// NewMetrics registers the metrics; g may be nil (no per-workspace gauges).
func NewMetrics(g *WorkspaceGauges) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	f := func(c prometheus.Collector) { m.reg.MustRegister(c) }
	m.runs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tapdmirror_sync_runs_total",
		Help: "Sync runs finished, by workspace and outcome (success, partial, failed, canceled, lost_lease)."}, []string{"workspace", "outcome"})
	m.fetched = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tapdmirror_records_fetched_total",
		Help: "Records fetched from TAPD, by workspace (re-reads included)."}, []string{"workspace"})
	m.written = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tapdmirror_records_written_total",
		Help: "Fetched records by what the upsert did: inserted, updated, unchanged, suppressed (tombstoned)."}, []string{"workspace", "result"})
	m.tapdRequests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tapdmirror_tapd_requests_total",
		Help: "HTTP attempts to TAPD by status code (0: network error), retries included."}, []string{"code"})
	m.tapdRetries = prometheus.NewCounter(prometheus.CounterOpts{Name: "tapdmirror_tapd_retries_total",
		Help: "TAPD attempts that were retries of a failed attempt."})
	m.tapdDuration = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tapdmirror_tapd_request_duration_seconds",
		Help: "Time to TAPD's response headers per attempt.", Buckets: prometheus.DefBuckets})
	m.httpRequests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tapdmirror_http_requests_total",
		Help: "API requests by route pattern and status code."}, []string{"route", "code"})
	m.httpDurations = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "tapdmirror_http_request_duration_seconds",
		Help: "API request latency by route pattern.", Buckets: prometheus.DefBuckets}, []string{"route"})
	m.startFailures = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tapdmirror_sync_start_failures_total",
		Help: "Sync runs that could not even start (database down, lease error, project list unavailable), by workspace and stage."},
		[]string{"workspace", "stage"})
	m.authFailures = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tapdmirror_http_auth_failures_total",
		Help: "Refused API authentications by reason: missing, malformed, invalid (no such token), scope (token lacks the scope), throttled."}, []string{"reason"})
	for _, c := range []prometheus.Collector{m.runs, m.fetched, m.written, m.tapdRequests, m.tapdRetries,
		m.tapdDuration, m.httpRequests, m.httpDurations, m.startFailures, m.authFailures,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		f(c)
	}
	if g != nil {
		f(&workspaceCollector{g: g})
		if g.LimitWait != nil {
			f(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "tapdmirror_tapd_rate_limit_wait_seconds_total",
				Help: "Time TAPD calls spent waiting for the client-side rate limiter."},
				func() float64 { return g.LimitWait().Seconds() }))
		}
		f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tapdmirror_replica_lag_seconds",
			Help: "How far the read replica (database_read_url) is behind the primary; 0 without one. Lists, counts and exports are at most this stale."},
			func() float64 {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				lag, err := g.Store.ReplicaLag(ctx)
				if err != nil {
					return -1 // unknown: the replica did not answer
				}
				return lag.Seconds()
			}))
		if g.QuotaPause != nil {
			f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tapdmirror_tapd_quota_paused_until_seconds",
				Help: "Unix time until which TAPD's quota penalty (after a 429) pauses every TAPD request; 0 when not paused."},
				func() float64 {
					if t := g.QuotaPause(); !t.IsZero() {
						return float64(t.Unix())
					}
					return 0
				}))
		}
		if g.RateLimit != nil {
			f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tapdmirror_tapd_rate_limit_per_minute",
				Help: "The client-side TAPD request limit in use: tapd.requests_per_minute, lowered to the rate a 429 from TAPD announces."},
				g.RateLimit))
		}
	}
	return m
}

// Register adds collectors of other parts of the process (forwarding).
func (m *Metrics) Register(cs ...prometheus.Collector) {
	for _, c := range cs {
		m.reg.MustRegister(c)
	}
}

// Handler serves the metrics in Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// TAPDAttempt records one HTTP attempt to TAPD.
func (m *Metrics) TAPDAttempt(status, attempt int, took time.Duration) {
	m.tapdRequests.WithLabelValues(strconv.Itoa(status)).Inc()
	if attempt > 1 {
		m.tapdRetries.Inc()
	}
	m.tapdDuration.Observe(took.Seconds())
}

// RunFinished implements syncer.Metrics.
func (m *Metrics) RunFinished(run storage.SyncRun) {
	m.runs.WithLabelValues(run.Workspace, run.Outcome).Inc()
	if m.afterRun != nil {
		m.afterRun(run)
	}
}

// AfterRun has fn called after every sync run (the checkpointer signs then);
// set it before the syncer starts.
func (m *Metrics) AfterRun(fn func(storage.SyncRun)) { m.afterRun = fn }

// StartFailed implements syncer.Metrics.
func (m *Metrics) StartFailed(workspace, stage string) {
	m.startFailures.WithLabelValues(workspace, stage).Inc()
}

// Records implements syncer.Metrics.
func (m *Metrics) Records(workspace string, fetched int, res storage.UpsertResult) {
	m.fetched.WithLabelValues(workspace).Add(float64(fetched))
	for result, n := range map[string]int{"inserted": res.Inserted, "updated": res.Updated,
		"unchanged": res.Unchanged, "suppressed": res.Suppressed} {
		m.written.WithLabelValues(workspace, result).Add(float64(n))
	}
}

// authFailure counts a refused authentication; m may be nil.
func (m *Metrics) authFailure(reason string) {
	if m != nil {
		m.authFailures.WithLabelValues(reason).Inc()
	}
}

// instrument counts and times API requests by their route pattern.
func (m *Metrics) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &codeRecorder{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(rec, r)
		route := r.Pattern // set by the mux on this request
		if route == "" {
			route = "unmatched"
		}
		m.httpRequests.WithLabelValues(route, strconv.Itoa(rec.code)).Inc()
		m.httpDurations.WithLabelValues(route).Observe(time.Since(start).Seconds())
	})
}

type codeRecorder struct {
	http.ResponseWriter
	code int
}

func (r *codeRecorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}

// Flush keeps streaming responses streaming through the recorder.
func (r *codeRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// workspaceCollector reads per-workspace freshness from the database.
type workspaceCollector struct{ g *WorkspaceGauges }

var (
	descSinceSuccess = prometheus.NewDesc("tapdmirror_workspace_seconds_since_last_success",
		"Seconds since the workspace was last fresh: a run (success or partial) committed its newest window (absent before the first).", []string{"workspace"}, nil)
	descSinceNewest = prometheus.NewDesc("tapdmirror_workspace_seconds_since_newest_record",
		"Seconds since the newest mirrored record's timestamp.", []string{"workspace"}, nil)
	descMirrorOnly = prometheus.NewDesc("tapdmirror_workspace_oldest_mirror_only_record_timestamp_seconds",
		"Timestamp of the oldest record that only the mirror still holds (older than TAPD's half year).", []string{"workspace"}, nil)
	descGaps = prometheus.NewDesc("tapdmirror_workspace_gaps",
		"Spans of TAPD time never verified complete and not acknowledged (see GET /api/v1/sync/status).", []string{"workspace"}, nil)
	descAtRisk = prometheus.NewDesc("tapdmirror_workspace_oldest_unfetched_expiry_seconds",
		"Seconds until the workspace's oldest TAPD minute not yet mirrored leaves TAPD's half year (absent when all is fetched); near 0: records are about to be lost.", []string{"workspace"}, nil)
	descUnreachable = prometheus.NewDesc("tapdmirror_workspace_unreachable_minutes",
		"Minutes TAPD's query rules cannot reach (last minute of a month with an exclusive end_time), listed in sync status.", []string{"workspace"}, nil)
	descBeyond = prometheus.NewDesc("tapdmirror_workspace_records_beyond_horizon",
		"Records the workspace reported that are older than TAPD's half year and still in the archive: only the mirror has them.", []string{"workspace"}, nil)
	descBeyondTotal = prometheus.NewDesc("tapdmirror_records_beyond_horizon",
		"Mirrored records older than TAPD's half year, each once however many workspaces reported it: only the mirror has them.", nil, nil)
)

func (c *workspaceCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSinceSuccess, descSinceNewest, descMirrorOnly, descGaps, descUnreachable, descAtRisk,
		descBeyond, descBeyondTotal} {
		ch <- d
	}
}

func (c *workspaceCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	now := time.Now()
	states, err := c.g.Store.SyncStates(ctx)
	if err != nil {
		if c.g.Logger != nil {
			c.g.Logger.Warn("metrics: reading sync state", "err", err)
		}
		return
	}
	horizon, workspaces := c.g.Horizon(), c.g.Workspaces()
	beyond, err := c.g.Store.ReportedBeyond(ctx, horizon, workspaces)
	if err != nil {
		if c.g.Logger != nil {
			c.g.Logger.Warn("metrics: counting records older than TAPD's horizon", "err", err)
		}
		return
	}
	for _, ws := range workspaces {
		if err := c.collect(ctx, ch, ws, states[ws], beyond[ws], now); err != nil && c.g.Logger != nil {
			c.g.Logger.Warn("metrics: reading workspace state", "workspace", ws, "err", err)
		}
	}
	if total, err := c.g.Store.RecordsBeyond(ctx, horizon); err != nil {
		if c.g.Logger != nil {
			c.g.Logger.Warn("metrics: counting records older than TAPD's horizon", "err", err)
		}
	} else {
		ch <- prometheus.MustNewConstMetric(descBeyondTotal, prometheus.GaugeValue, float64(total.Records))
	}
}

func (c *workspaceCollector) collect(ctx context.Context, ch chan<- prometheus.Metric, ws string, state storage.SyncState,
	beyond storage.Beyond, now time.Time) error {
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, ws)
	}
	if !state.FreshAt.IsZero() {
		gauge(descSinceSuccess, now.Sub(state.FreshAt).Seconds())
	}
	if beyond.Oldest != nil {
		gauge(descMirrorOnly, float64(beyond.Oldest.Unix()))
	}
	gauge(descBeyond, float64(beyond.Records))
	_, newest, err := c.g.Store.WorkspaceSpan(ctx, ws)
	if err != nil {
		return err
	}
	if !newest.IsZero() {
		gauge(descSinceNewest, now.Sub(newest).Seconds())
	}
	open, unreachable := 0, 0
	for _, g := range state.Gaps() {
		switch {
		case g.Reason == storage.ReasonUnreachableMinute:
			unreachable += int(g.End.Sub(g.Start) / time.Minute)
		case !g.Acknowledged:
			open++
		}
	}
	gauge(descGaps, float64(open))
	gauge(descUnreachable, float64(unreachable))
	if c.g.ExpiresIn != nil {
		if d, ok := c.g.ExpiresIn(state); ok {
			gauge(descAtRisk, d.Seconds())
		}
	}
	return nil
}
