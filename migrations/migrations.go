// Package migrations holds the embedded SQL schema and applies it in order.
//
// Files are named NNNN_name.sql (both dialects) or NNNN_name.DIALECT.sql
// (postgres or sqlite only). Each file is applied in its own transaction and
// recorded in schema_migrations; on PostgreSQL an advisory lock makes a second
// process wait instead of applying the same file twice.
package migrations

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"time"
)

//go:embed *.sql
var files embed.FS

// advisoryLockKey is an arbitrary constant shared by every tapd-mirror process.
const advisoryLockKey = 0x7a9d_0001

// Migration is one schema file for one dialect.
type Migration struct {
	Version string // "0001_activity_log"
	File    string
	SQL     string
}

// For returns the migrations that apply to dialect, in order.
func For(dialect string) ([]Migration, error) {
	entries, err := fs.ReadDir(files, ".")
	if err != nil {
		return nil, fmt.Errorf("listing embedded migrations: %w", err)
	}
	var out []Migration
	for _, e := range entries {
		name := e.Name()
		base := strings.TrimSuffix(name, ".sql")
		version, only, hasDialect := strings.Cut(base, ".")
		if hasDialect && only != dialect {
			continue
		}
		body, err := files.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("reading migration %s: %w", name, err)
		}
		out = append(out, Migration{Version: version, File: name, SQL: string(body)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i := 1; i < len(out); i++ {
		if out[i].Version == out[i-1].Version {
			return nil, fmt.Errorf("migration %s exists twice for %s (%s, %s)", out[i].Version, dialect, out[i-1].File, out[i].File)
		}
	}
	return out, nil
}

// Apply runs every pending migration and returns the versions it applied.
func Apply(ctx context.Context, db *sql.DB, dialect string) ([]string, error) {
	all, err := For(dialect)
	if err != nil {
		return nil, err
	}
	conn, err := db.Conn(ctx) // one connection: the advisory lock belongs to it
	if err != nil {
		return nil, fmt.Errorf("migrations: getting a connection: %w", err)
	}
	defer conn.Close()
	if dialect == "postgres" {
		if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, advisoryLockKey); err != nil {
			return nil, fmt.Errorf("migrations: taking advisory lock: %w", err)
		}
		defer conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, advisoryLockKey) //nolint:errcheck // closing the conn releases it too
	}
	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    TEXT PRIMARY KEY,
		applied_at TEXT NOT NULL
	)`); err != nil {
		return nil, fmt.Errorf("migrations: creating schema_migrations: %w", err)
	}
	done, err := appliedVersions(ctx, conn)
	if err != nil {
		return nil, err
	}
	var applied []string
	for _, m := range all {
		if done[m.Version] {
			continue
		}
		ok, err := applyOne(ctx, conn, dialect, m)
		if err != nil {
			return applied, err
		}
		if ok {
			applied = append(applied, m.Version)
		}
	}
	return applied, nil
}

// Pending reports which migrations are not yet applied (for readiness checks).
func Pending(ctx context.Context, db *sql.DB, dialect string) ([]string, error) {
	all, err := For(dialect)
	if err != nil {
		return nil, err
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrations: getting a connection: %w", err)
	}
	defer conn.Close()
	done, err := appliedVersions(ctx, conn)
	if err != nil {
		return nil, err
	}
	var pending []string
	for _, m := range all {
		if !done[m.Version] {
			pending = append(pending, m.Version)
		}
	}
	return pending, nil
}

func appliedVersions(ctx context.Context, conn *sql.Conn) (map[string]bool, error) {
	rows, err := conn.QueryContext(ctx, `SELECT version FROM schema_migrations`)
	if err != nil {
		return nil, fmt.Errorf("migrations: reading schema_migrations: %w", err)
	}
	defer rows.Close()
	done := map[string]bool{}
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("migrations: reading schema_migrations: %w", err)
		}
		done[v] = true
	}
	return done, rows.Err()
}

// applyOne applies m unless another process did first; it reports whether it applied.
func applyOne(ctx context.Context, conn *sql.Conn, dialect string, m Migration) (bool, error) {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("migration %s: begin: %w", m.File, err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit
	check, insert := `SELECT COUNT(*) FROM schema_migrations WHERE version = ?`,
		`INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`
	if dialect == "postgres" {
		check, insert = `SELECT COUNT(*) FROM schema_migrations WHERE version = $1`,
			`INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)`
	}
	// SQLite has no advisory lock; its immediate transaction holds the write
	// lock, so this re-check inside the transaction serializes processes.
	var n int
	if err := tx.QueryRowContext(ctx, check, m.Version).Scan(&n); err != nil {
		return false, fmt.Errorf("migration %s: checking schema_migrations: %w", m.File, err)
	}
	if n > 0 {
		return false, nil
	}
	if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
		return false, fmt.Errorf("migration %s: %w", m.File, err)
	}
	if _, err := tx.ExecContext(ctx, insert, m.Version, time.Now().UTC().Format(time.RFC3339)); err != nil {
		return false, fmt.Errorf("migration %s: recording it: %w", m.File, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("migration %s: commit: %w", m.File, err)
	}
	return true, nil
}
