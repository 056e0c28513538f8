package storage_test

import (
	"context"
	"testing"

	"github.com/jmoiron/sqlx"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
)

// TestTransactionsRetryWhenTheServerDropsThem ends transactions the way a
// failover does — the server terminates the session, or the server is (now)
// read-only — and checks that the store's transaction helper runs them again
// on a new connection, once, while a wrong statement fails at once.
func TestTransactionsRetryWhenTheServerDropsThem(t *testing.T) {
	ctx := context.Background()
	st := storagetest.Open(t, storagetest.URL(t, config.Postgres))
	if _, err := st.DB().ExecContext(ctx, `CREATE TABLE failover_probe (what text)`); err != nil {
		t.Fatal(err)
	}
	for what, fail := range map[string]string{
		"session terminated": `SELECT pg_terminate_backend(pg_backend_pid())`,
		"read-only server":   `SET TRANSACTION READ ONLY; INSERT INTO failover_probe VALUES ('never')`,
	} {
		attempts := 0
		err := storage.InTx(st, ctx, what, func(tx *sqlx.Tx) error {
			if attempts++; attempts == 1 {
				_, err := tx.ExecContext(ctx, fail)
				return err
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO failover_probe VALUES ($1)`, what)
			return err
		})
		var n int
		st.DB().GetContext(ctx, &n, `SELECT COUNT(*) FROM failover_probe WHERE what = $1`, what) //nolint:errcheck // n stays 0
		if err != nil || attempts != 2 || n != 1 {
			t.Errorf("%s: err %v after %d attempts, %d rows; want it run again once and committed", what, err, attempts, n)
		}
	}
	attempts := 0
	err := storage.InIdempotentTx(st, ctx, "bad statement", func(tx *sqlx.Tx) error {
		attempts++
		_, err := tx.ExecContext(ctx, `INSERT INTO no_such_table VALUES (1)`)
		return err
	})
	if err == nil || attempts != 1 {
		t.Errorf("a wrong statement: err %v after %d attempts; want it to fail at once", err, attempts)
	}
}
