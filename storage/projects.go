package storage

import (
	"context"
	"database/sql"
	"fmt"
)

// Project is one serial seen in the archive, with the project name its
// newest record carries ("" when none does: company-level logs, local
// records).
type Project struct {
	Serial string
	Name   string
}

// maxProjects bounds Projects: a pick list longer than this is no help.
const maxProjects = 5000

// Projects lists the distinct serials, ordered, with their newest names.
// It skips through the serial index one value at a time (a loose index
// scan), so its cost follows the number of projects, not of records.
func (s *Store) Projects(ctx context.Context) ([]Project, error) {
	var rows []struct {
		Serial string         `db:"serial"`
		Name   sql.NullString `db:"name"`
	}
	err := s.reads.SelectContext(ctx, &rows, s.rebind(`-- Projects
		WITH RECURSIVE serials(serial, n) AS (
			SELECT MIN(serial), 1 FROM activity_log
			UNION ALL
			SELECT (SELECT MIN(serial) FROM activity_log WHERE serial > serials.serial), n + 1
			FROM serials WHERE serials.serial IS NOT NULL AND n < ?
		)
		SELECT serial, (SELECT `+s.extraKey("project_name")+` FROM activity_log a WHERE a.serial = serials.serial
			ORDER BY timestamp DESC, id DESC LIMIT 1) AS name
		FROM serials WHERE serial IS NOT NULL ORDER BY serial`), maxProjects)
	if err != nil {
		return nil, fmt.Errorf("listing projects: %w", err)
	}
	out := make([]Project, len(rows))
	for i, r := range rows {
		out[i] = Project{Serial: r.Serial, Name: r.Name.String}
	}
	return out, nil
}
