// Package storage keeps activity records and sync state in PostgreSQL or
// SQLite behind one Store. It knows SQL, not TAPD's wire format.
//
// Dialect differences are few and marked "dialect:": SQLite has no time type,
// so times are INTEGER Unix seconds there and TIMESTAMPTZ on PostgreSQL.
package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq" // registers "postgres"
	"modernc.org/sqlite"  // registers "sqlite"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/migrations"
)

// ErrNotFound is returned when the asked-for row does not exist.
var ErrNotFound = errors.New("not found")

// Store is the one handle on the database.
type Store struct {
	db *sqlx.DB
	// reads serves list, count and export: the primary (db), or a read
	// replica after UseReplica. Writes, sync state and leases stay on db.
	reads *sqlx.DB
	// exports is a small pool of its own for long-running exports, so slow
	// export clients never take the connections that lists, counts,
	// readiness and sync need.
	exports *sqlx.DB
	dialect string
	dsn     string // scopes SQLite's in-process locks to one file
	// countsZone is the zone whose days the daily counts use (SetCountsZone).
	countsZone *time.Location
	writeMu    sync.Mutex // SQLite: this process's write transactions, one at a time
	noLog      bool       // benchmark baseline only: see WithoutIntegrityLog
	tail       logTail    // the log's recent events, for its consumers (KeepRecentEvents)
	logger     *slog.Logger
}

// SetLogger sets where the store reports what it recovers from (failovers);
// slog.Default until set.
func (s *Store) SetLogger(l *slog.Logger) { s.logger = l }

func (s *Store) log() *slog.Logger {
	if s.logger == nil {
		return slog.Default()
	}
	return s.logger
}

// DefaultExportConns is the export pool's size until SetExportConns.
const DefaultExportConns = 2

// Open connects to database_url ("postgres://…" or "sqlite:PATH") and pings
// it. A new SQLite file is created mode 0600, and missing directories 0700.
func Open(ctx context.Context, databaseURL string) (*Store, error) {
	dialect, dsn, err := config.ParseDatabaseURL(databaseURL)
	if err != nil {
		return nil, err
	}
	if dialect == config.SQLite {
		if dsn, err = sqliteDSN(dsn); err != nil {
			return nil, err
		}
	}
	open := func() (*sqlx.DB, error) {
		db, err := sqlx.Open(dialect, dsn)
		if err != nil {
			return nil, fmt.Errorf("opening %s database %s: %w", dialect, config.RedactDatabaseURL(databaseURL), scrub(err, databaseURL))
		}
		return db, nil
	}
	db, err := open()
	if err != nil {
		return nil, err
	}
	if dialect == config.SQLite {
		db.SetMaxOpenConns(4)
	} else {
		db.SetMaxOpenConns(20)
		db.SetMaxIdleConns(10)
		db.SetConnMaxIdleTime(5 * time.Minute)
	}
	if err := ping(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("connecting to %s database %s: %w", dialect, config.RedactDatabaseURL(databaseURL), scrub(err, databaseURL))
	}
	exports, err := open()
	if err != nil {
		db.Close()
		return nil, err
	}
	exports.SetMaxOpenConns(DefaultExportConns)
	exports.SetMaxIdleConns(1)
	exports.SetConnMaxIdleTime(time.Minute)
	return &Store{db: db, reads: db, exports: exports, dialect: dialect, dsn: dsn}, nil
}

