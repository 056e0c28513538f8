package main

import (
	"context"
	"fmt"
	"time"
)

// memory measures the peak RSS of `tapd-mirror sync --full` in its own
// process, at two sizes, to show it stays flat as the record count grows.
func (b *bench) memory(ctx context.Context) error {
	var rows [][]string
	var peaks []float64
	sizes := []int{b.n(250_000), b.n(1_000_000)}
	for _, n := range sizes {
		fake := newFake(n)
		_, dbURL, closeStore, err := b.freshStore(ctx, "postgres", "memory")
		if err != nil {
			fake.Close()
			return err
		}
		user, pw := fake.Credentials()
		p, err := b.startProc(ctx, map[string]string{
			"TAPD_MIRROR_DATABASE_URL":             dbURL,
			"TAPD_MIRROR_TAPD_BASE_URL":            fake.URL,
			"TAPD_MIRROR_TAPD_API_USER":            user,
			"TAPD_MIRROR_TAPD_API_PASSWORD":        pw,
			"TAPD_MIRROR_WORKSPACES":               fake.Projects()[0].ID,
			"TAPD_MIRROR_TAPD_REQUESTS_PER_MINUTE": "1000000",
		}, "sync", "--full", "--log-level", "warn")
		if err != nil {
			closeStore()
			fake.Close()
			return err
		}
		took, peak, err := p.wait()
		fake.Close()
		closeStore()
		if err != nil {
			return fmt.Errorf("sync --full of %d records: %w", n, err)
		}
		peaks = append(peaks, peak)
		rows = append(rows, []string{fmt.Sprint(n), took.Round(100 * time.Millisecond).String(),
			fmt.Sprintf("%.0f", float64(n)/took.Seconds()), fmt.Sprintf("%.1f MiB", peak), "< 100 MiB", passFail(peak < 100)})
	}
	flat := peaks[1] <= peaks[0]*1.25
	rows = append(rows, []string{"growth ×4 records", "", "", fmt.Sprintf("×%.2f", peaks[1]/peaks[0]), "flat (≤ ×1.25)", passFail(flat)})
	fmt.Fprintln(b.out, "### 4. Memory: `tapd-mirror sync --full` in its own process (PostgreSQL, loopback fake TAPD)")
	fmt.Fprintln(b.out)
	fmt.Fprintln(b.out, "Peak RSS is the child's own high-water mark (`VmHWM` in `/proc/PID/status`, sampled every 20 ms; `getrusage` maxrss would count the fork from the bench process, which holds the fake TAPD).")
	fmt.Fprintln(b.out)
	b.table([]string{"records", "wall time", "rec/s", "peak RSS", "target", "result"}, rows)
	return nil
}
