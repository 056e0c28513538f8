package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// export measures GET /export (CSV and NDJSON) of the real server process
// against PostgreSQL's own COPY … TO STDOUT (through psql) on the same table.
func (b *bench) export(ctx context.Context) error {
	n := b.n(1_000_000)
	_, dbURL, closeStore, err := b.generate(ctx, n)
	if err != nil {
		return err
	}
	defer closeStore()
	addr, err := freePort()
	if err != nil {
		return err
	}
	p, err := b.startProc(ctx, map[string]string{"TAPD_MIRROR_DATABASE_URL": dbURL, "TAPD_MIRROR_LISTEN": addr,
		"TAPD_MIRROR_ADMIN_TOKEN": "bench", "TAPD_MIRROR_INTEGRITY_KEY_FILE": b.tmp + "/export.key"}, "serve", "--log-level", "warn")
	if err != nil {
		return err
	}
	defer p.cmd.Process.Kill()
	base := "http://" + addr
	for i := 0; ; i++ {
		if httpGet(ctx, base+"/readyz") == nil {
			break
		}
		if i > 300 {
			return fmt.Errorf("server did not become ready")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Rounds alternate the formats and the baseline; the best of each
	// counts, as in the ingest step (the machine is shared).
	const rounds = 3
	best := map[string]time.Duration{}
	all := map[string][]string{}
	var bytesOf = map[string]int{}
	keep := func(name string, took time.Duration) {
		if d, ok := best[name]; !ok || took < d {
			best[name] = took
		}
		all[name] = append(all[name], took.Round(10*time.Millisecond).String())
	}
	formats := []string{"csv", "ndjson"}
	for range rounds {
		for _, format := range formats {
			took, bytes, err := exportOnce(ctx, base, format, n)
			if err != nil {
				return err
			}
			keep(format, took)
			bytesOf[format] = bytes
		}
		start := time.Now()
		psql := exec.CommandContext(ctx, "psql", dbURL, "-qAtc",
			`\copy (SELECT id, platform, serial, action_type, action_detail, username, extract(epoch from timestamp)::bigint, timestamp, source, source_id, workspace_id, extra FROM activity_log ORDER BY timestamp, id) TO '/dev/null' WITH CSV HEADER`)
		if out, err := psql.CombinedOutput(); err != nil {
			return fmt.Errorf("psql baseline: %v: %s", err, out)
		}
		keep("copy", time.Since(start))
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	_, peak, err := p.wait()
	if err != nil {
		return fmt.Errorf("server exit: %w", err)
	}

	baseRate := float64(n) / best["copy"].Seconds()
	fmt.Fprintln(b.out, "### 8. Export: `GET /api/v1/activity_log/export` (CSV and NDJSON) from the real server process")
	fmt.Fprintln(b.out)
	fmt.Fprintf(b.out, "Baseline = `psql \\copy (SELECT … ORDER BY timestamp, id) TO '/dev/null' CSV` on the same table, same run: PostgreSQL's own fastest way out, for both formats. %d rounds, alternating CSV, NDJSON and the baseline; the best time of each. Peak RSS is the server process's `VmHWM` over its whole life (start, every export, shutdown).\n", rounds)
	fmt.Fprintln(b.out)
	var rows [][]string
	for _, format := range formats {
		rate := float64(n) / best[format].Seconds()
		rows = append(rows, []string{format, fmt.Sprint(n), fmt.Sprintf("%.0f MiB", float64(bytesOf[format])/(1<<20)),
			best[format].Round(10 * time.Millisecond).String(), fmt.Sprintf("%.0f", rate), fmt.Sprintf("%.0f", baseRate),
			ratio(rate, baseRate), "≥ 0.6", strings.Join(all[format], ", "), strings.Join(all["copy"], ", "),
			fmt.Sprintf("%.1f MiB", peak), passFail(rate >= 0.6*baseRate && peak < 100)})
	}
	b.table([]string{"format", "rows", "bytes", "time", "rows/s", "baseline rows/s", "ratio", "target", "every round", "every baseline round",
		"server peak RSS", "result"}, rows)
	return nil
}

// exportOnce streams one full export and checks it holds every row.
func exportOnce(ctx context.Context, base, format string, n int) (time.Duration, int, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/api/v1/activity_log/export?format="+format, nil)
	req.Header.Set("Authorization", "Bearer bench")
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	lines, bytes := 0, 0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines++
		bytes += len(sc.Bytes()) + 1
	}
	took := time.Since(start)
	if err := sc.Err(); err != nil {
		return 0, 0, fmt.Errorf("reading the %s export: %w", format, err)
	}
	if want := n + map[string]int{"csv": 1}[format]; lines != want { // CSV has a header line
		return 0, 0, fmt.Errorf("the %s export returned %d lines, want %d", format, lines, want)
	}
	return took, bytes, nil
}