// ping checks the connection. The first connection to a new SQLite file
// switches it to WAL; when several openers race for that switch, SQLite may
// answer SQLITE_BUSY at once instead of waiting (it avoids a deadlock), so a
// busy answer is retried for a while.
func ping(ctx context.Context, db *sqlx.DB) error {
	for attempt := 0; ; attempt++ {
		err := db.PingContext(ctx)
		var busy *sqlite.Error
		if err == nil || !errors.As(err, &busy) || busy.Code()&0xff != sqliteBusy || attempt == 100 {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// sqliteBusy is SQLITE_BUSY, the primary result code of "database is locked".
const sqliteBusy = 5

// sqliteDSN prepares the file at path and returns the driver DSN for it.
func sqliteDSN(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("sqlite path %q: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return "", fmt.Errorf("creating directory for sqlite file: %w", err)
	}
	// Created here, not by SQLite, so that it is private to the service
	// account from the first byte; SQLite gives its -wal and -shm files the
	// same mode. An existing file keeps its mode.
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case err == nil:
		f.Close()
	case !errors.Is(err, fs.ErrExist):
		return "", fmt.Errorf("creating sqlite file: %w", err)
	}
	// The DSN is a "file:" URI: '?' starts its parameters, '#' a fragment and
	// '%' an escape, so those are escaped to keep naming this very file.
	// WAL lets readers run beside the writer; immediate transactions take the
	// write lock up front so two writers queue on busy_timeout instead of
	// failing with SQLITE_BUSY halfway through.
	esc := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(abs)
	return "file:" + esc + "?_pragma=busy_timeout(30000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(ON)&_txlock=immediate", nil
}

// scrub keeps a driver error whole unless its text holds a secret of
// databaseURL, in which case only the masked text is kept.
func scrub(err error, databaseURL string) error {
	if clean := config.Scrub(err.Error(), config.URLSecrets(databaseURL)...); clean != err.Error() {
		return errors.New(clean)
	}
	return err
}

// SetExportConns sizes the export pool: one connection per export allowed
// to run at once.
func (s *Store) SetExportConns(n int) { s.exports.SetMaxOpenConns(n) }

// Close releases the connection pools.
func (s *Store) Close() error {
	errs := []error{s.exports.Close(), s.db.Close()}
	if s.reads != s.db {
		errs = append(errs, s.reads.Close())
	}
	return errors.Join(errs...)
}

// Dialect is config.Postgres or config.SQLite.
func (s *Store) Dialect() string { return s.dialect }

// DB exposes the pool for migrations, locks and benchmarks.
func (s *Store) DB() *sqlx.DB { return s.db }

// Migrate applies pending schema migrations and returns their versions,
// then logs the records that predate the integrity log (BackfillLog: SQL
// cannot compute the hashes, so this step of the upgrade is Go's).
func (s *Store) Migrate(ctx context.Context) ([]string, error) {
	applied, err := migrations.Apply(ctx, s.db.DB, s.dialect)
	if err != nil {
		return applied, err
	}
	if _, err := s.BackfillLog(ctx); err != nil {
		return applied, err
	}
	return applied, nil
}

// Ready reports an error when the database is unreachable or not migrated.
func (s *Store) Ready(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("database unreachable: %w", err)
	}
	pending, err := migrations.Pending(ctx, s.db.DB, s.dialect)
	if err != nil {
		return err
	}
	if len(pending) > 0 {
		return fmt.Errorf("migrations pending: %v", pending)
	}
	return nil
}

// timeArg converts t for use as a query parameter. dialect: see package doc.
func (s *Store) timeArg(t time.Time) any {
	if s.dialect == config.SQLite {
		return t.Unix()
	}
	// PostgreSQL keeps microseconds and would round the rest, which can
	// carry 10:59:59.9999996 into the next hour (and day) after the counts
	// placed it by Go's time; truncated, it stays where it was counted.
	return t.UTC().Truncate(time.Microsecond)
}

// valueRows is the VALUES list of a multi-row INSERT: rows groups of width
// placeholders, "(?, ?), (?, ?)".
func valueRows(rows, width int) string {
	row := "(" + strings.Repeat("?, ", width-1) + "?)"
	return strings.Repeat(row+", ", rows-1) + row
}

// nullTimeArg is timeArg for optional times; the zero time is NULL.
func (s *Store) nullTimeArg(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return s.timeArg(t)
}

// dbTime scans a TIMESTAMPTZ (PostgreSQL) or Unix seconds (SQLite); NULL is the zero time.
type dbTime struct{ time.Time }

func (t *dbTime) Scan(v any) error {
	switch x := v.(type) {
	case nil:
		t.Time = time.Time{}
	case time.Time:
		t.Time = x.UTC()
	case int64:
		t.Time = time.Unix(x, 0).UTC()
	default:
		return fmt.Errorf("cannot read %T as a time", v)
	}
	return nil
}

// inTx runs fn in one transaction, committed only when fn succeeds. When
// PostgreSQL fails over before COMMIT, the transaction is run again on the
// new primary (fn must not leave effects outside tx that a second run would
// double); see retryFailover.
func (s *Store) inTx(ctx context.Context, what string, fn func(tx *sqlx.Tx) error) error {
	return s.runTx(ctx, what, false, fn)
}

// inIdempotentTx is inTx for a transaction whose second run changes nothing
// the first one made (upserts, set-to-value updates): it is run again even
// when the failover broke its COMMIT, whose outcome is then unknown.
func (s *Store) inIdempotentTx(ctx context.Context, what string, fn func(tx *sqlx.Tx) error) error {
	return s.runTx(ctx, what, true, fn)
}

// inTxOnce is inTx without the retry after a failover, for a transaction
// that consumes a stream it cannot read again (a restore): a failover fails
// it, with nothing committed.
func (s *Store) inTxOnce(ctx context.Context, what string, fn func(tx *sqlx.Tx) error) error {
	if s.dialect == config.SQLite {
		s.writeMu.Lock() // dialect: see runTx
		defer s.writeMu.Unlock()
	}
	_, err := s.txAttempt(ctx, what, fn)
	return err
}

func (s *Store) runTx(ctx context.Context, what string, idempotent bool, fn func(tx *sqlx.Tx) error) error {
	if s.dialect == config.SQLite {
		// dialect: SQLite has one writer at a time. Writers of this process
		// queue here, in order, instead of polling in busy_timeout, where a
		// loaded machine can starve one past the timeout. Other processes
		// on the file still queue on busy_timeout.
		s.writeMu.Lock()
		defer s.writeMu.Unlock()
		_, err := s.txAttempt(ctx, what, fn)
		return err
	}
	return s.retryFailover(ctx, idempotent, func() (txOutcome, error) { return s.txAttempt(ctx, what, fn) })
}

// txAttempt runs fn in one transaction once.
func (s *Store) txAttempt(ctx context.Context, what string, fn func(tx *sqlx.Tx) error) (txOutcome, error) {
	rolledBack := func(err error) txOutcome {
		if failedOver(err) && ctx.Err() == nil {
			return txRolledBack
		}
		return txDone
	}
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return rolledBack(err), fmt.Errorf("%s: begin: %w", what, err)
	}
	defer func() {
		if p := recover(); p != nil { // the events it noted must not stay pending
			tx.Rollback() //nolint:errcheck // panicking anyway
			s.tail.ended(tx, false)
			panic(p)
		}
	}()
	if err := fn(tx); err != nil {
		tx.Rollback() //nolint:errcheck // the first error is the one worth reporting
		s.tail.ended(tx, false)
		return rolledBack(err), fmt.Errorf("%s: %w", what, err)
	}
	err = tx.Commit()
	s.tail.ended(tx, err == nil)
	if err != nil {
		outcome := txDone
		if rolledBack(err) == txRolledBack {
			outcome = txMaybeWritten
		}
		return outcome, fmt.Errorf("%s: commit: %w", what, err)
	}
	return txDone, nil
}

// rebind turns ? placeholders into the dialect's.
func (s *Store) rebind(q string) string { return s.db.Rebind(q) }

// isNoRows maps sql.ErrNoRows to ErrNotFound.
func isNoRows(err error) bool { return errors.Is(err, sql.ErrNoRows) }
