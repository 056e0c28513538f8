package main

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
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
	fmt.Fprintln(b.out, "API = HTTP round trip to the real handler, answered from the daily counts (whole days) plus index range counts of the partial days at the edges; raw = `SELECT COUNT(*)` of the same question on the same pool. API p50 over 31 iterations, every query's before any raw scan, after a `CHECKPOINT`; raw p50 over 9 (3 at 30M). Since/until: 2024-03-10 13:17 to 2025-06-02 08:05 UTC (not on day boundaries).")
	fmt.Fprintln(b.out)
	since := time.Date(2024, 3, 10, 13, 17, 0, 0, time.UTC)
	until := time.Date(2025, 6, 2, 8, 5, 0, 0, time.UTC)
	window := "&since=" + fmt.Sprint(since.Unix()) + "&until=" + fmt.Sprint(until.Unix())
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
	}
	p50At := map[string][]time.Duration{}
	var rows [][]string
	sizes := []int{1_000_000, 10_000_000, 30_000_000}
	var disk []string
	for _, base := range sizes {
		n := b.n(base)
		start := time.Now()
		st, _, closeStore, err := b.generate(ctx, n)
		if err != nil {
			return err
		}
		genTook := time.Since(start)
		var bytes int64
		if err := st.DB().GetContext(ctx, &bytes, `SELECT pg_total_relation_size('activity_log')`); err != nil {
			closeStore()
			return err
		}
		disk = append(disk, fmt.Sprintf("%d rows: %.0f MiB on disk (table + indexes), %.0f MiB per million records", n,
			float64(bytes)/(1<<20), float64(bytes)/(1<<20)/(float64(n)/1e6)))
		srv := httptest.NewServer(api.New(api.Options{Store: st, Logger: b.log}).Handler())
		// Every API count first, on a settled database (no checkpoint of the
		// load pending), then the raw scans, whose reads would disturb them.
		apiP50 := make([]time.Duration, len(qs))
		err = settle(ctx, st)
		for i, q := range qs {
			if err != nil {
				break
			}
			var l latencies
			l, err = measure(countIters, func() error { return httpGet(ctx, srv.URL+"/api/v1/activity_log/count?"+q.path) })
			apiP50[i] = l.p50
		}
		if err != nil {
			srv.Close()
			closeStore()
			return fmt.Errorf("counts at %d rows: %w", n, err)
		}
		for i, q := range qs {
			rawIters := 9
			if n >= 20_000_000 {
				rawIters = 3
			}
			var fast, raw int64
			rawLat, err := measure(rawIters, func() error { var err error; raw, err = st.CountByScan(ctx, q.f); return err })
			if err != nil {
				srv.Close()
				closeStore()
				return err
			}
			if fast, err = st.CountActivities(ctx, q.f); err != nil || fast != raw {
				srv.Close()
				closeStore()
				return fmt.Errorf("%s: daily counts say %d, COUNT(*) %d (%v)", q.name, fast, raw, err)
			}
			p50At[q.name] = append(p50At[q.name], apiP50[i])
			rows = append(rows, []string{fmt.Sprint(n), q.name, ms(apiP50[i]), ms(rawLat.p50),
				ratio(float64(apiP50[i]), float64(rawLat.p50)), "≤ 20 ms", passFail(apiP50[i] <= 20*time.Millisecond)})
		}
		srv.Close()
		closeStore()
		fmt.Fprintf(os.Stderr, "bench: counts at %d rows (generated and counted in %s)\n", n, genTook.Round(time.Second))
	}
	b.table([]string{"rows", "query", "API p50", "raw COUNT(*) p50", "API / raw", "target", "result"}, rows)
	var growth [][]string
	for _, q := range qs {
		l := p50At[q.name]
		g := float64(l[len(l)-1]) / float64(l[0])
		growth = append(growth, []string{q.name, ms(l[0]), ms(l[len(l)-1]), fmt.Sprintf("%.2f", g), "≤ 1.5×", passFail(g <= 1.5)})
	}
	b.table([]string{"query", fmt.Sprintf("p50 at %d", b.n(sizes[0])), fmt.Sprintf("p50 at %d", b.n(sizes[len(sizes)-1])), "growth", "target", "result"}, growth)
	for _, d := range disk {
		fmt.Fprintln(b.out, "- "+d)
	}
	fmt.Fprintln(b.out)
	return nil
}
