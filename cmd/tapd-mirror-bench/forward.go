package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tapd-mirror/tapd-mirror/alert"
	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/forward"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/syncer"
	"github.com/tapd-mirror/tapd-mirror/tapd/tapdtest"
)

// forwardRounds is how many times each side of the ingest ratio is measured.
const forwardRounds = 2

// sinks are in-process receivers, one per kind, that do a receiver's
// minimum work: read every byte, check the webhook's signature, split
// syslog frames, answer HEC's success.
type sinks struct {
	webhook, hec *httptest.Server
	syslog       net.Listener
	events       atomic.Int64
	wg           sync.WaitGroup
}

func newSinks() (*sinks, error) {
	s := &sinks{}
	s.webhook = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Header.Get(forward.SignatureHeader) != forward.Sign([]byte("bench-secret"), body) {
			w.WriteHeader(http.StatusUnauthorized)
		}
	}))
	s.hec = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, `{"text":"Success","code":0}`)
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.syslog = ln
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReaderSize(c, 1<<20)
				for {
					n, err := br.ReadString(' ')
					if err != nil {
						return
					}
					size, err := strconv.Atoi(n[:len(n)-1])
					if err != nil {
						return
					}
					if _, err := br.Discard(size); err != nil {
						return
					}
				}
			}()
		}
	}()
	return s, nil
}

func (s *sinks) close() {
	s.webhook.Close()
	s.hec.Close()
	s.syslog.Close()
	s.wg.Wait()
}

// destinations are the bench's destinations of each kind, named with
// suffix so that each measurement starts a fresh cursor at index 0.
func (s *sinks) destinations(dir, suffix string) map[string]config.Forward {
	return map[string]config.Forward{
		"webhook":      {Name: "webhook" + suffix, Kind: config.ForwardWebhook, URL: s.webhook.URL, Secret: "bench-secret"},
		"webhook gzip": {Name: "webhookgz" + suffix, Kind: config.ForwardWebhook, URL: s.webhook.URL, Secret: "bench-secret", Gzip: true},
		"splunk_hec":   {Name: "hec" + suffix, Kind: config.ForwardSplunkHEC, URL: s.hec.URL, Token: "t"},
		"syslog json":  {Name: "syslog" + suffix, Kind: config.ForwardSyslog, Address: s.syslog.Addr().String()},
		"syslog cef":   {Name: "syslogcef" + suffix, Kind: config.ForwardSyslog, Address: s.syslog.Addr().String(), Format: "cef"},
		"file":         {Name: "file" + suffix, Kind: config.ForwardFile, Path: filepath.Join(dir, "file"+suffix)},
		"file ocsf":    {Name: "fileocsf" + suffix, Kind: config.ForwardFile, Path: filepath.Join(dir, "fileocsf"+suffix), Format: "ocsf"},
	}
}

// The sides of the ingest ratio: no consumer of the log; two destinations
// and the default rules as shipped; the same with the rules evaluating
// every record.
const (
	sideNone        = "none"
	sideShipped     = "shipped"
	sideEveryRecord = "every-record"
)

var consumerSides = []string{sideNone, sideShipped, sideEveryRecord}

// defaultAlerts are the shipped rules, enabled, sending to the webhook
// receiver. As shipped they skip records older than a day
// (ignore_older_than), which is most of a first backfill; everyRecord
// widens that to a year, so they evaluate (and fire on) every record.
func (s *sinks) defaultAlerts(everyRecord bool) *config.Alerts {
	a := &config.Alerts{Defaults: config.AlertDefaults{Enabled: true, Notify: []string{"ops"}},
		Notifiers: []config.Notifier{{Name: "ops", Kind: config.NotifierWebhook, URL: s.webhook.URL, Secret: "bench-secret"}}}
	if everyRecord {
		for _, r := range config.DefaultAlertRules() {
			r.IgnoreOlderThan = &config.Duration{Duration: 365 * 24 * time.Hour}
			r.Notify = []string{"ops"}
			a.Rules = append(a.Rules, r) // configured rules replace the defaults of the same name
		}
	}
	return a
}

