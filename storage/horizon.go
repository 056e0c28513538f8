package storage

import (
	"context"
	"fmt"
	"time"
)

// Beyond is what only the mirror still holds: mirrored records older than
// TAPD's horizon, which TAPD no longer answers for.
type Beyond struct {
	Records int64      `json:"records"`
	Oldest  *time.Time `json:"oldest"` // the oldest such record's timestamp; null when there is none
}

// RecordsBeyond counts the mirrored records older than horizon, each once
// however many targets reported it. The count sums the daily counts
// (countFast); the oldest is found in the oldest day the counts hold, an
// index range of one day: neither grows with the archive.
func (s *Store) RecordsBeyond(ctx context.Context, horizon time.Time) (Beyond, error) {
	n, err := s.countFast(ctx, Filter{Source: SourceTAPD, Until: horizon})
	if err != nil {
		return Beyond{}, err
	}
	if n == 0 {
		return Beyond{}, nil
	}
	var day int64
	if err := s.reads.GetContext(ctx, &day, s.rebind(`SELECT MIN(day) FROM activity_daily_total WHERE source = ? AND n > 0`),
		SourceTAPD); err != nil {
		return Beyond{}, fmt.Errorf("finding the oldest day of mirrored records: %w", err)
	}
	var oldest dbTime
	if err := s.reads.GetContext(ctx, &oldest, s.rebind(`SELECT MIN(timestamp) FROM activity_log
		WHERE source = ? AND timestamp >= ? AND timestamp < ?`),
		SourceTAPD, s.timeArg(s.dayStart(day)), s.timeArg(s.dayStart(day+1))); err != nil {
		return Beyond{}, fmt.Errorf("finding the oldest mirrored record: %w", err)
	}
	b := Beyond{Records: n}
	if !oldest.IsZero() {
		b.Oldest = &oldest.Time
	}
	return b, nil
}

// ReportedBeyond returns, per target, the records it reported (membership,
// see CountReported) that are older than horizon and still in the archive
// (a deleted record's membership stays, but the mirror no longer holds it),
// in one statement. The live rows are grouped by source too rather than
// filtered by it: a filter on source would lead the planner to the
// (source, source_id) index and read every mirrored row; grouped, only
// rows older than the horizon are read.
func (s *Store) ReportedBeyond(ctx context.Context, horizon time.Time) (map[string]Beyond, error) {
	var rows []struct {
		Target string `db:"target"`
		Source string `db:"source"`
		N      int64  `db:"n"`
		Oldest dbTime `db:"oldest"`
	}
	h := s.timeArg(horizon)
	if err := s.db.SelectContext(ctx, &rows, s.rebind(`SELECT workspace_id AS target, source, COUNT(*) AS n, MIN(timestamp) AS oldest
		FROM activity_log WHERE timestamp < ? GROUP BY workspace_id, source
		UNION ALL SELECT t.target, 'tapd', COUNT(*), MIN(t.timestamp) FROM activity_target AS t
		WHERE t.timestamp < ? AND EXISTS (SELECT 1 FROM activity_log AS a WHERE a.source = 'tapd' AND a.source_id = t.source_id)
		GROUP BY t.target`), h, h); err != nil {
		return nil, fmt.Errorf("counting records older than TAPD's horizon per target: %w", err)
	}
	out := map[string]Beyond{}
	for _, r := range rows {
		if r.Source != SourceTAPD {
			continue // local records are no target's
		}
		b := out[r.Target]
		b.Records += r.N
		if !r.Oldest.IsZero() && (b.Oldest == nil || r.Oldest.Before(*b.Oldest)) {
			oldest := r.Oldest.Time
			b.Oldest = &oldest
		}
		out[r.Target] = b
	}
	return out, nil
}
