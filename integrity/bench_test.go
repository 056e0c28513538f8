package integrity

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
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

// peakHeap runs fn and samples the heap meanwhile. live is the most heap
// found live by a collection (what fn keeps); inuse the most heap in use
// including garbage not yet collected, which depends on how much CPU the
// collector gets. Both are above the heap in use before fn started.
func peakHeap(fn func()) (live, inuse uint64) {
	runtime.GC()
	debug.FreeOSMemory()
	samples := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(samples)
	base := samples[0].Value.Uint64()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			metrics.Read(samples)
			if v := samples[0].Value.Uint64(); v > base {
				live = max(live, v-base)
			}
			if v := samples[1].Value.Uint64(); v > base {
				inuse = max(inuse, v-base)
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
	return live, inuse
}

// BenchmarkVerify verifies full bundles of 100k and 1M events, reporting
// throughput and memory, which must not grow with the number of events.
// Each verification runs in a child process (TestVerifyChild), so that the
// memory of writing the bundle does not blur what verifying takes: the
// child reports its heap growth (live and in use) and its peak RSS (Linux's
// VmHWM).
//
//	go test -run '^$' -bench Verify -benchtime 3x ./integrity/
func BenchmarkVerify(b *testing.B) {
	for _, n := range []int64{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			path, vkey := writeBenchBundle(b, n)
			st, _ := os.Stat(path)
			var live, heap, rss int64
			for b.Loop() {
				cmd := exec.Command(os.Args[0], "-test.run=^TestVerifyChild$", "-test.count=1", "-test.v")
				cmd.Env = append(os.Environ(), "INTEGRITY_VERIFY_BUNDLE="+path, "INTEGRITY_VERIFY_KEY="+vkey)
				out, err := cmd.CombinedOutput()
				m := childPeak.FindSubmatch(out)
				if err != nil || m == nil {
					b.Fatalf("child: %v\n%s", err, out)
				}
				l, _ := strconv.ParseInt(string(m[1]), 10, 64)
				h, _ := strconv.ParseInt(string(m[2]), 10, 64)
				r, _ := strconv.ParseInt(string(m[3]), 10, 64)
				live, heap, rss = max(live, l), max(heap, h), max(rss, r)
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(live)/(1<<20), "live-heap-MiB")
			b.ReportMetric(float64(heap)/(1<<20), "peak-heap-MiB")
			if rss > 0 {
				b.ReportMetric(float64(rss)/(1<<10), "peak-RSS-MiB")
			}
			b.ReportMetric(float64(st.Size())/float64(n), "bundle-B/event")
		})
	}
}

var childPeak = regexp.MustCompile(`live-heap-bytes (\d+) peak-heap-bytes (\d+) peak-rss-kib (\d+)`)

// TestVerifyChild is BenchmarkVerify's child process; it skips otherwise.
func TestVerifyChild(t *testing.T) {
	path := os.Getenv("INTEGRITY_VERIFY_BUNDLE")
	if path == "" {
		t.Skip("only run by BenchmarkVerify")
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	live, peak := peakHeap(func() {
		if _, err := Verify(bufio.NewReaderSize(f, 1<<20), os.Getenv("INTEGRITY_VERIFY_KEY"), nil); err != nil {
			t.Fatal(err)
		}
	})
	// The kernel's own peak for this process; 0 where there is no /proc.
	var rss int64
	if status, err := os.ReadFile("/proc/self/status"); err == nil {
		if m := regexp.MustCompile(`VmHWM:\s+(\d+) kB`).FindSubmatch(status); m != nil {
			rss, _ = strconv.ParseInt(string(m[1]), 10, 64)
		}
	}
	fmt.Printf("live-heap-bytes %d peak-heap-bytes %d peak-rss-kib %d\n", live, peak, rss)
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
