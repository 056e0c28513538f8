package alert_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"syscall"
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

// processCPU is this process's user and system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// passes names each pass's rules afresh (a new cursor from index 0).
var passes atomic.Int64

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
			for b.Loop() {
				e, err := alert.New(alert.Options{Store: st, Rules: defaultRules(fmt.Sprint("-", passes.Add(1))), Location: shanghai,
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
// page) without and with the default rules running beside it as serve
// runs them (poll 1s, steps of up to 5000 events). Each iteration ingests into
// two fresh databases, one of each, in alternating order, so the machine's
// drift hits both alike; ratio is the ingest rate with the rules over the
// rate without. lag-ms is what the engine still had to evaluate after the
// last batch (small, or the comparison would flatter it).
func BenchmarkIngest(b *testing.B) {
	const n, page = 10000, 200
	for _, dialect := range storagetest.Dialects {
		b.Run(dialect, func(b *testing.B) {
			ctx := context.Background()
			var took, cpu [2]time.Duration // without, with
			var lag time.Duration
			offset, iter := 0, 0
			run := func(withRules bool) {
				st := storagetest.Open(b, storagetest.URL(b, dialect))
				runCtx, cancel := context.WithCancel(ctx)
				done := make(chan struct{})
				var e *alert.Engine
				if withRules {
					var err error
					if e, err = alert.New(alert.Options{Store: st, Rules: defaultRules(""), Location: shanghai,
						Logger: slog.New(slog.DiscardHandler)}); err != nil {
						b.Fatal(err)
					}
					go func() { defer close(done); e.Run(runCtx) }()
				} else {
					close(done)
				}
				recs := benchRecords(n, offset)
				offset += n
				start, cpu0 := time.Now(), processCPU()
				for i := 0; i < n; i += page {
					if _, err := st.UpsertMirrored(ctx, recs[i:i+page]); err != nil {
						b.Fatal(err)
					}
				}
				k := 0
				if withRules {
					k = 1
				}
				took[k] += time.Since(start)
				cancel()
				<-done
				cpu[k] += processCPU() - cpu0 // the engine's share of the ingest included
				if withRules {
					caught := time.Now()
					if err := e.CatchUp(ctx); err != nil { // what the running engine had left
						b.Fatal(err)
					}
					lag += time.Since(caught)
				}
				st.Close()
			}
			for b.Loop() {
				iter++
				first := iter%2 == 0
				run(first)
				run(!first)
			}
			b.ReportMetric(float64(n*iter)/took[0].Seconds(), "records/s-without")
			b.ReportMetric(float64(n*iter)/took[1].Seconds(), "records/s-with")
			b.ReportMetric(took[0].Seconds()/took[1].Seconds(), "ratio")
			b.ReportMetric(float64(lag.Milliseconds())/float64(iter), "lag-ms")
			// This process's CPU (ingest, the engine, and SQLite itself;
			// not PostgreSQL's server): steadier than wall time on a shared
			// machine.
			b.ReportMetric(cpu[0].Seconds()/cpu[1].Seconds(), "cpu-ratio")
		})
	}
}