var forwardKinds = []string{"webhook", "webhook gzip", "splunk_hec", "syslog json", "syslog cef", "file", "file ocsf"}

// forwardBench: the sync's ingest rate with and without two destinations
// (webhook and syslog, or -forward-config's) delivering while it ingests,
// the lag p99 meanwhile, and each kind's delivery throughput over the
// logged store afterwards.
func (b *bench) forwardBench(ctx context.Context) error {
	n := b.n(200_000)
	fake := newFake(n)
	defer fake.Close()
	sk, err := newSinks()
	if err != nil {
		return err
	}
	defer sk.close()
	var ingestRows, pacedRows, lagRows, throughputRows [][]string
	paced := newFake(b.n(40_000))
	defer paced.Close()
	paced.SetLatency(tapdPace)
	for _, dialect := range []string{config.Postgres, config.SQLite} {
		row, err := b.pacedIngest(ctx, dialect, paced, sk)
		if err != nil {
			return err
		}
		pacedRows = append(pacedRows, row)
		best, lags, logged, closeLogged, err := b.sideRates(ctx, dialect, "forward", fake, sk, consumerSides)
		if err != nil {
			return err
		}
		ingestRows = append(ingestRows,
			[]string{dialect, "two destinations and the default rules", fmt.Sprintf("%.0f", best[sideNone]), fmt.Sprintf("%.0f", best[sideShipped]),
				ratio(best[sideShipped], best[sideNone]), "≥ 0.90", passFail(best[sideShipped] >= 0.9*best[sideNone])},
			[]string{dialect, "the same, rules evaluating every backfilled record", fmt.Sprintf("%.0f", best[sideNone]), fmt.Sprintf("%.0f", best[sideEveryRecord]),
				ratio(best[sideEveryRecord], best[sideNone]), "(stress case)", ""})
		names := make([]string, 0, len(lags))
		for name := range lags {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			l := lags[name]
			slices.Sort(l)
			p99 := l[min(len(l)-1, len(l)*99/100)]
			lagRows = append(lagRows, []string{dialect, name, fmt.Sprint(len(l)), fmt.Sprintf("%.2f s", l[len(l)/2].Seconds()),
				fmt.Sprintf("%.2f s", p99.Seconds()), fmt.Sprintf("%.2f s", l[len(l)-1].Seconds()), "≤ 5 s", passFail(p99 <= 5*time.Second)})
		}
		head, err := logged.Head(ctx)
		if err != nil {
			closeLogged()
			return err
		}
		all := sk.destinations(b.tmp, "-tp-"+dialect)
		for _, kind := range forwardKinds {
			took, err := drain(ctx, logged, all[kind], head.Size)
			if err != nil {
				closeLogged()
				return fmt.Errorf("%s: %w", kind, err)
			}
			rate := float64(head.Size) / took.Seconds()
			throughputRows = append(throughputRows, []string{dialect, kind, fmt.Sprint(head.Size), fmt.Sprintf("%.2f s", took.Seconds()),
				fmt.Sprintf("%.0f", rate), fmt.Sprintf("%.0f", best[sideNone]), ratio(rate, best[sideNone]), "≥ 2.00", passFail(rate >= 2*best[sideNone])})
		}
		closeLogged()
	}
	fmt.Fprintf(b.out, "### 13. Forwarding (%d records, loopback fake TAPD, in-process receivers)\n\n", n)
	fmt.Fprintln(b.out, "Sync = `syncer.RunAll --full` into an empty, migrated store, without consumers of the log, and with two destinations delivering "+
		"(webhook and syslog to in-process receivers, or those of -forward-config) and the four default alert rules evaluating while it ingests "+
		"(firings sent to the webhook receiver): as shipped (ignore_older_than 24h, so the half-year backfill is mostly skipped), "+
		"and, as a stress case, with ignore_older_than widened to a year so that every record is evaluated; "+
		"the sides alternate, the best rate of each counting.")
	fmt.Fprintln(b.out)
	b.table([]string{"store", "consumers of the log", "sync rec/s without", "sync rec/s with", "ratio", "target", "result"}, ingestRows)
	fmt.Fprintf(b.out, "The same at TAPD's pace: %d records from a fake TAPD that answers each request after %v (no client-side quota; "+
		"TAPD's default quota of 60 requests a minute would allow one 200-record page a second), two destinations and the default rules as shipped.\n\n",
		b.n(40_000), tapdPace)
	b.table([]string{"store", "sync rec/s without", "sync rec/s with", "ratio", "target", "result"}, pacedRows)
	fmt.Fprintln(b.out, "Lag while the backfill ingests (two destinations and the default rules as shipped): per event, from the first 20 ms sample at which the log holds it to the first at which the destination's cursor is past it (a caught-up destination wakes when 4096 events were committed, or after 1 s; batch 500).")
	fmt.Fprintln(b.out)
	b.table([]string{"store", "destination", "events", "p50", "p99", "max", "target", "result"}, lagRows)
	fmt.Fprintln(b.out, "Delivery throughput: one destination of each kind, from index 0 over the whole logged store, against the sync's ingest rate above (records/s; the log holds at least one event per record).")
	fmt.Fprintln(b.out)
	b.table([]string{"store", "kind", "events", "time", "events/s", "sync rec/s", "ratio", "target", "result"}, throughputRows)
	return nil
}

