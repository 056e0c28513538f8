package storage

import (
	"context"
	"fmt"
	"strings"
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
	// Grouped by source, not filtered by it: a filter on source leads the
	// planner to the (source, source_id) index and every mirrored row.
	var rows []struct {
		Source string `db:"source"`
		Oldest dbTime `db:"oldest"`
	}
	if err := s.reads.SelectContext(ctx, &rows, s.rebind(`SELECT source, MIN(timestamp) AS oldest FROM activity_log
		WHERE timestamp >= ? AND timestamp < ? GROUP BY source`),
		s.timeArg(s.dayStart(day)), s.timeArg(s.dayStart(day+1))); err != nil {
		return Beyond{}, fmt.Errorf("finding the oldest mirrored record: %w", err)
	}
	b := Beyond{Records: n}
	for _, r := range rows {
		if r.Source == SourceTAPD && !r.Oldest.IsZero() {
			b.Oldest = &r.Oldest.Time
		}
	}
	return b, nil
}

// ReportedBeyond returns, for each of targets, the records it reported
// (membership, see CountReported) that are older than horizon and still in
// the archive (a deleted record's membership stays, but the mirror no
// longer holds it): per target an index range of its rows older than the
// horizon ((workspace_id, timestamp)), and the rows of activity_target
// below it, in one statement per targetsPerStatement targets. The rows are
// grouped by source rather than filtered by it: a filter on source leads
// the planners to the (source, source_id) index and every mirrored row.
func (s *Store) ReportedBeyond(ctx context.Context, horizon time.Time, targets []string) (map[string]Beyond, error) {
	out := make(map[string]Beyond, len(targets))
	h := s.timeArg(horizon)
	for start := 0; start < len(targets); start += targetsPerStatement {
		part := targets[start:min(start+targetsPerStatement, len(targets))]
		q := `SELECT t.target, 'tapd' AS source, COUNT(*) AS n, MIN(t.timestamp) AS oldest FROM activity_target AS t
			WHERE t.target IN (` + strings.TrimSuffix(strings.Repeat("?, ", len(part)), ", ") + `) AND t.timestamp < ?
			AND EXISTS (SELECT 1 FROM activity_log AS a WHERE a.source = 'tapd' AND a.source_id = t.source_id)
			GROUP BY t.target`
		args := make([]any, 0, 4*len(part)+1)
		for _, t := range part {
			args = append(args, t)
		}
		args = append(args, h)
		for _, t := range part {
			q += ` UNION ALL SELECT ?, source, COUNT(*), MIN(timestamp) FROM activity_log WHERE workspace_id = ? AND timestamp < ? GROUP BY source`
			args = append(args, t, t, h)
		}
		var rows []struct {
			Target string `db:"target"`
			Source string `db:"source"`
			N      int64  `db:"n"`
			Oldest dbTime `db:"oldest"`
		}
		if err := s.db.SelectContext(ctx, &rows, s.rebind(q), args...); err != nil {
			return nil, fmt.Errorf("counting records older than TAPD's horizon per target: %w", err)
		}
		for _, r := range rows {
			if r.Source != SourceTAPD {
				continue
			}
			b := out[r.Target]
			b.Records += r.N
			if !r.Oldest.IsZero() && (b.Oldest == nil || r.Oldest.Before(*b.Oldest)) {
				oldest := r.Oldest.Time
				b.Oldest = &oldest
			}
			out[r.Target] = b
		}
	}
	return out, nil
}

// targetsPerStatement keeps ReportedBeyond's compound SELECT far under
// SQLite's limit of 500 terms.
const targetsPerStatement = 100
