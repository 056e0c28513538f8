package console

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/tapd-mirror/tapd-mirror/report"
)

// reportPage is the completeness report's form and, once a period is
// asked for, the report's summary with links to its signed page and JSON.
type reportPage struct {
	*view
	Available  bool // a report maker is wired in this process
	From, To   string
	Workspaces string
	Report     *report.Report
	HTMLURL    string
	JSONURL    string
	Targets    []reportTarget
}

type reportTarget struct {
	report.Target
	Months []reportMonth
}

type reportMonth struct {
	report.Month
	Verified, Settle, Mirror, Difference string
	Negative                             bool
}

// report serves GET /report: the form; with from and to, the summary; with
// format=html or json, the signed report itself as a download (the same
// one `tapd-mirror report` writes).
func (c *Console) report(w http.ResponseWriter, r *http.Request, v *view) {
	q := r.URL.Query()
	now := c.o.Now().In(c.o.Location)
	p := reportPage{view: v, Available: c.o.Report != nil,
		// The last 12 months (PCI DSS 10.5.1's year): they reach past
		// TAPD's half year, into what only the mirror still holds.
		From: time.Date(now.Year(), now.Month()-11, 1, 0, 0, 0, 0, c.o.Location).Format(time.DateOnly),
		To:   now.Format(time.DateOnly)}
	if !q.Has("from") && !q.Has("to") {
		c.render(w, r, http.StatusOK, "report", p)
		return
	}
	p.From, p.To, p.Workspaces = q.Get("from"), q.Get("to"), q.Get("workspace")
	from, err1 := time.ParseInLocation(time.DateOnly, p.From, c.o.Location)
	to, err2 := time.ParseInLocation(time.DateOnly, p.To, c.o.Location)
	switch {
	case err1 != nil:
		c.fail(w, r, v, http.StatusBadRequest, v.T("rep.bad_date", v.T("rep.from"), clip(p.From)))
		return
	case err2 != nil:
		c.fail(w, r, v, http.StatusBadRequest, v.T("rep.bad_date", v.T("rep.to"), clip(p.To)))
		return
	case to.Before(from):
		c.fail(w, r, v, http.StatusBadRequest, v.T("rep.backwards"))
		return
	case to.Sub(from) > 5*366*24*time.Hour:
		c.fail(w, r, v, http.StatusBadRequest, v.T("rep.too_long"))
		return
	case c.o.Report == nil:
		c.fail(w, r, v, http.StatusServiceUnavailable, v.T("rep.unavailable"))
		return
	}
	var workspaces []string
	for _, ws := range strings.Split(p.Workspaces, ",") {
		if ws = strings.TrimSpace(ws); ws != "" {
			workspaces = append(workspaces, ws)
		}
	}
	format := q.Get("format")
	if format != "" && format != "html" && format != "json" {
		c.fail(w, r, v, http.StatusBadRequest, v.T("rep.bad_format", clip(format)))
		return
	}
	made, err := c.o.Report(r.Context(), report.Request{From: from, To: to, Workspaces: workspaces, Lang: v.Lang,
		JSON: format != "html", By: v.User})
	if errors.Is(err, report.ErrNoTargets) {
		c.fail(w, r, v, http.StatusNotFound, v.T("rep.unknown_target", clip(p.Workspaces)))
		return
	}
	if err != nil {
		c.internal(w, r, v, "making a completeness report", err)
		return
	}
	if format != "" {
		name := fmt.Sprintf("tapd-mirror-report-%s-%s.%s", made.Report.Period.From, made.Report.Period.To, format)
		ctype := "text/html; charset=utf-8"
		if format == "json" {
			ctype = "application/json"
		}
		w.Header().Set("Content-Type", ctype)
		w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
		w.Write(made.Body) //nolint:errcheck // the client went away
		return
	}
	p.Report = &made.Report
	for _, t := range made.Report.Targets {
		rt := reportTarget{Target: t}
		for _, m := range t.Months {
			rm := reportMonth{Month: m, Mirror: thousands(m.MirrorCount), Verified: "—", Settle: "—", Difference: "—"}
			if m.TAPDVerified != nil {
				rm.Verified = thousands(m.TAPDVerified.Total)
			}
			if m.TAPDSettle != nil {
				rm.Settle = thousands(m.TAPDSettle.Total)
			}
			if m.Difference != nil {
				rm.Difference, rm.Negative = fmt.Sprint(*m.Difference), *m.Difference < 0
			}
			rt.Months = append(rt.Months, rm)
		}
		p.Targets = append(p.Targets, rt)
	}
	link := func(f string) string {
		u := *r.URL
		qq := u.Query()
		qq.Set("format", f)
		u.RawQuery = qq.Encode()
		return u.RequestURI()
	}
	p.HTMLURL, p.JSONURL = link("html"), link("json")
	c.render(w, r, http.StatusOK, "report", p)
}
