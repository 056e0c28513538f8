package api

import (
	"net/http"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/storage"
)

// readAlerts: a firing names users, IPs and projects, as detail=1 does, so
// it needs the read scope (open on a loopback install without tokens).
var readAlerts = rule{scope: config.ScopeRead, open: true, what: "reading alert firings"}

func (s *Server) alertRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/alerts", s.guard(readAlerts, s.listAlerts))
	mux.HandleFunc("/api/v1/alerts", s.methodNotAllowed("GET"))
}

// alertFiring is a firing as served: times in Unix seconds like the
// contract's records.
type alertFiring struct {
	ID            int64           `json:"id"`
	Rule          string          `json:"rule"`
	Key           string          `json:"key"`
	Condition     string          `json:"condition"`
	WindowStart   int64           `json:"window_start"`
	WindowEnd     int64           `json:"window_end"`
	Count         int64           `json:"count"`
	FirstRecordID int64           `json:"first_record_id"`
	LastRecordID  int64           `json:"last_record_id"`
	LogIndex      int64           `json:"log_index"`
	FiredAt       int64           `json:"fired_at"`
	Search        string          `json:"search"`
	Deliveries    []alertDelivery `json:"deliveries"`
}

type alertDelivery struct {
	Notifier  string `json:"notifier"`
	Status    string `json:"status"` // pending | sent
	Attempts  int    `json:"attempts"`
	LastError string `json:"last_error"`
	SentAt    *int64 `json:"sent_at"`
	Grouped   int    `json:"grouped"` // firings in the message that carried it
}

// listAlerts: GET /api/v1/alerts?rule=&before=&limit=, newest first;
// next_before, when not null, is the before of the next page.
func (s *Server) listAlerts(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery(r, "rule", "before", "limit")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	limit, err := q.int("limit", 50, 1, 1000)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	before, err := q.int("before", 0, 1, maxInt)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	got, err := s.store.ListAlertFirings(r.Context(), storage.AlertQuery{Rule: q.str("rule"), Before: before, Limit: int(limit) + 1})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var next *int64
	if len(got) > int(limit) {
		got = got[:limit]
		next = &got[len(got)-1].ID
	}
	out := make([]alertFiring, len(got))
	for i, f := range got {
		out[i] = alertFiring{ID: f.ID, Rule: f.Rule, Key: f.Key, Condition: f.Condition, WindowStart: f.WindowStart.Unix(),
			WindowEnd: f.WindowEnd.Unix(), Count: f.Count, FirstRecordID: f.FirstRecordID, LastRecordID: f.LastRecordID,
			LogIndex: f.LogIndex, FiredAt: f.FiredAt.Unix(), Search: f.Search, Deliveries: make([]alertDelivery, len(f.Deliveries))}
		for j, d := range f.Deliveries {
			out[i].Deliveries[j] = alertDelivery{Notifier: d.Notifier, Status: d.Status, Attempts: d.Attempts, LastError: d.LastError, Grouped: d.Grouped}
			if !d.SentAt.IsZero() {
				at := d.SentAt.Unix()
				out[i].Deliveries[j].SentAt = &at
			}
		}
	}
	noteRows(r.Context(), int64(len(out)))
	s.ok(w, map[string]any{"firings": out, "next_before": next})
}
