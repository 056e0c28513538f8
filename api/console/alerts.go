package console

import (
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/tapd-mirror/tapd-mirror/storage"
)

// alertsPerPage is how many firings the alerts page lists.
const alertsPerPage = 50

type alertsPage struct {
	*view
	Rule    string
	Firings []firingRow
	Older   string // the next page's link, "" on the last
}

type firingRow struct {
	storage.AlertFiring
	Records string // the console search of its records
}

// alerts lists the alert rules' firings, newest first; each links to the
// search of the records it counted (README "Alerts").
func (c *Console) alerts(w http.ResponseWriter, r *http.Request, v *view) {
	q := r.URL.Query()
	p := alertsPage{view: v, Rule: q.Get("rule")}
	var before int64
	if raw := q.Get("before"); raw != "" {
		var err error
		if before, err = strconv.ParseInt(raw, 10, 64); err != nil || before < 1 {
			c.fail(w, r, v, http.StatusBadRequest, v.T("e.bad_cursor"))
			return
		}
	}
	got, err := c.o.Store.ListAlertFirings(r.Context(), storage.AlertQuery{Rule: p.Rule, Before: before, Limit: alertsPerPage + 1})
	if err != nil {
		c.internal(w, r, v, "listing alert firings", err)
		return
	}
	if len(got) > alertsPerPage {
		got = got[:alertsPerPage]
		next := url.Values{"before": {strconv.FormatInt(got[len(got)-1].ID, 10)}}
		if p.Rule != "" {
			next.Set("rule", p.Rule)
		}
		p.Older = "/alerts?" + next.Encode()
	}
	at := func(t time.Time) string { return t.In(c.o.Location).Format("2006-01-02 15:04:05") }
	for _, f := range got {
		// The search's to is exclusive: one second past the last record.
		s, _ := url.ParseQuery(f.Search)
		s.Set("from", at(f.WindowStart))
		s.Set("to", at(f.WindowEnd.Add(time.Second)))
		p.Firings = append(p.Firings, firingRow{AlertFiring: f, Records: "/?" + s.Encode()})
	}
	c.render(w, r, http.StatusOK, "alerts", p)
}
