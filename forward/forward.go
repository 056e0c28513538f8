// Package forward delivers the integrity log's events to the destinations
// of config forward: (README "Forwarding"). Each destination is a cursor
// over the log's index (storage.ForwardCursor), moved only after the
// destination acknowledged a batch: at-least-once, in log order, each event
// carrying its index so a duplicate is recognisable. The log is the buffer:
// a destination that is down only falls behind, it never slows the sync.
package forward

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/storage"
)

// destination is one kind's delivery: nil from Deliver is the ack.
type destination interface {
	Deliver(ctx context.Context, b Batch) error
	Close() error
}

// idler is a destination with work to do while no events come (file: close
// by age).
type idler interface{ Idle() error }

// Options configure a Forwarder.
type Options struct {
	Store        *storage.Store
	Destinations []config.Forward
	Logger       *slog.Logger
	Now          func() time.Time // nil: time.Now
	Version      string           // the binary's, named in CEF headers
	// Poll is how often a caught-up destination looks for new events
	// (default 1s). Backoff bounds the wait between failed deliveries
	// (default 1s doubling up to 5m).
	Poll                   time.Duration
	BackoffMin, BackoffMax time.Duration
}

// Forwarder runs every destination.
type Forwarder struct {
	o         Options
	runners   []*runner
	delivered *prometheus.CounterVec
	failures  *prometheus.CounterVec
	lag       *prometheus.Desc
	lagSecs   *prometheus.Desc
	shared    sharedReads
	lines     sharedLines
}

// runner is one destination's loop and status.
type runner struct {
	f    *Forwarder
	cfg  config.Forward
	dest destination
	log  *slog.Logger

	mu     sync.Mutex
	cur    storage.ForwardCursor
	head   int64 // the log's size when last looked at
	failed bool  // marked failing (dead_after passed)
	// oldest is when the event at the cursor happened (zero: none waits),
	// for lag in seconds.
	oldest time.Time
	// refusal is the last refusal logged at ERROR, so each is logged once.
	refusal string
	// ahead is the next batch being read while the current one is
	// delivered (nil: none); savedAt is when the cursor was last saved,
	// dirty that it moved since. Only the run goroutine touches them.
	ahead   *readAhead
	savedAt time.Time
	dirty   bool
}

// readAhead is a read of events [from, to) under way.
type readAhead struct {
	from, to int64
	done     chan struct{}
	logged   []storage.LoggedEvent
	err      error
}

// read returns events [next, to) — or fewer, [next, ahead's end), when a
// read ahead already holds them — and starts reading the batch after them.
func (r *runner) read(ctx context.Context, next, to, head int64) ([]storage.LoggedEvent, error) {
	var logged []storage.LoggedEvent
	var err error
	if a := r.ahead; a != nil && a.from == next {
		<-a.done
		logged, err = a.logged, a.err
	} else {
		if a != nil {
			<-a.done // a replay moved the cursor: that read is of no use
		}
		logged, err = r.f.shared.read(ctx, r.f.o.Store, next, to)
	}
	r.ahead = nil
	if err != nil || len(logged) == 0 {
		return logged, err
	}
	if end := logged[len(logged)-1].Index + 1; end < head {
		a := &readAhead{from: end, to: r.batchEnd(end, head), done: make(chan struct{})}
		go func() {
			defer close(a.done)
			a.logged, a.err = r.f.shared.read(ctx, r.f.o.Store, a.from, a.to)
		}()
		r.ahead = a
	}
	return logged, nil
}

// batchEnd is where the batch from next ends: the next multiple of
// batch_size, so that destinations keeping up share reads, or the log's end.
func (r *runner) batchEnd(next, head int64) int64 {
	bs := int64(r.cfg.BatchSize)
	return min((next/bs+1)*bs, head)
}

// Status is a destination's state (GET /api/v1/forward).
type Status struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
	// Cursor is the next index to deliver: every event before it was acknowledged.
	Cursor    int64 `json:"cursor"`
	LagEvents int64 `json:"lag_events"`
	// LagSeconds is the age of the oldest event not yet acknowledged (0
	// when caught up).
	LagSeconds   float64    `json:"lag_seconds"`
	LastSuccess  *time.Time `json:"last_success"`
	LastError    string     `json:"last_error"`
	FailingSince *time.Time `json:"failing_since"` // the current run of failures began
	Failing      bool       `json:"failing"`       // failures for longer than dead_after
}