// ingestForwarding runs the backfill with dests delivering and alerts'
// rules evaluating (nil: none) meanwhile, and returns the ingest rate and,
// per destination, each event's lag.
func (b *bench) ingestForwarding(ctx context.Context, st *storage.Store, fake *tapdtest.Server, dests []config.Forward, alerts *config.Alerts) (float64, map[string][]time.Duration, error) {
	s, _, err := b.syncerFor(st, fake, -1, fake.Projects()[0].ID)
	if err != nil {
		return 0, nil, err
	}
	if err := settle(ctx, st); err != nil {
		return 0, nil, err
	}
	var fw *forward.Forwarder
	stop := func() {}
	type sample struct {
		at      time.Time
		head    int64
		cursors []int64
	}
	var samples []sample
	if alerts != nil {
		e, err := alert.New(alert.Options{Store: st, Rules: alerts.EffectiveRules(), Notifiers: alerts.Notifiers, Logger: b.log})
		if err != nil {
			return 0, nil, err
		}
		actx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); e.Run(actx) }()
		defer func() { cancel(); <-done }()
	}
	if len(dests) > 0 {
		if fw, err = forward.New(forward.Options{Store: st, Destinations: dests, Logger: b.log}); err != nil {
			return 0, nil, err
		}
		fctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); fw.Run(fctx) }()
		go func() { // sample the log's size and the cursors
			defer wg.Done()
			t := time.NewTicker(20 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-fctx.Done():
					return
				case now := <-t.C:
					sts, err := fw.Status(fctx)
					if err != nil {
						continue
					}
					sm := sample{at: now}
					for _, s := range sts {
						sm.cursors = append(sm.cursors, s.Cursor)
						sm.head = max(sm.head, s.Cursor+s.LagEvents)
					}
					samples = append(samples, sm)
				}
			}
		}()
		stop = func() { cancel(); wg.Wait() }
	}
	start := time.Now()
	runs, err := s.RunAll(ctx, syncer.RunOptions{Trigger: syncer.TriggerCLI, Full: true}, "")
	took := time.Since(start)
	if err != nil {
		stop()
		return 0, nil, err
	}
	rate := float64(runs[0].Inserted) / took.Seconds()
	if fw == nil {
		return rate, nil, nil
	}
	// Until every destination caught up, for the lag of the last events.
	head, err := st.Head(ctx)
	if err != nil {
		stop()
		return 0, nil, err
	}
	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(20 * time.Millisecond) {
		sts, err := fw.Status(ctx)
		if err == nil && !slices.ContainsFunc(sts, func(s forward.Status) bool { return s.Cursor < head.Size }) {
			break
		}
		if time.Now().After(deadline) {
			stop()
			return 0, nil, fmt.Errorf("destinations did not catch up: %+v %v", sts, err)
		}
	}
	time.Sleep(40 * time.Millisecond) // a last sample
	stop()
	lags := map[string][]time.Duration{}
	for d, dest := range dests {
		var out []time.Duration
		appendedAt, si := make([]time.Time, 0, head.Size), 0
		for i := int64(0); i < head.Size; i++ {
			for si < len(samples) && samples[si].head <= i {
				si++
			}
			if si == len(samples) {
				break
			}
			appendedAt = append(appendedAt, samples[si].at)
		}
		si = 0
		for i, at := range appendedAt {
			for si < len(samples) && samples[si].cursors[d] <= int64(i) {
				si++
			}
			if si == len(samples) {
				break
			}
			out = append(out, samples[si].at.Sub(at))
		}
		lags[dest.Name] = out
	}
	return rate, lags, nil
}

