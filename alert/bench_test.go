package alert_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/alert"
	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
)

// benchRecords are n recent records (within the rules' ignore_older_than,
// so every rule really evaluates them) of 200 users, 50 IPs and the four
// TAPD actions, some at night: what a sync stores.
func benchRecords(n, offset int) []storage.Activity {
	actions := []string{"add", "download", "upload", "delete"}
	out := make([]storage.Activity, n)
	base := time.Now().Add(-2 * time.Hour)
	for i := range out {
		out[i] = storage.Activity{Platform: "tapd", Serial: fmt.Sprint(20001 + i%5), ActionType: actions[i%4],
			ActionDetail: "需求: story", Username: fmt.Sprintf("user%03d", i%200), Timestamp: base.Add(time.Duration(i) * 300 * time.Millisecond).UTC(),
			Source: storage.SourceTAPD, SourceID: fmt.Sprint(offset + i), WorkspaceID: "20001",
			Extra: map[string]string{"ip": fmt.Sprintf("10.0.%d.%d", i%7, i%50), "operate_object": "需求", "operate_object_key": "story",
				"title": fmt.Sprintf("story %d", i), "ua": "Mozilla/5.0", "url": "https://www.tapd.cn/20001/prong/stories/view/1"}}
	}
	return out
}

func defaultRules(suffix string) []config.AlertRule {
	a := config.Alerts{Defaults: config.AlertDefaults{Enabled: true, Notify: []string{"ops"}}}
	rules := a.EffectiveRules()
	for i := range rules {
		rules[i].Name += suffix // a new name: a fresh cursor and state, from the log's start
	}
	return rules
}

// BenchmarkEvaluate: the default rules evaluating a log of 20 000 record
// events, against a cursor that only reads them (what every log consumer
// pays anyway). ns/op is per pass over the whole log; events/s says how
// fast a rule engine keeps up.
func BenchmarkEvaluate(b *testing.B) {
	const n = 20000
	for _, dialect := range storagetest.Dialects {
		st := storagetest.Open(b, storagetest.URL(b, dialect))
		ctx := context.Background()
		for i := 0; i < n; i += 500 {
			if _, err := st.UpsertMirrored(ctx, benchRecords(500, i)[:min(500, n-i)]); err != nil {
				b.Fatal(err)
			}
		}
		head, err := st.Head(ctx)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(dialect+"/read-only", func(b *testing.B) {
			for b.Loop() {
				for from := int64(0); from < head.Size; from += 1000 {
					if _, err := st.ReadEvents(ctx, from, min(from+1000, head.Size)); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(head.Size)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
		b.Run(dialect+"/default-rules", func(b *testing.B) {
			i := 0
			for b.Loop() {
				i++
				e, err := alert.New(alert.Options{Store: st, Rules: defaultRules(fmt.Sprint("-", dialect, i)), Location: shanghai,
					Logger: slog.New(slog.DiscardHandler)})
				if err != nil {
					b.Fatal(err)
				}
				if err := e.CatchUp(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(head.Size)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkIngest: the sync's write path (batches of 200 records, a TAPD
// page) with and without the default rules running beside it, as serve
// runs them. records/s is the ingest rate; the engine's lag after the last
// batch is reported too (it must be small, or the comparison flatters it).
func BenchmarkIngest(b *testing.B) {
	const n, page = 10000, 200
	for _, dialect := range storagetest.Dialects {
		for _, withRules := range []bool{false, true} {
			name := dialect + "/without-rules"
			if withRules {
				name = dialect + "/default-rules"
			}
			b.Run(name, func(b *testing.B) {
				ctx := context.Background()
				var lagSum time.Duration
				var ingest time.Duration
				offset := 0
				for b.Loop() {
					b.StopTimer()
					st := storagetest.Open(b, storagetest.URL(b, dialect))
					runCtx, cancel := context.WithCancel(ctx)
					done := make(chan struct{})
					var e *alert.Engine
					if withRules {
						var err error
						e, err = alert.New(alert.Options{Store: st, Rules: defaultRules(""), Location: shanghai,
							Logger: slog.New(slog.DiscardHandler)}) // serve's settings: poll 1s, batches of 1000
						if err != nil {
							b.Fatal(err)
						}
						go func() { defer close(done); e.Run(runCtx) }()
					} else {
						close(done)
					}
					recs := benchRecords(n, offset)
					offset += n
					b.StartTimer()
					start := time.Now()
					for i := 0; i < n; i += page {
						if _, err := st.UpsertMirrored(ctx, recs[i:i+page]); err != nil {
							b.Fatal(err)
						}
					}
					ingest += time.Since(start)
					b.StopTimer()
					cancel()
					<-done
					if withRules {
						caught := time.Now()
						if err := e.CatchUp(ctx); err != nil { // what the running engine had left
							b.Fatal(err)
						}
						lagSum += time.Since(caught)
					}
					b.StartTimer()
				}
				b.ReportMetric(float64(n)*float64(b.N)/ingest.Seconds(), "records/s")
				if withRules {
					b.ReportMetric(float64(lagSum.Milliseconds())/float64(b.N), "lag-ms")
				}
			})
		}
	}
}
