package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/integrity"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/syncer"
	"github.com/tapd-mirror/tapd-mirror/tapd/tapdtest"
)

// backupTables are the tables a backup reads, which the baseline dumps.
var backupTables = []string{"activity_log", "integrity_event", "integrity_hash", "integrity_state", "integrity_checkpoint",
	"sync_checkpoint", "sync_coverage", "sync_gap_ack", "sync_gap_reason", "sync_meta", "activity_target",
	"activity_tombstone", "activity_history", "legal_hold"}

// backupRounds is how many times backup, baseline and restore are measured; the best counts.
const backupRounds = 3

// backupBench measures a backup against the database's own dump of the
// same tables (pg_dump -Fc; SQLite: VACUUM INTO, which copies the whole
// file), and a restore against the sync's ingest rate, in the same run.
func (b *bench) backupBench(ctx context.Context) error {
	n := b.n(200_000)
	fake := newFake(n)
	defer fake.Close()
	skey, err := integrity.GenerateKey("tapd-mirror.bench")
	if err != nil {
		return err
	}
	key, err := integrity.ParseKey(skey)
	if err != nil {
		return err
	}
	var results []backupResult
	for _, dialect := range []string{config.Postgres, config.SQLite} {
		st, u, closeStore, err := b.freshStore(ctx, dialect, "backup-source")
		if err != nil {
			return err
		}
		r, err := b.backupRound(ctx, dialect, st, u, fake, key)
		if err == nil {
			r.smallRSS, r.fullRSS, err = b.backupMemory(ctx, dialect, u, skey, n/4)
		}
		closeStore()
		if err != nil {
			return err
		}
		results = append(results, r)
	}
	pgDump := results[0].baseRate // the same records, dumped from PostgreSQL
	var rows [][]string
	for _, r := range results {
		vacuum := "—"
		if r.dialect == config.SQLite {
			vacuum = fmt.Sprintf("%.0f", r.baseRate)
		}
		rows = append(rows, []string{r.dialect, fmt.Sprint(r.records), fmt.Sprintf("%.0f", r.ingest), fmt.Sprintf("%.0f", r.backup),
			fmt.Sprintf("%.0f", pgDump), ratio(r.backup, pgDump), "≥ 0.50", passFail(r.backup >= 0.5*pgDump), vacuum,
			fmt.Sprintf("%.0f", r.restore), ratio(r.restore, r.ingest), "≥ 0.50", passFail(r.restore >= 0.5*r.ingest),
			fmt.Sprintf("%.1f MiB", float64(r.size)/(1<<20)), fmt.Sprintf("%.0f MiB", float64(r.size)/float64(r.records)*1e6/(1<<20)),
			fmt.Sprintf("%.1f / %.1f MiB (×%.2f)", r.smallRSS, r.fullRSS, r.fullRSS/r.smallRSS), passFail(r.fullRSS <= 1.5*r.smallRSS)})
	}
	fmt.Fprintf(b.out, "### 10. Backup and restore (%d records, loopback fake TAPD)\n\n", n)
	fmt.Fprintf(b.out, "Ingest = `syncer.RunAll --full` into an empty, migrated store (with the integrity log): the rate a restore is compared with. "+
		"Backup = `Store.WriteBackup` to a synced file (full: every event with its hints, the sync state, a signed checkpoint and seal; gzip). "+
		"pg_dump = `pg_dump -Fc -t …` of the %d tables a backup reads, from the PostgreSQL store of the same records, to a synced file: the baseline of both rows. "+
		"VACUUM INTO = SQLite's own copy of the whole file (pages, indexes included), for reference. "+
		"Restore = `Store.Restore` of the backup into an empty, migrated store of the same dialect (verify every event, replay, rebuild counts, one transaction). "+
		"%d rounds, best of each. Rates are records per second. "+
		"Memory = peak RSS (`VmHWM`) of a `tapd-mirror backup` process writing a full backup of an archive of %d records (synced the same way), then of this one: "+
		"it streams (at most three chunks of 5000 events in memory), so 4× the records may cost at most ×1.5 (the Go heap's peak still creeps up with the run's length).\n\n", len(backupTables), backupRounds, n/4)
	b.table([]string{"store", "records", "ingest rec/s", "backup rec/s", "pg_dump -Fc rec/s", "backup / pg_dump", "target", "result",
		"VACUUM INTO rec/s", "restore rec/s", "restore / ingest", "target", "result", "backup size", "per 1M records",
		"backup peak RSS: ¼ / all records", "bounded (≤ ×1.5)"}, rows)
	return nil
}

// backupResult is the backup step's measurements on one dialect.
type backupResult struct {
	dialect                           string
	records                           int
	ingest, backup, baseRate, restore float64 // records per second
	size                              int64
	smallRSS, fullRSS                 float64 // MiB: `tapd-mirror backup` of an archive of ¼ the records, of this one
}

// backupMemory returns the peak RSS of `tapd-mirror backup` of an archive
// of small records synced now, and of the store at u.
func (b *bench) backupMemory(ctx context.Context, dialect, u, skey string, small int) (smallRSS, fullRSS float64, err error) {
	fake := newFake(small)
	defer fake.Close()
	st, smallURL, closeStore, err := b.freshStore(ctx, dialect, "backup-memory")
	if err != nil {
		return 0, 0, err
	}
	defer closeStore()
	s, _, err := b.syncerFor(st, fake, -1, fake.Projects()[0].ID)
	if err != nil {
		return 0, 0, err
	}
	if _, err := s.RunAll(ctx, syncer.RunOptions{Trigger: syncer.TriggerCLI, Full: true}, ""); err != nil {
		return 0, 0, err
	}
	if smallRSS, err = b.backupRSS(ctx, smallURL, skey); err != nil {
		return 0, 0, err
	}
	fullRSS, err = b.backupRSS(ctx, u, skey)
	return smallRSS, fullRSS, err
}

