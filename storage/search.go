package storage

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/tapd-mirror/tapd-mirror/config"
)

// The console's filters (object, ip, q) and backward keyset paging. Their
// SQL differs by dialect; the indexes that serve them are in migration
// 0006_console, and each expression here must stay the one indexed there.

// extraKey is the SQL of one string field of the extra JSON.
// dialect: JSONB on PostgreSQL, JSON text on SQLite.
func (s *Store) extraKey(key string) string {
	if s.dialect == config.SQLite {
		return "json_extract(extra, '$." + key + "')"
	}
	return "(extra->>'" + key + "')"
}

// minTrigramQuery is the shortest q a trigram index can answer; shorter
// ones scan.
const minTrigramQuery = 3

// searchConds adds the console's filters to a WHERE clause.
func (s *Store) searchConds(f Filter, conds []string, args []any) ([]string, []any) {
	if f.Object != "" {
		conds = append(conds, s.extraKey("operate_object_key")+" = ?")
		args = append(args, f.Object)
	}
	if f.IP != "" {
		conds = append(conds, s.extraKey("ip")+" = ?")
		args = append(args, f.IP)
	}
	if f.Query != "" {
		switch {
		case s.dialect == config.Postgres:
			// pg_trgm's GIN index serves ILIKE for 3+ characters.
			conds = append(conds, `action_detail ILIKE ? ESCAPE '\'`)
			args = append(args, "%"+escapeLike(f.Query)+"%")
		case utf8.RuneCountInString(f.Query) >= minTrigramQuery:
			// A quoted FTS5 phrase over trigrams is a substring match,
			// case-insensitive, with no special characters left to escape.
			conds = append(conds, `id IN (SELECT rowid FROM activity_fts WHERE activity_fts MATCH ?)`)
			args = append(args, `"`+strings.ReplaceAll(f.Query, `"`, `""`)+`"`)
		default:
			conds = append(conds, `action_detail LIKE ? ESCAPE '\'`)
			args = append(args, "%"+escapeLike(f.Query)+"%")
		}
	}
	if f.Before != nil {
		conds = append(conds, "(timestamp, id) > (?, ?)")
		args = append(args, s.timeArg(f.Before.Timestamp), f.Before.ID)
	}
	return conds, args
}

// escapeLike makes q match literally inside a LIKE pattern with ESCAPE '\'.
func escapeLike(q string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(q)
}

// ListActivitiesBefore returns at most limit records just newer than
// f.Before (the page before a keyset position), newest first like
// ListActivities. f.After is ignored.
func (s *Store) ListActivitiesBefore(ctx context.Context, f Filter, limit int) ([]Activity, error) {
	if f.Before == nil {
		return nil, fmt.Errorf("listing the page before a position: no position given")
	}
	f.After = nil
	if rows, ok, err := s.probeText(ctx, f, "ASC", limit, 0); ok || err != nil {
		slices.Reverse(rows)
		return rows, err
	}
	where, args := s.where(f)
	out := []Activity{}
	err := eachActivity(ctx, s.reads, s.rebind(`SELECT `+activityColumns+` FROM activity_log`+where+
		` ORDER BY timestamp ASC, id ASC LIMIT ?`), append(args, limit), func(a Activity) error {
		out = append(out, a)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing the page before a position: %w", err)
	}
	slices.Reverse(out)
	return out, nil
}

// CountActivitiesUpTo counts the records matching f, but where the daily
// counts cannot answer it stops at limit+1: exact reports whether n is the
// whole count (it is when n <= limit). It bounds the cost of a total shown
// beside a page (a broad text search matches millions).
func (s *Store) CountActivitiesUpTo(ctx context.Context, f Filter, limit int64) (n int64, exact bool, err error) {
	f.After, f.Before = nil, nil
	if f.countable() {
		n, err = s.countFast(ctx, f)
		return n, true, err
	}
	where, args := s.where(f)
	if err := s.reads.GetContext(ctx, &n, s.rebind(`-- CountActivitiesUpTo
		SELECT COUNT(*) FROM (SELECT 1 FROM activity_log`+where+` LIMIT ?) AS capped`), append(args, limit+1)...); err != nil {
		return 0, false, fmt.Errorf("counting activities: %w", err)
	}
	return n, n <= limit, nil
}

// probeRows is how many of the rows nearest a page's start probeText reads.
const probeRows = 10000

// probeText answers a page of a text search (q) on SQLite from the
// probeRows rows nearest the page's start in its order, when they hold the
// whole page; ok is false otherwise, and the caller asks the FTS5 index.
// SQLite cannot tell how many rows a MATCH will return, and a common
// substring's full match list costs seconds at a million rows while its
// first page lies within a few hundred rows of the time index. A substring
// rarer than one in probeRows/limit rows falls through to the index, which
// is cheap exactly then. (PostgreSQL's planner makes this choice itself from
// action_detail's statistics; see migration 0006.)
func (s *Store) probeText(ctx context.Context, f Filter, order string, limit, offset int) (rows []Activity, ok bool, err error) {
	if s.dialect != config.SQLite || utf8.RuneCountInString(f.Query) < minTrigramQuery || limit <= 0 || !likeFolds(f.Query) {
		return nil, false, nil
	}
	text := f.Query
	f.Query = ""
	where, args := s.where(f)
	query := `SELECT ` + activityColumns + ` FROM (SELECT ` + activityColumns + ` FROM activity_log` + where +
		` ORDER BY timestamp ` + order + `, id ` + order + ` LIMIT ?) AS nearest
		WHERE action_detail LIKE ? ESCAPE '\' ORDER BY timestamp ` + order + `, id ` + order + ` LIMIT ? OFFSET ?`
	rows = []Activity{}
	err = eachActivity(ctx, s.reads, s.rebind(query), append(args, probeRows, "%"+escapeLike(text)+"%", limit, offset), func(a Activity) error {
		rows = append(rows, a)
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("listing activities: %w", err)
	}
	return rows, len(rows) == limit, nil
}

// likeFolds reports whether SQLite's LIKE, which folds ASCII letters only,
// matches q as the FTS5 index does: q has no letter with a case beyond ASCII.
func likeFolds(q string) bool {
	for _, r := range q {
		if r >= utf8.RuneSelf && (unicode.ToLower(r) != r || unicode.ToUpper(r) != r) {
			return false
		}
	}
	return true
}
