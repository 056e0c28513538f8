// Package alert evaluates the rules of config alerts: on every record as it
// is stored, mirrored or local, and sends their firings to chat robots
// (WeCom, DingTalk, Feishu), webhooks and forward destinations (README
// "Alerts").
//
// The rule engine is a consumer of the integrity log like a forwarding
// destination: each rule has a cursor over the log's index (alert_cursor),
// and its window state (alert_state) and the firings it produced
// (alert_firing, alert_delivery) are committed in the same transaction
// that moves the cursor. A restart therefore neither loses a firing nor
// repeats one, and the sliding windows survive it. Delivery is a second,
// independent step: a notifier sends what is pending for it, grouping a
// burst into one summary message within its vendor's rate limit, and
// retries with backoff until the message is accepted.
package alert

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/integrity"
	"github.com/tapd-mirror/tapd-mirror/storage"
)

// Options configure an Engine.
type Options struct {
	Store     *storage.Store
	Rules     []config.AlertRule // config.Alerts.EffectiveRules()
	Notifiers []config.Notifier
	// Forward are the forward: destinations a notifier of kind forward
	// names; Version is the binary's (CEF headers).
	Forward []config.Forward
	Version string
	// Location is the zone of the rules' hours and weekdays; Console the
	// zone the console reads times in, for links (nil: Location).
	Location, Console *time.Location
	// ConsoleURL, optional, makes messages link to the console's search.
	ConsoleURL string
	// Language is the messages': "zh" for Chinese, else English.
	Language string
	Logger   *slog.Logger
	Now      func() time.Time // nil: time.Now
	// Poll is how often a caught-up engine or notifier looks for work
	// (default 1s); BatchSize the most log events evaluated per
	// transaction (default 5000); Backoff bounds the wait after a failed
	// step or send (default 1s doubling up to 5m).
	Poll                   time.Duration
	BatchSize              int
	BackoffMin, BackoffMax time.Duration
	Client                 *http.Client // nil: one with a 30s timeout
}

// Engine runs the rules and the notifiers.
type Engine struct {
	o         Options
	rules     []*rule
	notify    map[string][]string // rule → notifiers
	notifiers []*notifier
	loaded    bool // rules' cursors and state read from the store

	mu     sync.Mutex
	head   int64 // the log's size when last looked at
	behind bool  // the last step left events to evaluate
	turn   bool  // serve the rules furthest ahead next (see Step)

	firings  *prometheus.CounterVec
	failures *prometheus.CounterVec
	sent     *prometheus.CounterVec
	lag      *prometheus.Desc
}

// New compiles the rules and builds the notifiers; it opens nothing remote.
func New(o Options) (*Engine, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Location == nil {
		o.Location = time.UTC
	}
	if o.Console == nil {
		o.Console = o.Location
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 5000
	}
	if o.BackoffMin <= 0 {
		o.BackoffMin = time.Second
	}
	if o.BackoffMax < o.BackoffMin {
		o.BackoffMax = max(5*time.Minute, o.BackoffMin)
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 30 * time.Second}
	}
	e := &Engine{o: o, notify: map[string][]string{},
		firings: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tapdmirror_alert_firings_total",
			Help: "Firings of each alert rule (suppressed repeats not counted)."}, []string{"rule"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tapdmirror_alert_notification_failures_total",
			Help: "Failed attempts to send an alert message through each notifier (each is retried with backoff)."}, []string{"notifier"}),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tapdmirror_alert_notifications_total",
			Help: "Alert messages accepted by each notifier (one message may carry a burst of firings)."}, []string{"notifier"}),
		lag: prometheus.NewDesc("tapdmirror_alert_lag_events",
			"Integrity log events not yet evaluated by the slowest alert rule.", nil, nil),
	}
	for _, n := range o.Notifiers {
		nt, err := newNotifier(e, n.WithDefaults())
		if err != nil {
			return nil, err
		}
		e.notifiers = append(e.notifiers, nt)
		e.failures.WithLabelValues(n.Name)
		e.sent.WithLabelValues(n.Name)
	}
	for _, c := range o.Rules {
		r, err := compile(c, o.Location)
		if err != nil {
			return nil, err
		}
		e.rules = append(e.rules, r)
		e.notify[c.Name] = c.Notify
		e.firings.WithLabelValues(c.Name)
	}
	return e, nil
}

// Collectors are the alert metrics, for the process's registry.
func (e *Engine) Collectors() []prometheus.Collector {
	return []prometheus.Collector{e.firings, e.failures, e.sent, lagCollector{e}}
}

type lagCollector struct{ e *Engine }

func (c lagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.e.lag }

func (c lagCollector) Collect(ch chan<- prometheus.Metric) {
	c.e.mu.Lock()
	lag := max(c.e.head-c.e.lowest(), 0)
	c.e.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(c.e.lag, prometheus.GaugeValue, float64(lag))
}

// lowest is the slowest rule's cursor; needs e.mu for a consistent read
// beside the evaluator (which holds it while moving cursors).
func (e *Engine) lowest() int64 {
	low := int64(-1)
	for _, r := range e.rules {
		if low < 0 || r.cursor < low {
			low = r.cursor
		}
	}
	return max(low, 0)
}

