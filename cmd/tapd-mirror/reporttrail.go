package main

import (
	"context"
	"strings"
	"time"

	"github.com/tapd-mirror/tapd-mirror/report"
	"github.com/tapd-mirror/tapd-mirror/storage"
)

// trailPage is how many trail entries a report reads per query.
const trailPage = 1000

// trailForReport reads st's access trail for a report: the entries in
// [from, to), oldest first, keyset paged.
func trailForReport(st *storage.Store) report.AccessSource {
	return func(ctx context.Context, from, to time.Time, each func(report.AccessEntry) error) error {
		after := int64(0)
		for {
			page, err := st.ListAccess(ctx, storage.AccessFilter{From: from, To: to}, trailPage, after)
			if err != nil {
				return err
			}
			for _, e := range page {
				if err := each(report.AccessEntry{At: e.At, Principal: e.Principal, Action: e.Action, Rows: e.Rows,
					Outcome: e.Outcome, LogIndex: e.LogIndex}); err != nil {
					return err
				}
			}
			if len(page) < trailPage {
				return nil
			}
			after = page[len(page)-1].ID
		}
	}
}

// recordReport puts a report made by by (a token's name, or "command" for
// the CLI, recorded as cli:<OS user>) in the access trail: action "report",
// with its period and targets.
func recordReport(ctx context.Context, st *storage.Store, by string, r report.Report) error {
	e := &storage.AccessEntry{Principal: by, Action: "report", Outcome: storage.AccessOK, Rows: int64(len(r.Targets)),
		Params: map[string]string{"from": r.Period.From, "to": r.Period.To, "timezone": r.Period.Timezone}}
	if by == "command" {
		e.Principal, e.SourceIP = cliUser(), "local"
	}
	var targets []string
	for _, t := range r.Targets {
		targets = append(targets, t.Target)
	}
	if s := strings.Join(targets, ","); len(s) <= 1000 {
		e.Params["targets"] = s
	}
	return st.AppendAccess(ctx, e)
}
