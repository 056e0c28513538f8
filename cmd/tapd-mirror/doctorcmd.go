package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tapd-mirror/tapd-mirror/syncer"
	"github.com/tapd-mirror/tapd-mirror/tapd"
)

// doctorReport is what `doctor` prints (and --json encodes).
type doctorReport struct {
	OK       bool              `json:"ok"` // nothing blocks a sync
	BaseURL  string            `json:"base_url"`
	Auth     doctorAuth        `json:"auth"`
	Quota    doctorQuota       `json:"quota"`
	Checks   *syncer.Diagnosis `json:"checks,omitempty"` // absent when TAPD could not be asked
	Blocking []string          `json:"blocking"`
	Requests int               `json:"requests"` // TAPD requests doctor sent, retries included
	Recorded string            `json:"recorded,omitempty"`
}

type doctorAuth struct {
	Method               string  `json:"method"`
	OK                   bool    `json:"ok"`
	TokenLifetimeSeconds float64 `json:"token_lifetime_seconds,omitempty"`
	Error                string  `json:"error,omitempty"`
}

type doctorQuota struct {
	ConfiguredPerMinute int     `json:"configured_per_minute"` // tapd.requests_per_minute (0 = off)
	InUsePerMinute      float64 `json:"in_use_per_minute"`     // lower when TAPD announced less (headers, a 429)
	HeaderLimit         string  `json:"x_ratelimit_limit,omitempty"`
	HeaderRemaining     string  `json:"x_ratelimit_remaining,omitempty"`
	// Refused429 counts TAPD's 429 answers to doctor; TookSeconds is how
	// long doctor took with them (TAPD penalises an account for minutes).
	Refused429  int     `json:"refused_429"`
	TookSeconds float64 `json:"took_seconds,omitempty"`
}

// errBlocked means doctor found a problem that stops a sync (exit code 1).
var errBlocked = errors.New("doctor found problems that block a sync")

func (m *Main) doctor(ctx context.Context, args []string) error {
	var c common
	fs := m.flags("doctor", "Check the configured TAPD account and workspaces before trusting a sync: credentials, tapd.base_url,\n"+
		"every workspace and project, TAPD's quota, horizon and undocumented rules, each target's volume over the half\n"+
		"year and the first backfill's cost and risk. Writes nothing to the archive; what it learns of TAPD is kept\n"+
		"for the sync. Exit code 0: nothing blocks a sync; 1: something does (the report says what); 2: bad usage.", &c)
	asJSON := fs.Bool("json", false, "print the report as JSON")
	record := fs.String("record", "", "save every TAPD request and raw response, credentials and tokens removed, as files in `DIR` (for a bug report)")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, log, err := m.setup(c)
	if err != nil {
		return err
	}
	if len(cfg.Sync.Workspaces) == 0 {
		return errors.New("nothing to check: set sync.workspaces (TAPD_MIRROR_WORKSPACES)")
	}
	// User names and client ids are credentials too in a recording.
	rec, err := tapd.NewRecorder(nil, *record, append(m.secrets, cfg.TAPD.APIUser, cfg.TAPD.ClientID)...)
	if err != nil {
		return err
	}
	st, err := openStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer st.Close()
	s, client, err := newSyncerOver(cfg, st, log, nil, m.Clock, m.Wait, rec)
	if err != nil {
		return err
	}
	r := doctorReport{BaseURL: cfg.TAPD.BaseURL, Blocking: []string{}, Recorded: *record,
		Quota: doctorQuota{ConfiguredPerMinute: max(cfg.TAPD.RequestsPerMinute, 0)}}
	began := m.now()
	auth, err := client.CheckAuth(ctx)
	r.Auth = doctorAuth{Method: auth.Method, OK: err == nil, TokenLifetimeSeconds: auth.TokenLifetime.Seconds()}
	switch {
	case err != nil && ctx.Err() != nil:
		return err
	case err != nil:
		r.Auth.Error = err.Error()
		r.Blocking = append(r.Blocking, authProblem(err))
	default:
		d, err := s.Diagnose(ctx, client.RateLimit)
		if err == nil {
			err = ctx.Err() // stopped: the report would be incomplete
		}
		if err != nil {
			return fmt.Errorf("doctor: %w", err)
		}
		r.Checks = &d
		r.Blocking = append(r.Blocking, d.Blocking...)
	}
	r.Quota.InUsePerMinute = client.RateLimit()
	r.Quota.HeaderLimit, r.Quota.HeaderRemaining = rec.RateLimitHeaders()
	r.Requests = rec.Requests()
	if r.Quota.Refused429 = rec.Refused(); r.Quota.Refused429 > 0 {
		r.Quota.TookSeconds = m.now().Sub(began).Seconds()
	}
	r.OK = len(r.Blocking) == 0
	if *asJSON {
		enc := json.NewEncoder(m.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			return err
		}
	} else {
		printDoctor(m.Stdout, r, cfg.Location())
	}
	if err := rec.Err(); err != nil {
		return err
	}
	if !r.OK {
		return fmt.Errorf("%w: %s", errBlocked, strings.Join(r.Blocking, "; "))
	}
	return nil
}

