package storage_test

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
)

// BenchmarkUpsertLog upserts batches of 2000 new mirrored records (a sync
// writer's transaction) with and without the integrity log, on each
// database: what the log costs per record, away from the sync's other work.
//
//	go test -run '^$' -bench UpsertLog -benchtime 20x ./storage/
func BenchmarkUpsertLog(b *testing.B) {
	for _, dialect := range storagetest.Dialects {
		for _, logged := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/log=%v", dialect, logged), func(b *testing.B) {
				s := storagetest.Open(b, storagetest.URL(b, dialect))
				if !logged {
					s.WithoutIntegrityLog()
				}
				ctx := context.Background()
				n := 0
				batch := make([]storage.Activity, 2000)
				cpu0 := cpuSeconds()
				for b.Loop() {
					for i := range batch {
						n++
						batch[i] = mirrored(fmt.Sprint(9000000+n), t0.Add(time.Duration(n)*time.Second), fmt.Sprint("title ", n))
						batch[i].Extra = map[string]string{"ip": "10.0.0.1", "ua": "Mozilla/5.0 (X11; Linux x86_64)", "url": "https://www.tapd.cn/10074561/prong/iterations/view/1110074561001000123",
							"project_name": "项目", "operate_object": "迭代", "action": "add", "title": fmt.Sprint("title ", n)}
					}
					if _, err := s.UpsertReread(ctx, batch); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n)/1000, "µs/record")
				// CPU of this process (all of SQLite's work; the client side of
				// PostgreSQL's): far steadier than wall time on a shared machine.
				b.ReportMetric((cpuSeconds()-cpu0)*1e6/float64(n), "cpu-µs/record")
			})
		}
	}
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru) //nolint:errcheck // RUSAGE_SELF cannot fail
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}
