package report

import (
	"context"
	"slices"
	"strings"
	"time"
)

// AccessEntry is one entry of the access trail, as far as the report
// summarises it.
type AccessEntry struct {
	At        time.Time
	Principal string // the token's name
	Action    string
	Rows      int64
	Outcome   string
	LogIndex  int64 // its event in the integrity log
}

// AccessSource calls each for every access-trail entry at or after from and
// before to, oldest first, and stops at the first error each returns. The
// serving process wires it to the access trail (storage.ListAccess, keyset
// paged); nil means the trail is not available.
type AccessSource func(ctx context.Context, from, to time.Time, each func(AccessEntry) error) error

// AccessSummary is who did what in the period.
type AccessSummary struct {
	Available bool          `json:"available"`
	Entries   int64         `json:"entries"`
	ByAction  []ActionCount `json:"by_principal_and_action"`
	// Notable lists the first maxNotable exports, deletions and admin
	// actions (of NotableCount), each with its event in the integrity log.
	Notable      []Notable `json:"exports_and_deletions"`
	NotableCount int64     `json:"exports_and_deletions_count"`
}

// ActionCount is how often one principal did one action with one outcome.
type ActionCount struct {
	Principal string `json:"principal"`
	Action    string `json:"action"`
	Outcome   string `json:"outcome"`
	Count     int64  `json:"count"`
	Rows      int64  `json:"rows"`
}

// Notable is an export, a deletion or an admin action.
type Notable struct {
	At        time.Time `json:"at"`
	Principal string    `json:"principal"`
	Action    string    `json:"action"`
	Rows      int64     `json:"rows"`
	Outcome   string    `json:"outcome"`
	LogIndex  int64     `json:"log_index"`
}

const maxNotable = 200

// notable: actions that take evidence out of the archive or remove it, and
// every admin action the trail records (api/access.go accessActions and the
// console's admin forms): they change what the archive holds or claims.
func notable(action string) bool {
	for _, w := range []string{"export", "bundle", "delete", "purge"} {
		if strings.Contains(action, w) {
			return true
		}
	}
	return slices.Contains(adminActions, strings.TrimSuffix(action, ".detail"))
}

var adminActions = []string{"sync.trigger", "gaps.ack", "hold.place", "hold.release", "forward.replay", "console.resync", "console.ack"}

func summarize(ctx context.Context, src AccessSource, from, to time.Time) (AccessSummary, error) {
	s := AccessSummary{ByAction: []ActionCount{}, Notable: []Notable{}}
	if src == nil {
		return s, nil
	}
	s.Available = true
	idx := map[[3]string]int{}
	err := src(ctx, from, to, func(e AccessEntry) error {
		s.Entries++
		k := [3]string{e.Principal, e.Action, e.Outcome}
		i, ok := idx[k]
		if !ok {
			i = len(s.ByAction)
			idx[k] = i
			s.ByAction = append(s.ByAction, ActionCount{Principal: e.Principal, Action: e.Action, Outcome: e.Outcome})
		}
		s.ByAction[i].Count++
		s.ByAction[i].Rows += e.Rows
		if notable(e.Action) {
			s.NotableCount++
			if len(s.Notable) < maxNotable {
				s.Notable = append(s.Notable, Notable{At: e.At.UTC().Truncate(time.Second), Principal: e.Principal, Action: e.Action,
					Rows: e.Rows, Outcome: e.Outcome, LogIndex: e.LogIndex})
			}
		}
		return nil
	})
	slices.SortFunc(s.ByAction, func(a, b ActionCount) int {
		return strings.Compare(a.Principal+"\x00"+a.Action+"\x00"+a.Outcome, b.Principal+"\x00"+b.Action+"\x00"+b.Outcome)
	})
	return s, err
}
