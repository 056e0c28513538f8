package storage

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/tapd-mirror/tapd-mirror/config"
)

// ExportRow is one record as an export reads it: the columns' bytes as the
// driver hands them over, valid only during the callback (no copy, no
// string per column: exports read millions of rows), and the time as Unix
// seconds. Extra is the stored JSON text (jsonb's on PostgreSQL: not compact).
type ExportRow struct {
	ID           int64
	Platform     []byte
	Serial       []byte
	ActionType   []byte
	ActionDetail []byte
	Username     []byte
	Unix         int64
	Source       []byte
	SourceID     []byte
	WorkspaceID  []byte
	Extra        []byte
	IngestedUnix int64
}

// StreamExportRows calls fn for every record matching f, oldest first, on
// the export pool, one row at a time.
func (s *Store) StreamExportRows(ctx context.Context, f Filter, fn func(*ExportRow) error) error {
	where, args := s.where(f)
	ts, ing := "timestamp", "ingested_at" // dialect: SQLite stores Unix seconds already
	if s.dialect == config.Postgres {
		ts, ing = "CAST(floor(date_part('epoch', timestamp)) AS BIGINT)", "CAST(floor(date_part('epoch', ingested_at)) AS BIGINT)" // float8: cheaper than EXTRACT's numeric; floor like time.Unix
	}
	rows, err := s.exports.QueryContext(ctx, s.rebind(`SELECT id, platform, serial, action_type, action_detail, username, `+ts+
		`, source, COALESCE(source_id, ''), workspace_id, extra, `+ing+` FROM activity_log`+where+` ORDER BY timestamp, id`), args...)
	if err != nil {
		return fmt.Errorf("exporting activities: %w", err)
	}
	defer rows.Close()
	var r ExportRow
	var platform, serial, actionType, detail, username, source, sourceID, workspace, extra sql.RawBytes
	dst := []any{&r.ID, &platform, &serial, &actionType, &detail, &username, &r.Unix, &source, &sourceID, &workspace, &extra, &r.IngestedUnix}
	for rows.Next() {
		if err := rows.Scan(dst...); err != nil {
			return fmt.Errorf("exporting activities: %w", err)
		}
		r.Platform, r.Serial, r.ActionType, r.ActionDetail, r.Username = platform, serial, actionType, detail, username
		r.Source, r.SourceID, r.WorkspaceID, r.Extra = source, sourceID, workspace, extra
		if err := fn(&r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("exporting activities: %w", err)
	}
	return nil
}

// AppendCompactJSON appends stored JSON text without the blanks jsonb puts
// after ':' and ','; see compactStoredJSON.
func AppendCompactJSON(dst, stored []byte) []byte {
	if len(stored) == 0 || stored[0] != '{' {
		return append(dst, unparsedExtra(string(stored))...)
	}
	return appendCompact(dst, stored)
}
