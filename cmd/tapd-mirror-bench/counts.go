package main

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"slices"
	"time"

	"github.com/tapd-mirror/tapd-mirror/api"
	"github.com/tapd-mirror/tapd-mirror/storage"
)

// counts measures every contract count at 1M, 10M and 30M rows (scaled)
// through the API, next to raw COUNT(*) of the same question in the same
// run, and what a million records take on disk.
// countIters is how many times each API count is timed: single-digit
// milliseconds need many samples for a steady p50.
const countIters = 31

func (b *bench) counts(ctx context.Context) error {
	fmt.Fprintln(b.out, "### 7. Counts at the scale of years (PostgreSQL)")
	fmt.Fprintln(b.out)
	fmt.Fprintln(b.out, "API = HTTP round trip to the real handler, answered in one statement from the daily counts (whole days), the hourly counts (whole hours of the partial edge days) and index range counts of the partial hours at the edges; raw = `SELECT COUNT(*)` of the same question on the same pool. API p50 over 31 iterations, the three sizes held at once and sampled in turn (one sample of every query at 1M, 10M, 30M, then again), every query's before any raw scan, after a `CHECKPOINT`; raw p50 over 9 (3 at 30M). Since/until: 2024-03-10 13:17 to 2025-06-02 08:05 UTC (not on day boundaries); within a day: 2025-06-01 02:10 to 21:40 UTC.")
	fmt.Fprintln(b.out)
	since := time.Date(2024, 3, 10, 13, 17, 0, 0, time.UTC)
	until := time.Date(2025, 6, 2, 8, 5, 0, 0, time.UTC)
	window := "&since=" + fmt.Sprint(since.Unix()) + "&until=" + fmt.Sprint(until.Unix())
	daySince := time.Date(2025, 6, 1, 2, 10, 0, 0, time.UTC)
	dayUntil := time.Date(2025, 6, 1, 21, 40, 0, 0, time.UTC)
	day := "&since=" + fmt.Sprint(daySince.Unix()) + "&until=" + fmt.Sprint(dayUntil.Unix())
	qs := []struct {
		name, path string
		f          storage.Filter
	}{
		{"count", "", storage.Filter{}},
		{"count platform=tiktok", "platform=tiktok", storage.Filter{Platform: "tiktok"}},
		{"count serial=S7", "serial=S7", storage.Filter{Serial: "S7"}},
		{"count action_type=delete", "action_type=delete", storage.Filter{ActionType: "delete"}},
		{"count source=tapd", "source=tapd", storage.Filter{Source: storage.SourceTAPD}},
		{"count since/until", window[1:], storage.Filter{Since: since, Until: until}},
		{"count platform, serial, action_type, since/until", "platform=tapd&serial=S7&action_type=add" + window,
			storage.Filter{Platform: "tapd", Serial: "S7", ActionType: "add", Since: since, Until: until}},
		{"count since/until within a day", day[1:], storage.Filter{Since: daySince, Until: dayUntil}},
		{"count action_type=delete, since/until within a day", "action_type=delete" + day,
			storage.Filter{ActionType: "delete", Since: daySince, Until: dayUntil}},
	}
	sizes := []int{1_000_000, 10_000_000, 30_000_000}
	type sized struct {
		n     int
		st    *storage.Store
		srv   *httptest.Server
		close func()
	}
	var dbs []sized
	defer func() {
		for _, d := range dbs {
			d.srv.Close()
			d.close()
		}
	}()
	var disk []string
	for _, base := range sizes {
		n := b.n(base)
		start := time.Now()
		st, _, closeStore, err := b.generate(ctx, n)
		if err != nil {
			return err
		}
		dbs = append(dbs, sized{n, st, httptest.NewServer(api.New(api.Options{Store: st, Logger: b.log}).Handler()), closeStore})
		var bytes, countBytes int64
		if err := st.DB().GetContext(ctx, &bytes, `SELECT pg_total_relation_size('activity_log')`); err != nil {
			return err
		}
		if err := st.DB().GetContext(ctx, &countBytes, `SELECT pg_total_relation_size('activity_daily') + pg_total_relation_size('activity_daily_total')
			+ pg_total_relation_size('activity_hourly')`); err != nil {
			return err
		}
		disk = append(disk, fmt.Sprintf("%d rows: %.0f MiB on disk (table + indexes), %.0f MiB per million records; the daily and hourly counts %.1f MiB", n,
			float64(bytes)/(1<<20), float64(bytes)/(1<<20)/(float64(n)/1e6), float64(countBytes)/(1<<20)))
		fmt.Fprintf(os.Stderr, "bench: counts: %d rows generated in %s\n", n, time.Since(start).Round(time.Second))
	}
	// Every API count first, on settled databases (no checkpoint of a load
	// pending), then the raw scans, whose reads would disturb them. The
	// sizes are interleaved sample by sample, so that a slower minute of
	// the machine lands on every size alike and growth compares like with
	// like.
	for _, d := range dbs {
		if err := settle(ctx, d.st); err != nil {
			return err
		}
	}
	samples := make([][][]time.Duration, len(dbs)) // [size][query]
	for i := range samples {
		samples[i] = make([][]time.Duration, len(qs))
	}
	for iter := -1; iter < countIters; iter++ { // -1: one warm-up round, not kept
		for si, d := range dbs {
			for qi, q := range qs {
				start := time.Now()
				if err := httpGet(ctx, d.srv.URL+"/api/v1/activity_log/count?"+q.path); err != nil {
					return fmt.Errorf("%s at %d rows: %w", q.name, d.n, err)
				}
				if iter >= 0 {
					samples[si][qi] = append(samples[si][qi], time.Since(start))
				}
			}
		}
	}
	p50 := func(d []time.Duration) time.Duration {
		d = slices.Clone(d)
		slices.Sort(d)
		return d[len(d)/2]
	}
	var rows [][]string
	for si, d := range dbs {
		for qi, q := range qs {
			rawIters := 9
			if d.n >= 20_000_000 {
				rawIters = 3
			}
			var fast, raw int64
			rawLat, err := measure(rawIters, func() error { var err error; raw, err = d.st.CountByScan(ctx, q.f); return err })
			if err != nil {
				return err
			}
			if fast, err = d.st.CountActivities(ctx, q.f); err != nil || fast != raw {
				return fmt.Errorf("%s: daily counts say %d, COUNT(*) %d (%v)", q.name, fast, raw, err)
			}
			api := p50(samples[si][qi])
			rows = append(rows, []string{fmt.Sprint(d.n), q.name, ms(api), ms(rawLat.p50),
				ratio(float64(api), float64(rawLat.p50)), "≤ 20 ms", passFail(api <= 20*time.Millisecond)})
		}
	}
	b.table([]string{"rows", "query", "API p50", "raw COUNT(*) p50", "API / raw", "target", "result"}, rows)
	var growth [][]string
	for qi, q := range qs {
		first, last := p50(samples[0][qi]), p50(samples[len(dbs)-1][qi])
		g := float64(last) / float64(first)
		growth = append(growth, []string{q.name, ms(first), ms(last), fmt.Sprintf("%.2f", g), "≤ 1.5×", passFail(g <= 1.5)})
	}
	b.table([]string{"query", fmt.Sprintf("p50 at %d", dbs[0].n), fmt.Sprintf("p50 at %d", dbs[len(dbs)-1].n), "growth", "target", "result"}, growth)
	for _, d := range disk {
		fmt.Fprintln(b.out, "- "+d)
	}
	fmt.Fprintln(b.out)
	return nil
}
