package main

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/integrity"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/syncer"
)

// integrityRounds is how many times each of "with" and "without the log"
// is synced per database, alternating; the best rate of each counts (the
// machine is shared and noisy; the best is the least disturbed).
const integrityRounds = 5

// integrityBench measures what the integrity log costs the sync, against
// the same sync with the log switched off in the same run, and what
// verifying and proving cost on the logged store.
func (b *bench) integrityBench(ctx context.Context) error {
	n := b.n(200_000)
	fake := newFake(n)
	defer fake.Close()
	var ingest, after [][]string
	for _, dialect := range []string{config.Postgres, config.SQLite} {
		best := map[bool]float64{}
		cpuBest := map[bool]float64{}
		selfAt := map[bool]float64{} // this process's share of the best CPU/record
		var inserted int
		for round := range integrityRounds {
			for _, logged := range []bool{false, true} {
				st, _, closeStore, err := b.freshStore(ctx, dialect, fmt.Sprintf("integrity-%d-%v", round, logged))
				if err != nil {
					return err
				}
				if !logged {
					st.WithoutIntegrityLog() // the baseline: the same store without the log
				}
				s, _, err := b.syncerFor(st, fake, -1, fake.Projects()[0].ID)
				if err != nil {
					closeStore()
					return err
				}
				if err := settle(ctx, st); err != nil {
					closeStore()
					return err
				}
				cpu0, err := cpuSeconds(ctx, st)
				if err != nil {
					closeStore()
					return err
				}
				start := time.Now()
				runs, err := s.RunAll(ctx, syncer.RunOptions{Trigger: syncer.TriggerCLI, Full: true}, "")
				if err != nil {
					closeStore()
					return err
				}
				took := time.Since(start)
				cpu1, err := cpuSeconds(ctx, st)
				if err != nil {
					closeStore()
					return err
				}
				inserted = runs[0].Inserted
				perRecord := cpu1.sub(cpu0) / float64(inserted)
				if c, ok := cpuBest[logged]; !ok || perRecord < c {
					cpuBest[logged] = perRecord
					selfAt[logged] = (cpu1.self - cpu0.self) / float64(inserted)
				}
				best[logged] = max(best[logged], float64(inserted)/took.Seconds())
				if logged && round == integrityRounds-1 {
					rows, err := b.afterIngest(ctx, dialect, st)
					if err != nil {
						closeStore()
						return err
					}
					after = append(after, rows...)
				}
				closeStore()
			}
		}
		r := best[true] / best[false]
		ingest = append(ingest, []string{dialect, fmt.Sprint(inserted), fmt.Sprintf("%.0f", best[false]), fmt.Sprintf("%.0f", best[true]),
			fmt.Sprintf("%.2f", r), cpuCell(cpuBest[false], selfAt[false]), cpuCell(cpuBest[true], selfAt[true]),
			fmt.Sprintf("%.2f", cpuBest[false]/cpuBest[true]), "≥ 0.85", passFail(r >= 0.85)})
	}
	fmt.Fprintf(b.out, "### Integrity log: sync ingest with and without it (%d records, loopback fake TAPD)\n\n", n)
	fmt.Fprintf(b.out, "Both = `syncer.RunAll --full` into an empty, migrated store, %d rounds alternating, best rate of each; on PostgreSQL a `CHECKPOINT` before each. "+
		"Without = the same store with `WithoutIntegrityLog()`: it writes exactly as before the log (no events, tree hashes, state lock or RETURNING). "+
		"With = every batch of 2000 records is one append to the log, in its own transaction. "+
		"CPU/record = CPU seconds of this process and of the store's PostgreSQL backends per record, steadier than wall time on a shared machine (in brackets: this process's part, which includes the fake TAPD's).\n\n", integrityRounds)
	b.table([]string{"store", "records", "without log rec/s", "with log rec/s", "ratio", "CPU/record without", "CPU/record with", "CPU ratio", "target (rate ratio)", "result"}, ingest)
	fmt.Fprintln(b.out, "### Integrity: verification, bundles and proofs on the logged store")
	fmt.Fprintln(b.out)
	fmt.Fprintln(b.out, "verify --database = `Store.VerifyDatabase` (every event, stored hash and checkpoint, every live row against its latest event). "+
		"Bundle = `Store.WriteBundle` of every event to a file; offline verify = `integrity.Verify` of that file in this process, peak live heap sampled above the live heap before it. "+
		"For 100k and 1M-event bundles in a child process, and proof sizes at 1k and 1M, see `go test -run '^$' -bench 'Verify|ProofSize' -benchtime 1x ./integrity/`.")
	fmt.Fprintln(b.out)
	b.table([]string{"store", "events", "verify --database", "bundle write", "bundle size", "offline verify", "verify peak live heap", "inclusion proof", "consistency proof (n/2 → n)"}, after)
	return nil
}

// settle flushes PostgreSQL's dirty buffers before a timed run, so that a
// checkpoint left over from the previous run does not land in this one
// (dialect: SQLite has nothing of the kind to flush).
func settle(ctx context.Context, st *storage.Store) error {
	if st.Dialect() != config.Postgres {
		return nil
	}
	_, err := st.DB().ExecContext(ctx, `CHECKPOINT`)
	return err
}

