package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/integrity"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/tapd/tapdtest"
)

// drill is the disaster drill: the real commands, run in this process
// against a fake TAPD whose clock moves, prove that a lost database comes
// back whole from its backups plus TAPD's half year.
func (m *Main) drill(ctx context.Context, args []string) error {
	fs := m.flags("drill", "Run a disaster drill against a built-in fake TAPD, with the real commands: backfill,\n"+
		"a full backup, time passes (the oldest records leave TAPD's half year), sync, an\n"+
		"incremental backup, new records, the database is deleted, restore into a fresh one,\n"+
		"verify --database, sync --full. The mirror must then equal TAPD's truth exactly:\n"+
		"what left TAPD's half year from the backups, the rest re-read, nothing duplicated.\n"+
		"Prints what each step took; exit code 1 if anything differs.", nil)
	dir := fs.String("dir", "", "working `directory` for the database, key and backups (default: a new temp directory, removed afterwards)")
	target := fs.String("restore-into", "", "an empty `database_url` to restore into, e.g. a new PostgreSQL database (default: a new SQLite file in the working directory)")
	days := fs.Int("days", 40, "`days` that pass between the full backup and the disaster")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *days < 1 || *days > 150 {
		return usageError{fmt.Errorf("drill: --days %d: want 1 to 150 (less than TAPD's half year)", *days)}
	}
	if *dir == "" {
		d, err := os.MkdirTemp("", "tapd-mirror-drill-")
		if err != nil {
			return fmt.Errorf("creating the drill's directory: %w", err)
		}
		defer os.RemoveAll(d)
		*dir = d
	}
	source := filepath.Join(*dir, "mirror.db")
	if *target == "" {
		*target = "sqlite:" + filepath.Join(*dir, "restored.db")
	}
	fake := tapdtest.New(tapdtest.Options{Seed: 24, Projects: 2, Months: 8, RecordsPerDay: 12, CompanyRecordsPerDay: 2})
	defer fake.Close()
	user, pw := fake.Credentials()
	env := map[string]string{
		"TAPD_MIRROR_DATABASE_URL":             "sqlite:" + source,
		"TAPD_MIRROR_INTEGRITY_KEY_FILE":       filepath.Join(*dir, "tapd-mirror.key"),
		"TAPD_MIRROR_TAPD_BASE_URL":            fake.URL,
		"TAPD_MIRROR_TAPD_API_USER":            user,
		"TAPD_MIRROR_TAPD_API_PASSWORD":        pw,
		"TAPD_MIRROR_TAPD_REQUESTS_PER_MINUTE": "60000",
		"TAPD_MIRROR_WORKSPACES":               "projects:" + fake.CompanyID() + ",company:" + fake.CompanyID(),
	}
	sub := &Main{Stdout: indent{m.Stdout}, Stderr: m.Stderr, Clock: fake.Now, Getenv: func(k string) string {
		if v, ok := env[k]; ok {
			return v
		}
		return m.Getenv(k) // e.g. TAPD_MIRROR_TIMEZONE
	}}
	run := func(args ...string) error {
		return sub.Run(ctx, append(args, "--log-level", "warn", "--log-format", "text"))
	}
	full, inc := filepath.Join(*dir, "full.backup"), filepath.Join(*dir, "incremental.backup")
	total := time.Now()
	n := 0
	step := func(what string, fn func() error) error {
		n++
		fmt.Fprintf(m.Stdout, "%d. %s\n", n, what)
		start := time.Now()
		err := fn()
		if err != nil {
			return fmt.Errorf("drill step %d (%s): %w", n, what, err)
		}
		fmt.Fprintf(m.Stdout, "   took %s\n", time.Since(start).Round(time.Millisecond))
		return nil
	}

	var reach time.Time // the oldest record the backfill reached: the truth the mirror owes from here on
	if err := step("backfill TAPD's half year into "+source, func() error {
		if err := run("sync"); err != nil {
			return err
		}
		var err error
		reach, err = oldestMirrored(ctx, "sqlite:"+source)
		return err
	}); err != nil {
		return err
	}
	if err := step("full backup to "+full, func() error { return run("backup", "--out", full) }); err != nil {
		return err
	}
	if err := step(fmt.Sprintf("%d days pass (new records every day; the oldest leave TAPD's half year), sync", *days), func() error {
		fake.Advance(time.Duration(*days) * 24 * time.Hour)
		for d := *days; d > 0; d-- {
			for _, p := range fake.Projects() {
				fake.AddRecords(p.ID, fake.Now().Add(-time.Duration(d)*24*time.Hour+time.Hour), 3)
			}
		}
		return run("sync")
	}); err != nil {
		return err
	}
	if err := step("incremental backup to "+inc, func() error {
		return run("backup", "--out", inc, "--incremental-from", full)
	}); err != nil {
		return err
	}
	var after int
	if err := step("disaster: records arrive at TAPD after the last backup, and the database is lost", func() error {
		for _, p := range fake.Projects() {
			after += len(fake.AddRecords(p.ID, fake.Now().Add(-2*time.Hour), 4))
		}
		for _, suffix := range []string{"", "-wal", "-shm"} {
			if err := os.Remove(source + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		fmt.Fprintf(m.Stdout, "   deleted %s\n", source)
		return nil
	}); err != nil {
		return err
	}
	key, _, err := integrity.LoadOrCreateKey(env["TAPD_MIRROR_INTEGRITY_KEY_FILE"], "")
	if err != nil {
		return err
	}
	env["TAPD_MIRROR_DATABASE_URL"] = *target
	if err := step("restore both backups into "+config.RedactDatabaseURL(*target), func() error {
		return run("restore", full, inc, "--key", key.VerifierKey())
	}); err != nil {
		return err
	}
	if err := step("verify --database", func() error { return run("verify", "--database") }); err != nil {
		return err
	}
	if err := step("sync --full: re-read TAPD's half year", func() error { return run("sync", "--full") }); err != nil {
		return err
	}
	if err := step("compare the mirror with TAPD's truth", func() error {
		return compareWithTruth(ctx, m.Stdout, *target, fake, reach, after)
	}); err != nil {
		return err
	}
	fmt.Fprintf(m.Stdout, "drill passed in %s\n", time.Since(total).Round(time.Millisecond))
	return nil
}

// indent prefixes a sub-command's output so the drill's steps stand out.
type indent struct{ w io.Writer }

func (i indent) Write(p []byte) (int, error) {
	text := strings.TrimSuffix(string(p), "\n")
	if _, err := io.WriteString(i.w, "   | "+strings.ReplaceAll(text, "\n", "\n   | ")+"\n"); err != nil {
		return 0, err
	}
	return len(p), nil
}

// oldestMirrored is the time of the oldest mirrored record of a SQLite
// mirror (times are Unix seconds there).
func oldestMirrored(ctx context.Context, databaseURL string) (time.Time, error) {
	st, err := storage.Open(ctx, databaseURL)
	if err != nil {
		return time.Time{}, err
	}
	defer st.Close()
	var sec int64
	if err := st.DB().GetContext(ctx, &sec, `SELECT COALESCE(MIN(timestamp), 0) FROM activity_log WHERE source = 'tapd'`); err != nil {
		return time.Time{}, err
	}
	if sec == 0 {
		return time.Time{}, errors.New("the backfill mirrored nothing")
	}
	return time.Unix(sec, 0), nil
}

// compareWithTruth checks that the mirror holds exactly TAPD's records from
// reach on, each once, and says where they came from.
func compareWithTruth(ctx context.Context, w io.Writer, databaseURL string, fake *tapdtest.Server, reach time.Time, after int) error {
	st, err := storage.Open(ctx, databaseURL)
	if err != nil {
		return err
	}
	defer st.Close()
	var rows []struct {
		SourceID string `db:"source_id"`
		N        int    `db:"n"`
	}
	if err := st.DB().SelectContext(ctx, &rows, `SELECT source_id, COUNT(*) AS n FROM activity_log WHERE source = 'tapd' GROUP BY source_id`); err != nil {
		return err
	}
	have := make(map[string]bool, len(rows))
	for _, r := range rows {
		if r.N != 1 {
			return fmt.Errorf("record %s is stored %d times", r.SourceID, r.N)
		}
		have[r.SourceID] = true
	}
	horizon := fake.Horizon()
	var want, old, missing int
	var firstMissing string
	for _, r := range fake.Truth() {
		if r.Created.Before(reach) {
			continue // before the backfill's reach: never the mirror's
		}
		want++
		if r.Created.Before(horizon) {
			old++
		}
		if !have[r.ID] {
			if missing++; firstMissing == "" {
				firstMissing = r.ID
			}
		}
	}
	count, err := st.CountActivities(ctx, storage.Filter{Source: storage.SourceTAPD})
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "   TAPD's truth since the backfill's reach (%s): %d records, %d of them older than TAPD's horizon (%s)\n",
		reach.Format(time.RFC3339), want, old, horizon.Format(time.RFC3339))
	fmt.Fprintf(w, "   the mirror: %d records, count %d, %d missing, 0 duplicated\n", len(have), count, missing)
	switch {
	case missing > 0:
		return fmt.Errorf("%d of TAPD's records are missing from the mirror (the first: %s)", missing, firstMissing)
	case len(have) != want || int(count) != want:
		return fmt.Errorf("the mirror holds %d records (count says %d), TAPD's truth %d", len(have), count, want)
	case old == 0:
		return errors.New("no record had left TAPD's half year: the drill proved nothing about the backups")
	}
	fmt.Fprintf(w, "   OK: the mirror equals TAPD's truth: %d records older than the horizon came from the backups, the rest was re-read from TAPD (%d arrived after the last backup)\n", old, after)
	return nil
}