// Run evaluates the rules and runs the notifiers until ctx ends.
func (e *Engine) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, n := range e.notifiers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.run(ctx)
		}()
	}
	if len(e.rules) > 0 {
		e.o.Store.KeepRecentEvents(storage.RecentEvents) // rules keeping up read from memory
		e.evaluate(ctx)
	}
	wg.Wait()
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (e *Engine) evaluate(ctx context.Context) {
	wait := e.o.BackoffMin
	for ctx.Err() == nil {
		did, err := e.Step(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			e.o.Logger.Warn("evaluating alert rules; retrying", "err", err)
			if !sleep(ctx, wait) {
				return
			}
			wait = min(2*wait, e.o.BackoffMax)
		case did && e.behind:
			wait = e.o.BackoffMin
		default: // caught up: let new events gather, so a busy sync is read in large steps
			e.mu.Lock()
			head := e.head
			e.mu.Unlock()
			if !e.o.Store.WaitForEvents(ctx, head+int64(e.o.BatchSize), e.o.Poll) {
				return
			}
		}
	}
}

// CatchUp evaluates until every rule has seen the whole log. Step and
// CatchUp are for an engine that is not running (tests, benchmarks).
func (e *Engine) CatchUp(ctx context.Context) error {
	for {
		did, err := e.Step(ctx)
		if err != nil || !did {
			return err
		}
	}
}

func (e *Engine) load(ctx context.Context) error {
	cursors, err := e.o.Store.AlertCursors(ctx)
	if err != nil {
		return err
	}
	for _, r := range e.rules {
		rows, err := e.o.Store.AlertState(ctx, r.cfg.Name)
		if err != nil {
			return err
		}
		r.state, r.dirty = map[string]*keyState{}, map[string]bool{}
		if err := r.load(rows); err != nil {
			return err
		}
		e.mu.Lock()
		r.cursor = cursors[r.cfg.Name] // a new rule starts at the log's first event
		e.mu.Unlock()
	}
	e.loaded = true
	return nil
}

// Step evaluates the next range of the log and commits its firings, state
// and cursors together; false with no error: nothing was left to evaluate.
func (e *Engine) Step(ctx context.Context) (bool, error) {
	if !e.loaded {
		if err := e.load(ctx); err != nil {
			return false, err
		}
	}
	head, err := e.o.Store.Head(ctx)
	if err != nil {
		return false, fmt.Errorf("reading the integrity log's size: %w", err)
	}
	e.mu.Lock()
	e.head = head.Size
	e.mu.Unlock()
	// Rules at different places (one added later reads the history) are
	// served in turn, the one furthest behind and the one furthest ahead,
	// so a new rule's catching up does not hold the others' firings.
	from, ahead := int64(-1), int64(-1)
	for _, r := range e.rules {
		if r.cursor < head.Size {
			if from < 0 || r.cursor < from {
				from = r.cursor
			}
			ahead = max(ahead, r.cursor)
		}
	}
	if from < 0 {
		e.behind = false
		return false, nil
	}
	if e.turn = !e.turn; e.turn {
		from = ahead
	}
	to := min(from+int64(e.o.BatchSize), head.Size)
	active := make([]*rule, 0, len(e.rules))
	for _, r := range e.rules {
		if r.cursor == from {
			active = append(active, r)
		}
	}
	e.behind = to < head.Size || ahead != from
	logged, err := e.o.Store.ReadEvents(ctx, from, to)
	if err != nil {
		return false, err
	}
	if int64(len(logged)) != to-from || logged[0].Index != from || logged[len(logged)-1].Index != to-1 {
		return false, fmt.Errorf("the integrity log has no event at %d..%d (run tapd-mirror verify --database)", from, to-1)
	}
	now := e.o.Now()
	var fired []storage.AlertFiring
	for _, le := range logged {
		// New records only: an update is a new version of a record
		// already evaluated, and purged content is gone.
		if le.Kind != integrity.KindRecord || le.Event == nil || le.Event.Record == nil {
			continue
		}
		for _, r := range active {
			if f, ok := r.evaluate(le.Index, le.Event.Record, now); ok {
				for _, n := range e.notify[r.cfg.Name] {
					f.Deliveries = append(f.Deliveries, storage.AlertDelivery{Notifier: n})
				}
				fired = append(fired, f)
			}
		}
	}
	stored, err := e.commit(ctx, active, fired, to, now)
	if err != nil {
		// The rules' memory holds this range but the store does not: read
		// it again before retrying, so no match is counted twice.
		e.loaded = false
		return false, err
	}
	e.mu.Lock()
	for _, r := range active {
		r.cursor = to
	}
	e.mu.Unlock()
	perRule := map[string]int{}
	for _, f := range stored {
		e.firings.WithLabelValues(f.Rule).Inc()
		perRule[f.Rule]++
		if len(stored) <= 10 { // a burst is one line, not one per firing
			e.o.Logger.Info("alert fired", "rule", f.Rule, "key", f.Key, "count", f.Count, "firing", f.ID,
				"first_record", f.FirstRecordID, "last_record", f.LastRecordID)
		}
	}
	if len(stored) > 10 {
		e.o.Logger.Info("alerts fired", "firings", len(stored), "per_rule", perRule, "first_firing", stored[0].ID,
			"last_firing", stored[len(stored)-1].ID)
	}
	if len(stored) > 0 {
		for _, n := range e.notifiers {
			n.wake()
		}
	}
	return true, nil
}

// commit writes the active rules' changed state, their cursors (moved to
// to) and the firings in one transaction.
func (e *Engine) commit(ctx context.Context, active []*rule, fired []storage.AlertFiring, to int64, now time.Time) ([]storage.AlertFiring, error) {
	c := storage.AlertCommit{Cursors: map[string]int64{}, Firings: fired}
	for _, r := range active {
		rows, err := r.flush(now.Unix())
		if err != nil {
			return nil, err
		}
		c.State = append(c.State, rows...)
		c.Cursors[r.cfg.Name] = to
	}
	return e.o.Store.CommitAlerts(ctx, c)
}

// errRateLimited marks a vendor's "too many messages" answer.
var errRateLimited = errors.New("rate limited")