// cpuCell is CPU seconds per record, and this process's part of it.
func cpuCell(total, self float64) string {
	return fmt.Sprintf("%.1f µs (Go %.1f)", total*1e6, self*1e6)
}

// afterIngest signs a checkpoint on a logged store and measures
// verification, a full bundle and proof sizes.
func (b *bench) afterIngest(ctx context.Context, dialect string, st *storage.Store) ([][]string, error) {
	skey, err := integrity.GenerateKey("tapd-mirror.bench")
	if err != nil {
		return nil, err
	}
	key, err := integrity.ParseKey(skey)
	if err != nil {
		return nil, err
	}
	cp, _, err := st.SignCheckpoint(ctx, key, time.Now())
	if err != nil {
		return nil, err
	}
	start := time.Now()
	rep, err := st.VerifyDatabase(ctx, storage.VerifyOptions{Key: key.VerifierKey()})
	if err != nil {
		return nil, err
	}
	if !rep.OK {
		return nil, fmt.Errorf("verify --database found problems in the benchmark's store: %+v", rep.Problems)
	}
	verifyDB := time.Since(start)

	path := filepath.Join(b.tmp, dialect+".bundle.tar")
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	start = time.Now()
	if _, err := st.WriteBundle(ctx, w, storage.BundleRequest{Checkpoint: cp, Key: key.VerifierKey()}); err != nil {
		f.Close()
		return nil, err
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return nil, err
	}
	f.Close()
	write := time.Since(start)
	size, _ := os.Stat(path)

	var verifyTook time.Duration
	peak, err := heapPeak(func() error {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		start := time.Now()
		_, err = integrity.Verify(bufio.NewReaderSize(f, 1<<20), key.VerifierKey(), nil)
		verifyTook = time.Since(start)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("verifying the benchmark's bundle: %w", err)
	}
	os.Remove(path)

	var id int64
	if err := st.DB().GetContext(ctx, &id, `SELECT MIN(id) FROM activity_log`); err != nil {
		return nil, err
	}
	proofs, err := st.RecordProofs(ctx, id, cp.Size)
	if err != nil {
		return nil, err
	}
	cons, _, _, err := st.Consistency(ctx, cp.Size/2, cp.Size)
	if err != nil {
		return nil, err
	}
	log2 := math.Log2(float64(cp.Size))
	return [][]string{{dialect, fmt.Sprint(cp.Size), verifyDB.Round(time.Millisecond).String(), write.Round(time.Millisecond).String(),
		fmt.Sprintf("%.1f MiB (%.0f B/event)", float64(size.Size())/(1<<20), float64(size.Size())/float64(cp.Size)),
		fmt.Sprintf("%s (%.0f events/s)", verifyTook.Round(time.Millisecond), float64(cp.Size)/verifyTook.Seconds()),
		fmt.Sprintf("%.1f MiB", float64(peak)/(1<<20)),
		fmt.Sprintf("%d hashes, %d B (log2 n = %.1f)", len(proofs[0].Path), 32*len(proofs[0].Path), log2),
		fmt.Sprintf("%d hashes, %d B", len(cons), 32*len(cons))}}, nil
}

// heapPeak runs fn and returns the most live heap (as the last collection
// found it) above the live heap before it, sampled every 5 ms
// (runtime/metrics: no stop-the-world). Live, not in use: garbage waiting
// for the collector says how much the rest of this process holds, not fn.
func heapPeak(fn func() error) (uint64, error) {
	runtime.GC()
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(sample)
	base := sample[0].Value.Uint64()
	var peak uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		for {
			metrics.Read(s)
			if v := s[0].Value.Uint64(); v > base {
				peak = max(peak, v-base)
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	err := fn()
	close(done)
	wg.Wait()
	return peak, err
}

// cpuTime is CPU seconds spent by this process and, on PostgreSQL, by the
// store's server backends: the machine is shared, and CPU per record is far
// less disturbed by other load than wall-clock rates.
type cpuTime struct {
	self    float64
	backend map[int]float64
}

func (c cpuTime) sub(o cpuTime) float64 {
	d := c.self - o.self
	for pid, v := range c.backend {
		d += v - o.backend[pid]
	}
	return d
}

func cpuSeconds(ctx context.Context, st *storage.Store) (cpuTime, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return cpuTime{}, err
	}
	c := cpuTime{self: tv(ru.Utime) + tv(ru.Stime), backend: map[int]float64{}}
	if st.Dialect() != config.Postgres {
		return c, nil
	}
	var pids []int
	if err := st.DB().SelectContext(ctx, &pids, `SELECT pid FROM pg_stat_activity WHERE datname = current_database()`); err != nil {
		return c, err
	}
	hz := 100.0 // USER_HZ on Linux
	for _, pid := range pids {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue // not on this machine, or gone
		}
		// Fields after the command (which may hold spaces): utime is the 12th, stime the 13th.
		f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+1:]))
		if len(f) > 12 {
			u, _ := strconv.ParseFloat(f[11], 64)
			s, _ := strconv.ParseFloat(f[12], 64)
			c.backend[pid] = (u + s) / hz
		}
	}
	return c, nil
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
