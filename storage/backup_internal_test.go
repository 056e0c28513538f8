package storage

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Every table is either copied by a backup, replayed from its events, or
// deliberately left out: a new table must say which.
func TestBackupAccountsForEveryTable(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	var tables []string
	if err := s.db.SelectContext(ctx, &tables, `SELECT name FROM sqlite_master WHERE type = 'table'
		AND name NOT LIKE 'sqlite_%' AND name NOT LIKE 'activity_fts%'`); err != nil {
		t.Fatal(err)
	}
	known := append(slices.Clone(backupReplayed), backupSkipped...)
	for _, st := range stateTables {
		known = append(known, st.name)
	}
	for _, name := range tables {
		if !slices.Contains(known, name) {
			t.Errorf("table %s is neither in stateTables, backupReplayed nor backupSkipped (storage/backup.go)", name)
		}
	}
	if t.Failed() {
		t.Logf("tables: %s", strings.Join(tables, ", "))
	}
}
