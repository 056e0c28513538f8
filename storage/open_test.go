package storage_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
)

// SQLite's DSN is a file: URI, where ?, # and % mean something: a path that
// holds them must still name exactly that file.
func TestSQLitePathWithURICharactersNamesThatFile(t *testing.T) {
	for _, name := range []string{"a?b.db", "c#d.db", "e%41f.db", "g%3Fh.db", "mode=ro?x.db", "dir?#%/i.db"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, name)
			ctx := context.Background()
			for round := 1; round <= 2; round++ { // the second open must find the first one's row
				s := storagetest.Open(t, "sqlite:"+path)
				if _, err := s.InsertActivity(ctx, storage.Activity{Platform: "p", ActionType: "a"}); err != nil {
					t.Fatal(err)
				}
				if n, err := s.CountActivities(ctx, storage.Filter{}); err != nil || n != int64(round) {
					t.Fatalf("round %d: count = %d, %v: not the same file", round, n, err)
				}
				s.Close()
			}
			if st, err := os.Stat(path); err != nil || st.Size() == 0 {
				t.Fatalf("the named file %q was not used: %v", path, err)
			}
			var files []string
			filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					files = append(files, p)
				}
				return nil
			})
			for _, f := range files {
				if f != path && f != path+"-wal" && f != path+"-shm" {
					t.Fatalf("a different file was created: %q (files: %q)", f, files)
				}
			}
		})
	}
}

func TestSQLiteFileIsPrivate(t *testing.T) {
	root := t.TempDir()
	path := filepath.Join(root, "new", "sub", "m.db")
	s := storagetest.Open(t, "sqlite:"+path)
	if _, err := s.InsertActivity(context.Background(), storage.Activity{Platform: "p", ActionType: "a"}); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{
		filepath.Join(root, "new"):        0o700,
		filepath.Join(root, "new", "sub"): 0o700,
		path:                              0o600,
		path + "-wal":                     0o600,
	} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Mode().Perm(); got != want {
			t.Errorf("%s has mode %o, want %o", p, got, want)
		}
	}
}

func TestGetActivity(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		if _, err := s.UpsertMirrored(ctx, []storage.Activity{mirrored("777", t0, "x")}); err != nil {
			t.Fatal(err)
		}
		rows, _ := s.ListActivities(ctx, storage.Filter{}, 1, 0)
		got, err := s.GetActivity(ctx, rows[0].ID)
		if err != nil || got.Source != storage.SourceTAPD || got.SourceID != "777" || !got.Timestamp.Equal(t0) {
			t.Fatalf("GetActivity = %+v, %v", got, err)
		}
		if _, err := s.GetActivity(ctx, rows[0].ID+1); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("missing id: err = %v, want ErrNotFound", err)
		}
	})
}

func TestOpenErrorsNeverShowThePassword(t *testing.T) {
	for _, u := range []string{
		"postgres://postgres:hunter2hunter2@127.0.0.1:1/x?sslmode=disable&connect_timeout=2",
		"postgres://postgres@127.0.0.1:1/x?sslmode=disable&password=hunter2hunter2&connect_timeout=2",
		"postgres://postgres:hunter2hunter2%zz@127.0.0.1:1/x",
		"host=127.0.0.1 port=1 password=hunter2hunter2",
	} {
		_, err := storage.Open(context.Background(), u)
		if err == nil || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("Open(%s) = %v; want an error without the password", u, err)
		}
	}
}