// New builds the destinations; it opens nothing remote.
func New(o Options) (*Forwarder, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Version == "" {
		o.Version = "dev"
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.BackoffMin <= 0 {
		o.BackoffMin = time.Second
	}
	if o.BackoffMax < o.BackoffMin {
		o.BackoffMax = max(5*time.Minute, o.BackoffMin)
	}
	fw := &Forwarder{o: o,
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tapdmirror_forward_delivered_total",
			Help: "Events acknowledged by each forwarding destination (a batch sent again counts again)."}, []string{"destination"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tapdmirror_forward_failures_total",
			Help: "Failed deliveries to each forwarding destination (each is retried with backoff)."}, []string{"destination"}),
		lag: prometheus.NewDesc("tapdmirror_forward_lag_events",
			"Integrity log events not yet acknowledged by each forwarding destination.", []string{"destination"}, nil),
		lagSecs: prometheus.NewDesc("tapdmirror_forward_lag_seconds",
			"Age of the oldest integrity log event not yet acknowledged by each forwarding destination (0 when caught up).", []string{"destination"}, nil),
	}
	for _, c := range o.Destinations {
		c = c.WithDefaults()
		d, err := newDestination(c, o.Now, o.Version, false)
		if err != nil {
			return nil, err
		}
		fw.delivered.WithLabelValues(c.Name) // present at 0, so alerts on rate() see the destination
		fw.failures.WithLabelValues(c.Name)
		fw.runners = append(fw.runners, &runner{f: fw, cfg: c, dest: d, log: o.Logger.With("destination", c.Name, "kind", c.Kind)})
	}
	return fw, nil
}

// newDestination builds c's delivery (c with its defaults filled); alerts:
// for a forward notifier's alert batches (AlertSender), which the file
// kind keeps apart from the log's batches.
func newDestination(c config.Forward, now func() time.Time, version string, alerts bool) (destination, error) {
	switch c.Kind {
	case config.ForwardWebhook:
		return newWebhook(c), nil
	case config.ForwardSplunkHEC:
		return newHEC(c, now), nil
	case config.ForwardSyslog:
		d, err := newSyslog(c, now, version)
		if err != nil { // not d: a nil *syslogDest would be a non-nil destination
			return nil, err
		}
		return d, nil
	case config.ForwardFile:
		d, err := newFile(c, now, alerts)
		if err != nil {
			return nil, err
		}
		return d, nil
	}
	return nil, fmt.Errorf("forward destination %s: %q is not a destination kind", c.Name, c.Kind)
}

// Run delivers to every destination, one goroutine each, until ctx ends.
func (fw *Forwarder) Run(ctx context.Context) {
	if len(fw.runners) > 0 {
		fw.o.Store.KeepRecentEvents(storage.RecentEvents) // destinations keeping up read from memory
	}
	var wg sync.WaitGroup
	for _, r := range fw.runners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.run(ctx)
		}()
	}
	wg.Wait()
}

// Status is every destination's state; lag is measured against the log's
// size now.
func (fw *Forwarder) Status(ctx context.Context) ([]Status, error) {
	head, err := fw.o.Store.Head(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the integrity log's size: %w", err)
	}
	out := make([]Status, 0, len(fw.runners))
	now := fw.o.Now()
	for _, r := range fw.runners {
		r.mu.Lock()
		r.head = max(r.head, head.Size)
		s := r.status(now)
		r.mu.Unlock()
		out = append(out, s)
	}
	return out, nil
}

