// Package storagetest gives tests a fresh, migrated database of each dialect.
//
// PostgreSQL comes from TEST_DATABASE_URL (default: the local trust-auth
// server); each test gets its own database, dropped in t.Cleanup. Without a
// reachable PostgreSQL the postgres subtests skip, except when CI=true, where
// they fail: CI must never go green without having tested PostgreSQL.
package storagetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/lib/pq"

	"github.com/tapd-mirror/tapd-mirror/storage"
)

// DefaultPostgresURL is used when TEST_DATABASE_URL is not set.
const DefaultPostgresURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// Dialects are the databases every storage test runs against.
var Dialects = []string{"sqlite", "postgres"}

// Each runs fn once per dialect as a subtest, with a fresh database URL.
func Each(t *testing.T, fn func(t *testing.T, databaseURL string)) {
	t.Helper()
	for _, d := range Dialects {
		t.Run(d, func(t *testing.T) { fn(t, URL(t, d)) })
	}
}

// EachStore runs fn once per dialect with an open, migrated Store.
func EachStore(t *testing.T, fn func(t *testing.T, s *storage.Store)) {
	t.Helper()
	Each(t, func(t *testing.T, u string) { fn(t, Open(t, u)) })
}

// Open opens and migrates databaseURL, closing it in t.Cleanup.
func Open(t testing.TB, databaseURL string) *storage.Store {
	t.Helper()
	ctx := context.Background()
	s, err := storage.Open(ctx, databaseURL)
	if err != nil {
		t.Fatalf("opening store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.Migrate(ctx); err != nil {
		t.Fatalf("migrating: %v", err)
	}
	return s
}

// URL returns the URL of a fresh, empty database of the given dialect.
func URL(t testing.TB, dialect string) string {
	t.Helper()
	switch dialect {
	case "sqlite":
		return "sqlite:" + filepath.Join(t.TempDir(), "test.db")
	case "postgres":
		return freshPostgres(t)
	}
	t.Fatalf("unknown dialect %q", dialect)
	return ""
}

func freshPostgres(t testing.TB) string {
	t.Helper()
	admin := AdminURL()
	u, drop, err := CreateDatabase(admin)
	if errors.Is(err, errUnreachable) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL is required when CI=true but unreachable at TEST_DATABASE_URL: %v", err)
		}
		t.Skipf("PostgreSQL unreachable, skipping (set CI=true to make this a failure): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := drop(); err != nil {
			t.Error(err)
		}
	})
	return u
}

// AdminURL is TEST_DATABASE_URL or the local default.
func AdminURL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultPostgresURL
}

var errUnreachable = errors.New("PostgreSQL unreachable")

// CreateDatabase creates a fresh, empty database next to the one adminURL
// names and returns its URL and a function that drops it.
func CreateDatabase(adminURL string) (string, func() error, error) {
	db, err := sql.Open("postgres", adminURL)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = db.PingContext(ctx)
		cancel()
	}
	if err != nil {
		if db != nil {
			db.Close()
		}
		return "", nil, fmt.Errorf("%w: %v", errUnreachable, err)
	}
	var b [6]byte
	rand.Read(b[:])
	name := "tapdmirror_test_" + hex.EncodeToString(b[:])
	if _, err := db.Exec(`CREATE DATABASE ` + name); err != nil {
		db.Close()
		return "", nil, fmt.Errorf("creating test database: %w", err)
	}
	drop := func() error {
		defer db.Close()
		if _, err := db.Exec(`DROP DATABASE IF EXISTS ` + name + ` WITH (FORCE)`); err != nil {
			return fmt.Errorf("dropping test database %s: %w", name, err)
		}
		return nil
	}
	u, err := url.Parse(adminURL)
	if err != nil {
		drop()
		return "", nil, fmt.Errorf("parsing TEST_DATABASE_URL: %w", err)
	}
	u.Path = "/" + name
	return u.String(), drop, nil
}
