package integrity

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"
)

// benchEvent is event i of a generated history, made on demand so that
// writing a bundle of millions of events never holds them all: mostly new
// records, every 10th an update of the record before it, every 1000th a
// deletion.
func benchEvent(i int64) Event {
	at := t0.Add(time.Duration(i) * time.Second)
	switch {
	case i%1000 == 999:
		return DeleteEvent(i, i-1, "admin", at)
	case i%10 == 9:
		r := testRecord(i)
		r.ActionDetail += " (renamed)"
		r.IngestedAt = at
		return UpdateEvent(i-1, r)
	}
	r := testRecord(i + 1)
	r.IngestedAt = at
	return RecordEvent(r)
}

// benchLog builds the hash store of the first n generated events.
func benchLog(b testing.TB, n int64) *MemoryStore {
	st := &MemoryStore{}
	batch := make([]tlog.Hash, 0, 10000)
	for i := int64(0); i < n; i++ {
		enc, err := EncodeEvent(benchEvent(i))
		if err != nil {
			b.Fatal(err)
		}
		batch = append(batch, LeafHash(enc))
		if len(batch) == cap(batch) || i == n-1 {
			if _, err := AppendTo(st, i+1-int64(len(batch)), batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	return st
}

// writeBenchBundle writes a full bundle of n generated events to a file.
func writeBenchBundle(b testing.TB, n int64) (path, vkey string) {
	k := testKey(b, "tapd-mirror.bench")
	st := benchLog(b, n)
	path = filepath.Join(b.TempDir(), fmt.Sprintf("bundle-%d.tar", n))
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	w, err := NewBundleWriter(bw, signAt(b, k, st, n), k.VerifierKey(), BundleOptions{Hashes: st})
	if err != nil {
		b.Fatal(err)
	}
	for i := int64(0); i < n; i++ {
		if err := w.Add(i, benchEvent(i)); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		b.Fatal(err)
	}
	f.Close()
	return path, k.VerifierKey()
}

// peakHeap samples HeapInuse while fn runs and returns the highest value
// above the heap in use before it started.
func peakHeap(fn func()) (peak uint64) {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > base && ms.HeapInuse-base > peak {
				peak = ms.HeapInuse - base
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	fn()
	close(done)
	wg.Wait()
	return peak
}

// BenchmarkVerify verifies full bundles of 100k and 1M events, reporting
// throughput and the peak heap growth during verification, which must not
// grow with the number of events.
//
//	go test -run '^$' -bench Verify -benchtime 3x ./integrity/
func BenchmarkVerify(b *testing.B) {
	for _, n := range []int64{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			path, vkey := writeBenchBundle(b, n)
			st, _ := os.Stat(path)
			b.ResetTimer()
			var peak uint64
			for b.Loop() {
				f, err := os.Open(path)
				if err != nil {
					b.Fatal(err)
				}
				p := peakHeap(func() {
					sum, err := Verify(bufio.NewReaderSize(f, 1<<20), vkey, nil)
					if err != nil || sum.Events != n {
						b.Fatalf("verify: %v (%d events)", err, sum.Events)
					}
				})
				f.Close()
				peak = max(peak, p)
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
			b.ReportMetric(float64(st.Size())/float64(n), "bundle-B/event")
		})
	}
}

// BenchmarkProofSize reports the size of inclusion and consistency proofs,
// which grow with log2 of the tree size, and the time to make one.
//
//	go test -run '^$' -bench ProofSize ./integrity/
func BenchmarkProofSize(b *testing.B) {
	for _, n := range []int64{1_000, 1_000_000} {
		st := &MemoryStore{}
		if _, err := AppendTo(st, 0, leaves(int(n))); err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("size=%d", n), func(b *testing.B) {
			var inc tlog.RecordProof
			var cons tlog.TreeProof
			for b.Loop() {
				var err error
				if inc, err = InclusionProof(n, n/3, st); err != nil {
					b.Fatal(err)
				}
				if cons, err = ConsistencyProof(n, n/2+1, st); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(inc)), "inclusion-hashes")
			b.ReportMetric(float64(len(cons)), "consistency-hashes")
			b.ReportMetric(float64(len(inc)*tlog.HashSize), "inclusion-B")
		})
	}
}

// BenchmarkAppend appends a batch of 200 events (one TAPD page) to a tree
// of a million: what storage computes inside each page's transaction.
//
//	go test -run '^$' -bench Append ./integrity/
func BenchmarkAppend(b *testing.B) {
	const n = 1_000_000
	st := &MemoryStore{}
	if _, err := AppendTo(st, 0, leaves(int(n))); err != nil {
		b.Fatal(err)
	}
	batch := leaves(200)
	for b.Loop() {
		if _, err := Append(n, batch, st); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeEvent(b *testing.B) {
	e := RecordEvent(testRecord(12345))
	for b.Loop() {
		enc, err := EncodeEvent(e)
		if err != nil {
			b.Fatal(err)
		}
		LeafHash(enc)
	}
}
