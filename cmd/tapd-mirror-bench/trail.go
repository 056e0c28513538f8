package main

import (
	"context"
	"fmt"
	"net/http/httptest"
	"slices"
	"time"

	"github.com/tapd-mirror/tapd-mirror/api"
	"github.com/tapd-mirror/tapd-mirror/config"
)

// trail measures what the access trail costs a reader: the console's
// search page and the API's detail=1 list, each against two servers on the
// same store in the same run — one recording every request (as serve
// does), one without the trail (the baseline) — requests alternating
// between them so that both see the same database and machine.
func (b *bench) trail(ctx context.Context) error {
	fmt.Fprintln(b.out, "### Access trail: readers with and without it")
	fmt.Fprintln(b.out)
	fmt.Fprintln(b.out, "HTTP round trip to the real handler (loopback, an open install), two servers on one store: with the access trail (every request below is an entry and an integrity log event, written after the answer in batches) and without it (the baseline), requests alternating. p50/p99 over the iterations shown; the trail's entries are flushed after each batch of 50 so that the writer's work falls inside the measured period. Target (issue 23): with ≤ 1.1 × without.")
	fmt.Fprintln(b.out)
	for _, dialect := range []string{config.Postgres, config.SQLite} {
		if err := b.trailAt(ctx, dialect, b.n(200_000)); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) trailAt(ctx context.Context, dialect string, n int) error {
	st, shanghai, closeStore, genTook, err := b.consoleStore(ctx, dialect, n)
	if err != nil {
		return err
	}
	defer closeStore()
	with := api.New(api.Options{Store: st, Logger: b.log, Location: shanghai})
	without := api.New(api.Options{Store: st, Logger: b.log, Location: shanghai, WithoutAccessTrail: true})
	defer with.Close()
	defer without.Close()
	on, off := httptest.NewServer(with.Handler()), httptest.NewServer(without.Handler())
	defer on.Close()
	defer off.Close()
	before, _ := st.Head(ctx)
	const iters = 400
	var rows [][]string
	for _, q := range []struct{ name, path string }{
		{"console search, user+action", "/?user=user42&action=download"},
		{"console search, no filter", "/"},
		{"API list detail=1, first 100", "/api/v1/activity_log?detail=1&limit=100"},
		{"API list detail=1&username=, first 100", "/api/v1/activity_log?detail=1&limit=100&username=user42"},
	} {
		lat := map[bool][]time.Duration{}
		for i := range iters + 2 { // the first of each warms up
			for _, trail := range []bool{i%2 == 0, i%2 != 0} {
				base := off.URL
				if trail {
					base = on.URL
				}
				t0 := time.Now()
				if err := httpGet(ctx, base+q.path); err != nil {
					return fmt.Errorf("%s: %w", q.name, err)
				}
				if i >= 2 {
					lat[trail] = append(lat[trail], time.Since(t0))
				}
			}
			if i%50 == 49 {
				if err := with.FlushAccess(ctx); err != nil {
					return err
				}
			}
		}
		w, wo := pct(lat[true]), pct(lat[false])
		rows = append(rows, []string{q.name, ms(w.p50), ms(wo.p50), ms(w.p99), ms(wo.p99),
			ratio(float64(w.p50), float64(wo.p50)), fmt.Sprint(iters), "≤ 1.1", passFail(float64(w.p50) <= 1.1*float64(wo.p50))})
	}
	if err := with.FlushAccess(ctx); err != nil {
		return err
	}
	after, _ := st.Head(ctx)
	fmt.Fprintf(b.out, "**%s, %d rows** (generated in %s; the trail added %d entries and log events)\n\n", dialect, n, genTook.Round(time.Second), after.Size-before.Size)
	b.table([]string{"question", "p50 with trail", "p50 without", "p99 with", "p99 without", "ratio p50", "iterations each", "target", "result"}, rows)
	return nil
}

func pct(d []time.Duration) latencies {
	slices.Sort(d)
	return latencies{p50: d[len(d)/2], p99: d[min(len(d)-1, len(d)*99/100)]}
}
