// Command tapd-mirror-bench measures tapd-mirror against baselines taken in
// the same run (these machines are noisy: ratios matter, not absolutes) and
// prints a Markdown report for BENCHMARKS.md.
//
//	go run ./cmd/tapd-mirror-bench                 # full scale
//	go run ./cmd/tapd-mirror-bench -scale 0.05     # a quick look
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
)

type bench struct {
	scale    float64
	adminURL string
	out      io.Writer
	log      *slog.Logger
	tmp      string
	binary   string // built tapd-mirror, for the RSS measurements
	// forwardConfig are -forward-config's destinations (nil: the forward
	// step's own in-process webhook and syslog).
	forwardConfig []config.Forward
}

func main() {
	b := &bench{out: os.Stdout}
	flag.Float64Var(&b.scale, "scale", 1, "multiply every data size by this (1 = the sizes in BENCHMARKS.md)")
	only := flag.String("only", "ingest,queries,memory,export,scale,company,counts,integrity,console,trail,horizon,backup,doctor,report,forward", "comma-separated benchmarks to run")
	flag.StringVar(&b.adminURL, "pg", storagetest.AdminURL(), "PostgreSQL URL used to create throwaway databases")
	verbose := flag.Bool("v", false, "log the engine's progress to stderr")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to `file`")
	forwardConfig := flag.String("forward-config", "", "config `file` whose forward: destinations the forward step delivers to while the sync ingests (default: an in-process webhook and syslog receiver)")
	flag.Parse()
	if *forwardConfig != "" {
		cfg, err := config.Load(*forwardConfig, func(string) string { return "" })
		if err == nil && len(cfg.Forward) == 0 {
			err = fmt.Errorf("%s has no forward: destinations", *forwardConfig)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(2)
		}
		b.forwardConfig = cfg.Forward
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	b.log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if err := b.run(context.Background(), strings.Split(*only, ",")); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func (b *bench) n(base int) int { return max(1, int(float64(base)*b.scale)) }

func (b *bench) run(ctx context.Context, which []string) error {
	var err error
	if b.tmp, err = os.MkdirTemp("", "tapd-mirror-bench-"); err != nil {
		return err
	}
	defer os.RemoveAll(b.tmp)
	host, _ := os.Hostname()
	fmt.Fprintf(b.out, "Run %s on %s: %s/%s, %d CPUs, %s, scale %g.\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"),
		host, runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version(), b.scale)
	steps := map[string]func(context.Context) error{
		"ingest":    b.ingest,
		"queries":   b.queries,
		"memory":    b.memory,
		"export":    b.export,
		"scale":     b.syncAtScale,
		"company":   b.company,
		"counts":    b.counts,
		"integrity": b.integrityBench,
		"console":   b.console,
		"trail":     b.trail,
		"horizon":   b.horizon,
		"backup":    b.backupBench,
		"doctor":    b.doctorEstimate,
		"forward":   b.forwardBench,
		"report":    b.reportBench,
		// the console step's SQLite table alone
		"console-sqlite": b.consoleSQLite,
	}
	for _, name := range which {
		step, ok := steps[strings.TrimSpace(name)]
		if !ok {
			return fmt.Errorf("unknown benchmark %q", name)
		}
		start := time.Now()
		if err := step(ctx); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		fmt.Fprintf(os.Stderr, "bench: %s done in %s\n", name, time.Since(start).Round(time.Second))
	}
	return nil
}

// table prints a Markdown table.
func (b *bench) table(header []string, rows [][]string) {
	fmt.Fprintf(b.out, "| %s |\n|%s\n", strings.Join(header, " | "), strings.Repeat("---|", len(header)))
	for _, r := range rows {
		fmt.Fprintf(b.out, "| %s |\n", strings.Join(r, " | "))
	}
	fmt.Fprintln(b.out)
}

func passFail(ok bool) string {
	if ok {
		return "pass"
	}
	return "**FAIL**"
}

func ratio(a, b float64) string { return fmt.Sprintf("%.2f", a/b) }