// tapdPace is how long the paced fake takes to answer a request.
const tapdPace = 100 * time.Millisecond

// pacedIngest is the ingest ratio against a fake TAPD answering at
// tapdPace: the sync waits on TAPD, as it does in production, instead of
// taking both cores from the consumers.
func (b *bench) pacedIngest(ctx context.Context, dialect string, fake *tapdtest.Server, sk *sinks) ([]string, error) {
	best, _, _, closeLogged, err := b.sideRates(ctx, dialect, "paced", fake, sk, []string{sideNone, sideShipped})
	if err != nil {
		return nil, err
	}
	closeLogged()
	return []string{dialect, fmt.Sprintf("%.0f", best[sideNone]), fmt.Sprintf("%.0f", best[sideShipped]),
		ratio(best[sideShipped], best[sideNone]), "≥ 0.90", passFail(best[sideShipped] >= 0.9*best[sideNone])}, nil
}

// sideRates syncs fake into a fresh store of dialect once per side per
// round and returns each side's best ingest rate. Of the last round's
// shipped side it also returns each destination's lags and the store,
// kept open for the throughput runs (closeLogged closes it).
func (b *bench) sideRates(ctx context.Context, dialect, name string, fake *tapdtest.Server, sk *sinks, sides []string) (
	best map[string]float64, lags map[string][]time.Duration, logged *storage.Store, closeLogged func(), err error) {
	best = map[string]float64{}
	for round := range forwardRounds {
		for _, side := range sides {
			st, _, closeStore, err := b.freshStore(ctx, dialect, fmt.Sprintf("%s-%d-%s", name, round, side))
			if err != nil {
				return nil, nil, nil, nil, err
			}
			var dests []config.Forward
			var alerts *config.Alerts
			if side != sideNone {
				dests = b.forwardConfig
				if dests == nil {
					d := sk.destinations(b.tmp, fmt.Sprint("-", dialect, round))
					dests = []config.Forward{d["webhook"], d["syslog json"]}
				}
				alerts = sk.defaultAlerts(side == sideEveryRecord)
			}
			var rate float64
			var l map[string][]time.Duration
			// Labelled, so that -cpuprofile tells each side's CPU apart
			// (go tool pprof -tagfocus consumers=shipped).
			pprof.Do(ctx, pprof.Labels("consumers", side), func(ctx context.Context) {
				rate, l, err = b.ingestForwarding(ctx, st, fake, dests, alerts)
			})
			if err != nil {
				closeStore()
				return nil, nil, nil, nil, err
			}
			best[side] = max(best[side], rate)
			if side == sideShipped && round == forwardRounds-1 {
				lags, logged, closeLogged = l, st, closeStore
			} else {
				closeStore()
			}
		}
	}
	return best, lags, logged, closeLogged, nil
}

// drain delivers the whole log to one fresh destination and times it.
func drain(ctx context.Context, st *storage.Store, dest config.Forward, size int64) (time.Duration, error) {
	fw, err := forward.New(forward.Options{Store: st, Destinations: []config.Forward{dest}})
	if err != nil {
		return 0, err
	}
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	start := time.Now()
	go func() { fw.Run(fctx); close(done) }()
	defer func() { cancel(); <-done }()
	for deadline := time.Now().Add(10 * time.Minute); ; time.Sleep(5 * time.Millisecond) {
		sts, err := fw.Status(ctx)
		if err == nil && sts[0].Cursor >= size {
			return time.Since(start), nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("not delivered in 10 min: %+v %v", sts, err)
		}
	}
}
