package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/lib/pq"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/storage"
)

// Value sets of the generated table, so queries can name a filter value.
var (
	genPlatforms   = []string{"tapd", "tapd", "tapd", "tapd", "tapd", "tapd", "tapd", "tapd", "tiktok", "instagram"}
	genActionTypes = []string{"add", "add", "delete", "upload", "download", "post"}
)

const (
	genSerials   = 50
	genUsernames = 1000
)

var genStart = time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC)

// genRow is the values of row i of the COPY columns below, but timestamp
// and ingested_at, which generate sets.
type genRow func(i int) (platform, serial, actionType, detail, username, sourceID, workspace, extra string)

// plainRow is the queries bench's row: few distinct values per column.
func plainRow(i int) (string, string, string, string, string, string, string, string) {
	return genPlatforms[i%len(genPlatforms)], "S" + strconv.Itoa(i*7%genSerials), genActionTypes[i*13%len(genActionTypes)],
		fmt.Sprintf("需求: generated record %d", i), "user" + strconv.Itoa(i*31%genUsernames), strconv.Itoa(i), "10074561",
		`{"ip":"10.0.0.1"}`
}

// generate loads n rows into a fresh PostgreSQL store the way a DBA would:
// drop the secondary indexes, COPY, rebuild them, VACUUM ANALYZE. Timestamps
// spread over three years.
func (b *bench) generate(ctx context.Context, n int) (*storage.Store, string, func(), error) {
	return b.generateRows(ctx, n, plainRow)
}

// generateRows is generate with rows from row.
func (b *bench) generateRows(ctx context.Context, n int, row genRow) (*storage.Store, string, func(), error) {
	st, u, closeStore, err := b.freshStore(ctx, config.Postgres, "gen")
	if err != nil {
		return nil, "", nil, err
	}
	fail := func(err error) (*storage.Store, string, func(), error) { closeStore(); return nil, "", nil, err }
	db := st.DB()
	var defs []struct {
		Name string `db:"indexname"`
		Def  string `db:"indexdef"`
	}
	if err := db.SelectContext(ctx, &defs, `SELECT indexname, indexdef FROM pg_indexes
		WHERE tablename = 'activity_log' AND indexname <> 'activity_log_pkey'`); err != nil {
		return fail(err)
	}
	for _, d := range defs {
		if _, err := db.ExecContext(ctx, `DROP INDEX `+d.Name); err != nil {
			return fail(err)
		}
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fail(err)
	}
	stmt, err := tx.PrepareContext(ctx, pq.CopyIn("activity_log", "platform", "serial", "action_type", "action_detail",
		"username", "timestamp", "source", "source_id", "workspace_id", "extra", "ingested_at"))
	if err != nil {
		tx.Rollback()
		return fail(err)
	}
	step := 3 * 365 * 24 * time.Hour / time.Duration(n)
	now := time.Now()
	for i := range n {
		ts := genStart.Add(time.Duration(i) * step)
		platform, serial, actionType, detail, username, sourceID, workspace, extra := row(i)
		if _, err := stmt.ExecContext(ctx, platform, serial, actionType, detail, username, ts, "tapd", sourceID,
			workspace, extra, now); err != nil {
			tx.Rollback()
			return fail(err)
		}
	}
	if _, err := stmt.ExecContext(ctx); err != nil {
		tx.Rollback()
		return fail(err)
	}
	stmt.Close()
	if err := tx.Commit(); err != nil {
		return fail(err)
	}
	for _, d := range defs {
		if _, err := db.ExecContext(ctx, d.Def); err != nil {
			return fail(err)
		}
	}
	if _, err := db.ExecContext(ctx, `VACUUM ANALYZE activity_log`); err != nil {
		return fail(err)
	}
	// COPY bypassed the daily counts, as a restore would: rebuild them.
	st.SetCountsZone(time.UTC)
	if err := st.RebuildCounts(ctx); err != nil {
		return fail(err)
	}
	// As for the table: no autovacuum of the fresh counts mid-measurement.
	if _, err := db.ExecContext(ctx, `VACUUM ANALYZE activity_daily, activity_daily_total, activity_hourly`); err != nil {
		return fail(err)
	}
	return st, u, closeStore, nil
}
