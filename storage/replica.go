package storage

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tapd-mirror/tapd-mirror/config"
)

// UseReplica sends list, count and export reads to a PostgreSQL read
// replica at readURL (database_read_url). Writes, sync state, leases and the
// reads that decide a write (a record read before its deletion) stay on the
// primary. A replica is only as fresh as its replay: ReplicaLag says how far
// behind it is.
func (s *Store) UseReplica(ctx context.Context, readURL string) error {
	dialect, dsn, err := config.ParseDatabaseURL(readURL)
	if err != nil {
		return err
	}
	if dialect != config.Postgres || s.dialect != config.Postgres {
		return fmt.Errorf("database_read_url: a read replica needs PostgreSQL on both sides")
	}
	open := func(conns int) (*sqlx.DB, error) {
		db, err := sqlx.Open(dialect, dsn)
		if err != nil {
			return nil, fmt.Errorf("opening read replica %s: %w", config.RedactDatabaseURL(readURL), scrub(err, readURL))
		}
		db.SetMaxOpenConns(conns)
		db.SetConnMaxIdleTime(5 * time.Minute)
		if err := ping(ctx, db); err != nil {
			db.Close()
			return nil, fmt.Errorf("connecting to read replica %s: %w", config.RedactDatabaseURL(readURL), scrub(err, readURL))
		}
		return db, nil
	}
	reads, err := open(20)
	if err != nil {
		return err
	}
	exports, err := open(DefaultExportConns)
	if err != nil {
		reads.Close()
		return err
	}
	s.exports.Close() //nolint:errcheck // replaced before any use
	s.reads, s.exports = reads, exports
	return nil
}

// ReplicaLag is how far the read side is behind the primary: the time since
// the last transaction the replica replayed, zero when reads go to the
// primary (or to a database that is not replaying, such as a copy).
func (s *Store) ReplicaLag(ctx context.Context) (time.Duration, error) {
	if s.reads == s.db {
		return 0, nil
	}
	var secs sql.NullFloat64
	if err := s.reads.GetContext(ctx, &secs, `SELECT CASE WHEN pg_is_in_recovery()
		THEN COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0) ELSE 0 END`); err != nil {
		return 0, fmt.Errorf("reading the replica's lag: %w", err)
	}
	return time.Duration(secs.Float64 * float64(time.Second)), nil
}
