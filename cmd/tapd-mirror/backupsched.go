package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tapd-mirror/tapd-mirror/api"
	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/integrity"
	"github.com/tapd-mirror/tapd-mirror/storage"
)

// backupFile is one backup of the schedule's directory, named
// tapd-mirror-<UTC time>-full.backup or …-incremental.backup.
type backupFile struct {
	path string
	at   time.Time
	full bool
	size int64
}

const backupTimeLayout = "20060102T150405Z"

func backupName(dir string, at time.Time, full bool) string {
	kind := "incremental"
	if full {
		kind = "full"
	}
	return filepath.Join(dir, "tapd-mirror-"+at.UTC().Format(backupTimeLayout)+"-"+kind+".backup")
}

// listBackups lists the schedule's backups in dir, oldest first; other
// files are ignored.
func listBackups(dir string) ([]backupFile, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("listing backups: %w", err)
	}
	var out []backupFile
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), "tapd-mirror-")
		if !ok || e.IsDir() {
			continue
		}
		stamp, kind, _ := strings.Cut(strings.TrimSuffix(rest, ".backup"), "-")
		at, err := time.Parse(backupTimeLayout, stamp)
		if err != nil || (kind != "full" && kind != "incremental") || !strings.HasSuffix(rest, ".backup") {
			continue
		}
		f := backupFile{path: filepath.Join(dir, e.Name()), at: at, full: kind == "full"}
		if fi, err := e.Info(); err == nil {
			f.size = fi.Size()
		}
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b backupFile) int { return a.at.Compare(b.at) })
	return out, nil
}

// latestChain is the newest full backup and the incrementals after it: what
// a restore takes, in order.
func latestChain(files []backupFile) []backupFile {
	for i := len(files) - 1; i >= 0; i-- {
		if files[i].full {
			return files[i:]
		}
	}
	return nil
}

// backups takes serve's scheduled backups.
type backups struct {
	st     *storage.Store
	key    *integrity.Key
	cfg    config.Backup
	log    *slog.Logger
	now    func() time.Time
	failed prometheus.Counter // nil: not counted

	mu   sync.Mutex
	last backupFile
}

// Last is the newest backup, for the metrics.
func (b *backups) Last() api.LastBackup {
	b.mu.Lock()
	defer b.mu.Unlock()
	return api.LastBackup{At: b.last.at, Size: b.last.size, Full: b.last.full}
}

// due says what the schedule asks for at now given the backups in the
// directory: a full backup, an incremental one continuing from, or
// nothing until next.
func (b *backups) due(files []backupFile, now time.Time) (full bool, from string, next time.Time) {
	chain := latestChain(files)
	if len(chain) == 0 || !now.Before(chain[0].at.Add(b.cfg.FullInterval.Duration)) {
		return true, "", time.Time{}
	}
	last := chain[len(chain)-1]
	if !now.Before(last.at.Add(b.cfg.Interval.Duration)) {
		return false, last.path, time.Time{}
	}
	next = last.at.Add(b.cfg.Interval.Duration)
	if fullAt := chain[0].at.Add(b.cfg.FullInterval.Duration); fullAt.Before(next) {
		next = fullAt
	}
	return false, "", next
}

// take takes the backup that is due, if any, prunes old chains, and
// returns when the next one is due.
func (b *backups) take(ctx context.Context) (time.Time, error) {
	if err := os.MkdirAll(b.cfg.Dir, 0o700); err != nil {
		return time.Time{}, fmt.Errorf("creating backup.dir: %w", err)
	}
	files, err := listBackups(b.cfg.Dir)
	if err != nil {
		return time.Time{}, err
	}
	now := b.now().UTC().Truncate(time.Second)
	full, from, next := b.due(files, now)
	if len(files) > 0 {
		b.mu.Lock()
		if b.last.at.IsZero() {
			b.last = files[len(files)-1]
		}
		b.mu.Unlock()
	}
	if !next.IsZero() {
		return next, nil
	}
	path := backupName(b.cfg.Dir, now, full)
	start := time.Now()
	res, size, err := writeBackupFile(ctx, b.st, b.key, path, from, now)
	if err != nil && !full {
		// The chain cannot be continued (the database was restored from
		// elsewhere, the file is damaged): start a new one.
		b.log.Warn("incremental backup impossible, taking a full one", "after", from, "err", err)
		full, path = true, backupName(b.cfg.Dir, now, true)
		res, size, err = writeBackupFile(ctx, b.st, b.key, path, "", now)
	}
	if err != nil {
		return time.Time{}, err
	}
	b.mu.Lock()
	b.last = backupFile{path: path, at: now, full: full, size: size}
	b.mu.Unlock()
	b.log.Info("backup taken", "file", path, "full", full, "events", res.Events, "from", res.From, "bytes", size,
		"tree_size", res.Checkpoint.Size, "took", time.Since(start).Round(time.Millisecond))
	if err := b.prune(append(files, backupFile{path: path, at: now, full: full})); err != nil {
		b.log.Warn("pruning old backups", "err", err)
	}
	return now.Add(b.cfg.Interval.Duration), nil
}

// prune removes the chains older than the newest cfg.Keep full backups.
func (b *backups) prune(files []backupFile) error {
	var fulls []backupFile
	for _, f := range files {
		if f.full {
			fulls = append(fulls, f)
		}
	}
	if len(fulls) <= b.cfg.Keep {
		return nil
	}
	keepFrom := fulls[len(fulls)-b.cfg.Keep].at
	var errs []error
	for _, f := range files {
		if f.at.Before(keepFrom) {
			if err := os.Remove(f.path); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			} else {
				b.log.Info("old backup removed", "file", f.path, "keep", b.cfg.Keep)
			}
		}
	}
	return errors.Join(errs...)
}

// loop takes backups as they fall due until ctx ends; a failure is retried
// after a tenth of the interval (at most 10 minutes).
func (b *backups) loop(ctx context.Context) {
	for {
		next, err := b.take(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			b.log.Error("scheduled backup failed", "dir", b.cfg.Dir, "err", err)
			if b.failed != nil {
				b.failed.Inc()
			}
			next = b.now().Add(min(b.cfg.Interval.Duration/10, 10*time.Minute))
		}
		timer := time.NewTimer(max(time.Until(next), time.Second))
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
	}
}

// startBackups starts serve's backup schedule when backup.dir is set; stop
// waits for a backup in progress to end.
func startBackups(ctx context.Context, cfg config.Config, st *storage.Store, key *integrity.Key, log *slog.Logger, m *api.Metrics, now func() time.Time) func() {
	if cfg.Backup.Dir == "" {
		return func() {}
	}
	b := &backups{st: st, key: key, cfg: cfg.Backup, log: log, now: now}
	if m != nil {
		b.failed = m.RegisterBackup(b.Last, time.Now())
	}
	bctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.loop(bctx)
	}()
	log.Info("backups scheduled", "dir", cfg.Backup.Dir, "incremental_every", cfg.Backup.Interval, "full_every", cfg.Backup.FullInterval, "keep", cfg.Backup.Keep)
	return func() { cancel(); <-done }
}