// Names are the configured destinations' names, in config order.
func (fw *Forwarder) Names() []string {
	var out []string
	for _, r := range fw.runners {
		out = append(out, r.cfg.Name)
	}
	return out
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// lagSeconds needs r.mu.
func (r *runner) lagSeconds(now time.Time) float64 {
	if r.oldest.IsZero() || r.cur.Next >= r.head {
		return 0
	}
	return max(now.Sub(r.oldest).Seconds(), 0)
}

// status needs r.mu.
func (r *runner) status(now time.Time) Status {
	return Status{Name: r.cfg.Name, Kind: r.cfg.Kind, Cursor: r.cur.Next, LagEvents: max(r.head-r.cur.Next, 0),
		LagSeconds: r.lagSeconds(now), LastSuccess: timePtr(r.cur.LastSuccess), LastError: r.cur.LastError, FailingSince: timePtr(r.cur.FailingSince), Failing: r.failed}
}

// Collectors are the forwarding metrics, for the process's registry.
func (fw *Forwarder) Collectors() []prometheus.Collector {
	return []prometheus.Collector{fw.delivered, fw.failures, lagCollector{fw}}
}

type lagCollector struct{ fw *Forwarder }

func (c lagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.fw.lag; ch <- c.fw.lagSecs }

func (c lagCollector) Collect(ch chan<- prometheus.Metric) {
	now := c.fw.o.Now()
	for _, r := range c.fw.runners {
		r.mu.Lock()
		lag, secs := max(r.head-r.cur.Next, 0), r.lagSeconds(now)
		r.mu.Unlock()
		ch <- prometheus.MustNewConstMetric(c.fw.lag, prometheus.GaugeValue, float64(lag), r.cfg.Name)
		ch <- prometheus.MustNewConstMetric(c.fw.lagSecs, prometheus.GaugeValue, secs, r.cfg.Name)
	}
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

func (r *runner) run(ctx context.Context) {
	defer func() {
		if r.ahead != nil {
			<-r.ahead.done
		}
		if r.dirty {
			r.mu.Lock()
			cur := r.cur
			r.mu.Unlock()
			r.save(ctx, cur)
		}
		if err := r.dest.Close(); err != nil {
			r.log.Warn("closing forward destination", "err", err)
		}
	}()
	// The cursor is read until it can be: without it nothing is sent.
	for wait := r.f.o.BackoffMin; ; wait = min(2*wait, r.f.o.BackoffMax) {
		cur, err := r.f.o.Store.ForwardCursor(ctx, r.cfg.Name)
		if err == nil {
			r.mu.Lock()
			r.cur = cur
			r.failed = !cur.FailingSince.IsZero() && r.f.o.Now().Sub(cur.FailingSince) >= r.cfg.DeadAfter.Duration
			r.mu.Unlock()
			break
		}
		r.log.Warn("reading forward cursor", "err", err)
		if !sleep(ctx, wait) {
			return
		}
	}
	r.log.Info("forwarding", "from_index", r.cur.Next)
	wait := r.f.o.BackoffMin
	for ctx.Err() == nil {
		delivered, err := r.step(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			r.failure(ctx, err)
			if !sleep(ctx, wait) {
				return
			}
			wait = min(2*wait, r.f.o.BackoffMax)
		case delivered:
			wait = r.f.o.BackoffMin
		default: // caught up
			if i, ok := r.dest.(idler); ok {
				if err := i.Idle(); err != nil {
					r.log.Warn("forward destination idle work", "err", err)
				}
			}
			r.mu.Lock()
			head := r.head
			r.mu.Unlock()
			// Until a part of the recent events kept in memory is new, or
			// poll: a busy sync is read in full batches, from memory.
			if !r.f.o.Store.WaitForEvents(ctx, head+storage.RecentEvents/4, r.f.o.Poll) {
				return
			}
		}
	}
}

// step delivers the next batch; it reports false with no error when there
// was nothing to deliver.
func (r *runner) step(ctx context.Context) (bool, error) {
	if err := r.takeReplay(ctx); err != nil {
		return false, err
	}
	head, err := r.f.o.Store.Head(ctx)
	if err != nil {
		return false, fmt.Errorf("reading the integrity log's size: %w", err)
	}
	r.mu.Lock()
	r.head = head.Size
	next := r.cur.Next
	if next >= head.Size {
		r.oldest = time.Time{}
	}
	r.mu.Unlock()
	if next >= head.Size {
		return false, nil
	}
	to := r.batchEnd(next, head.Size)
	logged, err := r.read(ctx, next, to, head.Size)
	if err != nil {
		return false, err
	}
	if len(logged) > 0 {
		to = logged[len(logged)-1].Index + 1 // a read ahead may hold fewer
	}
	if len(logged) == 0 || int64(len(logged)) != to-next || logged[0].Index != next || logged[len(logged)-1].Index != to-1 {
		return false, fmt.Errorf("the integrity log has no event at %d..%d (run tapd-mirror verify --database)", next, to-1)
	}
	if e := logged[0].Event; e != nil {
		r.mu.Lock()
		r.oldest = e.When()
		r.mu.Unlock()
	}
	var events []Event
	for _, le := range logged {
		if e := toEvent(le); matches(r.cfg.Filter, e) {
			events = append(events, e)
		}
	}
	if len(events) > 0 {
		if err := r.attachCheckpoint(ctx, events); err != nil {
			return false, err
		}
		b := newBatch(events, &r.f.lines)
		if err := r.dest.Deliver(ctx, b); err != nil {
			return false, err
		}
		r.f.delivered.WithLabelValues(r.cfg.Name).Add(float64(b.Count))
	}
	// Acknowledged (or filtered out): the cursor moves past the whole range.
	r.mu.Lock()
	wasFailing := r.failed
	r.cur.Next, r.cur.LastSuccess, r.cur.LastError, r.cur.FailingSince, r.failed = to, r.f.o.Now().UTC(), "", time.Time{}, false
	r.refusal = ""
	cur := r.cur
	r.mu.Unlock()
	if wasFailing {
		r.log.Info("forward destination recovered", "cursor", to)
	}
	// While a backlog drains, the cursor is saved at most every
	// saveEvery: a crash resends what was acknowledged since (duplicates,
	// recognisable by index), and the sync's writes do not queue behind a
	// cursor write per batch. Caught up, it is saved at once.
	if to == head.Size || r.f.o.Now().Sub(r.savedAt) >= saveEvery {
		r.save(ctx, cur)
	} else {
		r.dirty = true
	}
	return true, nil
}

// saveEvery bounds how often a draining destination saves its cursor.
const saveEvery = time.Second

// save records cur, the ack being in: even when shutdown began meanwhile.
func (r *runner) save(ctx context.Context, cur storage.ForwardCursor) {
	save, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := r.f.o.Store.SaveForwardCursor(save, cur); err != nil {
		// Delivered but not recorded: a restart sends the batch again, which
		// at-least-once allows.
		r.log.Warn("saving forward cursor", "err", err)
		return
	}
	r.savedAt, r.dirty = r.f.o.Now(), false
}

// failure records a failed delivery; past dead_after the destination is
// marked failing, logged at ERROR once.
func (r *runner) failure(ctx context.Context, err error) {
	r.f.failures.WithLabelValues(r.cfg.Name).Inc()
	now := r.f.o.Now().UTC()
	r.mu.Lock()
	if r.cur.FailingSince.IsZero() {
		r.cur.FailingSince = now
	}
	r.cur.LastError = err.Error()
	markNow := !r.failed && now.Sub(r.cur.FailingSince) >= r.cfg.DeadAfter.Duration
	r.failed = r.failed || markNow
	var ref *RefusedError
	newRefusal := errors.As(err, &ref) && r.refusal != err.Error()
	if newRefusal {
		r.refusal = err.Error()
	}
	cur, lag := r.cur, max(r.head-r.cur.Next, 0)
	r.mu.Unlock()
	switch {
	case newRefusal:
		r.log.Error("forward destination refuses the events: fix its configuration; they wait at the cursor and are retried", "cursor", cur.Next, "lag_events", lag, "err", err)
	case markNow:
		r.log.Error("forward destination failing: deliveries have failed since "+cur.FailingSince.Format(time.RFC3339)+
			" (dead_after "+r.cfg.DeadAfter.String()+"); it resumes from its cursor when it answers", "cursor", cur.Next, "lag_events", lag, "err", err)
	default:
		r.log.Warn("forward delivery failed; retrying", "cursor", cur.Next, "lag_events", lag, "err", err)
	}
	r.save(ctx, cur)
}

// RefusedError is a receiver's answer that retrying cannot change (a
// token refused, an index that does not exist): the events stay at the
// cursor and are retried with backoff like any failure, since skipping them
// would lose them, but it is logged at ERROR at once.
type RefusedError struct{ Err error }

func (e *RefusedError) Error() string { return e.Err.Error() }
func (e *RefusedError) Unwrap() error { return e.Err }

// attachCheckpoint gives each event the latest signed checkpoint covering
// it, if one does yet.
func (r *runner) attachCheckpoint(ctx context.Context, events []Event) error {
	cp, err := r.f.o.Store.LatestCheckpoint(ctx)
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	ref := &Checkpoint{Size: cp.Size, Root: cp.Root.String()}
	for i := range events {
		if cp.Size > events[i].Index {
			events[i].Checkpoint = ref
		}
	}
	return nil
}

// takeReplay moves the cursor back when a replay asked for it (POST
// /api/v1/forward/{name}/replay or tapd-mirror forward replay, maybe from
// another process: the request is a row in the database).
func (r *runner) takeReplay(ctx context.Context) error {
	from, ok, err := r.f.o.Store.TakeForwardReplay(ctx, r.cfg.Name)
	if err != nil || !ok {
		return err
	}
	r.mu.Lock()
	r.cur.Next = from
	r.mu.Unlock()
	r.log.Info("forward replay: resending from the requested index", "from_index", from)
	return nil
}
