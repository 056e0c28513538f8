package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"syscall"
	"time"
)

// export measures GET /export?format=csv of the real server process against
// PostgreSQL's own COPY … TO STDOUT (through psql) on the same table.
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
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/api/v1/activity_log/export?format=csv", nil)
	req.Header.Set("Authorization", "Bearer bench")
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	lines, bytes := 0, 0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines++
		bytes += len(sc.Bytes()) + 1
	}
	resp.Body.Close()
	took := time.Since(start)
	if err := sc.Err(); err != nil {
		return err
	}
	if lines != n+1 {
		return fmt.Errorf("export returned %d lines, want %d rows + header", lines, n)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	_, peak, err := p.wait()
	if err != nil {
		return fmt.Errorf("server exit: %w", err)
	}

	start = time.Now()
	psql := exec.CommandContext(ctx, "psql", dbURL, "-qAtc",
		`\copy (SELECT id, platform, serial, action_type, action_detail, username, extract(epoch from timestamp)::bigint, timestamp, source, source_id, workspace_id, extra FROM activity_log ORDER BY timestamp, id) TO '/dev/null' WITH CSV HEADER`)
	if out, err := psql.CombinedOutput(); err != nil {
		return fmt.Errorf("psql baseline: %v: %s", err, out)
	}
	baseTook := time.Since(start)

	rate, baseRate := float64(n)/took.Seconds(), float64(n)/baseTook.Seconds()
	fmt.Fprintln(b.out, "### 8. Export: `GET /api/v1/activity_log/export?format=csv` from the real server process")
	fmt.Fprintln(b.out)
	fmt.Fprintln(b.out, "Baseline = `psql \\copy (SELECT … ORDER BY timestamp, id) TO '/dev/null' CSV` on the same table, same run. Peak RSS is the server process's `VmHWM` over its whole life (start, export, shutdown).")
	fmt.Fprintln(b.out)
	b.table([]string{"rows", "bytes", "time", "rows/s", "baseline rows/s", "ratio", "server peak RSS", "result"},
		[][]string{{fmt.Sprint(n), fmt.Sprintf("%.0f MiB", float64(bytes)/(1<<20)), took.Round(100 * time.Millisecond).String(),
			fmt.Sprintf("%.0f", rate), fmt.Sprintf("%.0f", baseRate), ratio(rate, baseRate), fmt.Sprintf("%.1f MiB", peak),
			passFail(peak < 100)}})
	return nil
}