// authProblem says what a failed credentials check means.
func authProblem(err error) string {
	switch {
	case errors.Is(err, tapd.ErrBaseURL):
		return "tapd.base_url is not the TAPD API: " + err.Error()
	case errors.Is(err, tapd.ErrAuth):
		return "TAPD refused the credentials: " + err.Error()
	}
	return "TAPD could not be asked: " + err.Error()
}

func printDoctor(w io.Writer, r doctorReport, loc *time.Location) {
	ts := func(t time.Time) string { return t.In(loc).Format("2006-01-02 15:04") }
	line := func(ok bool, format string, a ...any) {
		mark := "ok  "
		if !ok {
			mark = "FAIL"
		}
		fmt.Fprintf(w, "  %s  %s\n", mark, fmt.Sprintf(format, a...))
	}
	fmt.Fprintf(w, "TAPD at %s\n", r.BaseURL)
	if r.Auth.OK {
		line(true, "tapd.base_url answers as the TAPD API")
		how := map[string]string{tapd.AuthBasic: "api_user/api_password (Basic)", tapd.AuthToken: "access_token (Bearer)",
			tapd.AuthOAuthApp: "OAuth app (client_id/client_secret)", tapd.AuthNone: "none"}[r.Auth.Method]
		if r.Auth.TokenLifetimeSeconds > 0 {
			how += fmt.Sprintf(", tokens live %s (renewed at 80 %%)", time.Duration(r.Auth.TokenLifetimeSeconds*float64(time.Second)))
		}
		line(true, "credentials accepted: %s", how)
	} else {
		line(false, "%s", r.Blocking[0])
	}
	q := r.Quota
	quota := fmt.Sprintf("quota: tapd.requests_per_minute %d, in use %.0f/min", q.ConfiguredPerMinute, q.InUsePerMinute)
	if q.InUsePerMinute > 0 && q.ConfiguredPerMinute > 0 && q.InUsePerMinute < float64(q.ConfiguredPerMinute) {
		quota += " (lowered to what TAPD announced: X-RateLimit-Limit, or a 429's text)"
	}
	if q.HeaderLimit != "" {
		quota += fmt.Sprintf("; TAPD's X-RateLimit-Limit %s, X-RateLimit-Remaining %s", q.HeaderLimit, q.HeaderRemaining)
	} else {
		quota += "; TAPD sent no X-RateLimit headers"
	}
	line(true, "%s", quota)
	if q.Refused429 > 0 {
		// Not blocking: the sync waits a penalty out the same way. But a
		// penalty now means the account's quota is already being spent.
		fmt.Fprintf(w, "  WARN  TAPD refused %d request(s) with 429; doctor waited for the account's penalty to pass and took %s: something else (another mirror, a script) may be spending this account's quota, or tapd.requests_per_minute is above it\n",
			q.Refused429, time.Duration(q.TookSeconds*float64(time.Second)).Round(time.Second))
	}
	d := r.Checks
	if d != nil {
		learned := func(by string) string {
			return map[string]string{"doctor": "learned now, kept for the sync", "earlier": "learned before"}[by]
		}
		if d.EndTime.Value != "" {
			line(true, "end_time hh:mm is %s of its minute's seconds (%s)", d.EndTime.Value, learned(d.EndTime.LearnedBy))
		} else {
			line(true, "end_time's meaning: unknown yet (no record to probe with)")
		}
		if cw := d.CompanyWide; cw != nil {
			what := map[string]string{"yes": "includes", "no": "does not include", "": "may or may not include (unknown: no company-level record to tell by)"}[cw.Includes]
			line(true, "company %s: the company-wide query %s company-level logs (%s)", cw.Company, what, learned(cw.LearnedBy))
		}
		h := d.Horizon
		switch {
		case h.Error != "":
			line(true, "horizon: could not be checked: %s", h.Error)
		case h.Refused:
			line(false, "horizon: TAPD refuses start_time before %s; tapd.horizon_days %d says %s", ts(h.Oldest), h.Days, ts(h.Configured))
		case h.Earlier:
			line(true, "horizon: TAPD answers from %s (tapd.horizon_days %d) and even a day before", ts(h.Configured), h.Days)
		default:
			line(true, "horizon: TAPD answers from %s (tapd.horizon_days %d)", ts(h.Configured), h.Days)
		}
		fmt.Fprintln(w, "\nWorkspaces")
		for _, e := range d.Entries {
			if e.Error != "" {
				fmt.Fprintf(w, "  %-16s FAIL  %s\n", e.Entry, e.Error)
				continue
			}
			fmt.Fprintf(w, "  %-16s %d target(s)", e.Entry, len(e.Targets))
			if len(e.Projects) > 0 {
				fmt.Fprintf(w, ", %d project(s)", len(e.Projects))
			}
			fmt.Fprintln(w)
			for _, p := range e.Projects {
				fmt.Fprintf(w, "      %-12s %-8s %s\n", p.ID, p.Status, p.Name)
			}
		}
		fmt.Fprintln(w, "\nVolume over the half year (records per month, oldest first) and backfill requests")
		for _, v := range d.Targets {
			months := make([]string, len(v.Months))
			for i, mv := range v.Months {
				months[i] = fmt.Sprintf("%s %d", mv.Start.In(loc).Format("2006-01"), mv.Records)
			}
			fmt.Fprintf(w, "  %-16s %8d records %6d requests  %s\n", v.Target, v.Records, v.Requests, strings.Join(months, ", "))
			if v.Error != "" {
				fmt.Fprintf(w, "  %-16s FAIL  %s\n", "", v.Error)
			}
			if v.AtRisk != nil {
				fmt.Fprintf(w, "  %-16s at risk: its oldest %.1f minutes (~%d records) expire before the backfill reaches them\n", "", v.AtRisk.Minutes, v.AtRisk.Records)
			}
		}
		e := d.Estimate
		fmt.Fprintf(w, "\nFirst backfill: about %d requests for %d records", e.Requests, e.Records)
		if e.PerMinute > 0 {
			fmt.Fprintf(w, ", %.1f minutes at %.0f requests/minute", e.Minutes, e.PerMinute)
		}
		fmt.Fprintf(w, "; records that would expire before they are reached: %d\n", e.AtRisk)
		for _, a := range d.Alternatives {
			fmt.Fprintf(w, "  %s instead of %s: about %d requests (configured: %d)\n", a.Use, a.Instead, a.Requests, a.Was)
		}
		if len(d.Advice) > 0 {
			fmt.Fprintln(w, "\nAdvice")
			for _, a := range d.Advice {
				fmt.Fprintf(w, "  - %s\n", a)
			}
		}
	}
	if len(r.Blocking) > 0 {
		fmt.Fprintln(w, "\nBlocking a sync")
		for _, b := range r.Blocking {
			fmt.Fprintf(w, "  - %s\n", b)
		}
	} else {
		fmt.Fprintln(w, "\nNothing blocks a sync.")
	}
	fmt.Fprintf(w, "\nTAPD requests sent by doctor: %d", r.Requests)
	if r.Recorded != "" {
		fmt.Fprintf(w, " (each saved in %s, credentials and tokens removed)", r.Recorded)
	}
	fmt.Fprintln(w)
}