// backupRSS runs `tapd-mirror backup` (full) on the store at u and returns
// the process's peak RSS in MiB.
func (b *bench) backupRSS(ctx context.Context, u, skey string) (float64, error) {
	keyFile, out := filepath.Join(b.tmp, "backup-rss.key"), filepath.Join(b.tmp, "rss.backup")
	if err := os.WriteFile(keyFile, []byte(skey), 0o600); err != nil {
		return 0, err
	}
	defer os.Remove(keyFile)
	defer os.Remove(out)
	p, err := b.startProc(ctx, map[string]string{"TAPD_MIRROR_DATABASE_URL": u, "TAPD_MIRROR_INTEGRITY_KEY_FILE": keyFile},
		"backup", "--out", out, "--log-level", "warn")
	if err != nil {
		return 0, err
	}
	_, peak, err := p.wait()
	if err != nil {
		return 0, fmt.Errorf("tapd-mirror backup: %w", err)
	}
	return peak, nil
}

func (b *bench) backupRound(ctx context.Context, dialect string, st *storage.Store, u string, fake *tapdtest.Server, key *integrity.Key) (backupResult, error) {

	s, _, err := b.syncerFor(st, fake, -1, fake.Projects()[0].ID)
	if err != nil {
		return backupResult{}, err
	}
	if err := settle(ctx, st); err != nil {
		return backupResult{}, err
	}
	start := time.Now()
	runs, err := s.RunAll(ctx, syncer.RunOptions{Trigger: syncer.TriggerCLI, Full: true}, "")
	if err != nil {
		return backupResult{}, err
	}
	records := runs[0].Inserted
	ingest := float64(records) / time.Since(start).Seconds()
	if _, _, err := st.SignCheckpoint(ctx, key, time.Now()); err != nil {
		return backupResult{}, err
	}
	path := filepath.Join(b.tmp, dialect+".backup")
	var backupRate, baseRate, restoreRate float64
	var size int64
	for round := range backupRounds {
		took, n, err := timeToFile(path, func(w *bufio.Writer) error {
			_, err := st.WriteBackup(ctx, w, key, nil, time.Now())
			return err
		})
		if err != nil {
			return backupResult{}, fmt.Errorf("backup: %w", err)
		}
		backupRate, size = max(backupRate, float64(records)/took.Seconds()), n
		var base time.Duration
		if base, err = b.dumpBaseline(ctx, dialect, st, u, round); err != nil {
			return backupResult{}, fmt.Errorf("baseline: %w", err)
		}
		baseRate = max(baseRate, float64(records)/base.Seconds())

		dst, _, closeDst, err := b.freshStore(ctx, dialect, fmt.Sprint("backup-restore-", round))
		if err != nil {
			return backupResult{}, err
		}
		if err := settle(ctx, dst); err != nil {
			closeDst()
			return backupResult{}, err
		}
		f, err := os.Open(path)
		if err != nil {
			closeDst()
			return backupResult{}, err
		}
		start := time.Now()
		res, err := dst.Restore(ctx, []io.Reader{bufio.NewReaderSize(f, 1<<20)}, storage.RestoreOptions{Key: key.VerifierKey()})
		took = time.Since(start)
		f.Close()
		closeDst()
		if err != nil {
			return backupResult{}, fmt.Errorf("restore: %w", err)
		}
		if res.Records != int64(records) {
			return backupResult{}, fmt.Errorf("restored %d records of %d", res.Records, records)
		}
		restoreRate = max(restoreRate, float64(records)/took.Seconds())
	}
	os.Remove(path)
	return backupResult{dialect: dialect, records: records, ingest: ingest, backup: backupRate, baseRate: baseRate,
		restore: restoreRate, size: size}, nil
}

// timeToFile times fn writing to path, buffered and synced, and returns the file's size.
func timeToFile(path string, fn func(w *bufio.Writer) error) (time.Duration, int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	start := time.Now()
	w := bufio.NewWriterSize(f, 1<<20)
	if err := fn(w); err != nil {
		return 0, 0, err
	}
	if err := w.Flush(); err != nil {
		return 0, 0, err
	}
	if err := f.Sync(); err != nil {
		return 0, 0, err
	}
	took := time.Since(start)
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	return took, fi.Size(), nil
}

// dumpBaseline copies the backed-up tables the database's own way, to a
// synced file, and returns how long it took.
func (b *bench) dumpBaseline(ctx context.Context, dialect string, st *storage.Store, u string, round int) (time.Duration, error) {
	path := filepath.Join(b.tmp, fmt.Sprintf("baseline-%d", round))
	defer os.Remove(path)
	start := time.Now()
	if dialect == config.Postgres {
		args := []string{"-Fc", "-f", path, "-d", u}
		for _, t := range backupTables {
			args = append(args, "-t", t)
		}
		if out, err := exec.CommandContext(ctx, "pg_dump", args...).CombinedOutput(); err != nil {
			return 0, fmt.Errorf("pg_dump: %v: %s", err, out)
		}
		if err := syncFile(path); err != nil {
			return 0, err
		}
		return time.Since(start), nil
	}
	if _, err := st.DB().ExecContext(ctx, `VACUUM INTO ?`, path); err != nil {
		return 0, err
	}
	if err := syncFile(path); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
