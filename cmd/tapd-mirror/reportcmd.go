package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/integrity"
	"github.com/tapd-mirror/tapd-mirror/report"
	"github.com/tapd-mirror/tapd-mirror/storage"
)

// Hooks of the completeness report into the access trail (issue 23 §1),
// wired where the trail is built; nil: not available, and the report says so.
var (
	// reportAccess reads the access trail of st for a report.
	reportAccess = trailForReport
	// reportRecorded records in the access trail that by made report r.
	reportRecorded = recordReport
)

// reportOptions are the parts of a report's options that come from the
// configuration and the wiring, shared by the command and the console.
func reportOptions(cfg config.Config, st *storage.Store, key *integrity.Key, horizon func() time.Time, now time.Time) report.Options {
	o := report.Options{Store: st, Key: key, Location: cfg.Location(), Now: now, Horizon: horizon()}
	if reportAccess != nil {
		o.Access = reportAccess(st)
	}
	return o
}

// reportMaker makes reports for the console, as the command does.
func reportMaker(cfg config.Config, st *storage.Store, key *integrity.Key, horizon func() time.Time, now func() time.Time) report.Maker {
	return func(ctx context.Context, q report.Request) (report.Made, error) {
		o := reportOptions(cfg, st, key, horizon, now())
		o.From, o.To, o.Workspaces, o.By = q.From, q.To, q.Workspaces, q.By
		return report.Make(ctx, o, q.Lang, q.JSON, reportRecorder(st, q.By))
	}
}

// reportRecorder is the hook for one principal, or nil.
func reportRecorder(st *storage.Store, by string) func(context.Context, report.Report) error {
	if reportRecorded == nil {
		return nil
	}
	return func(ctx context.Context, r report.Report) error { return reportRecorded(ctx, st, by, r) }
}

func (m *Main) reportCmd(ctx context.Context, args []string) error {
	var c common
	fs := m.flags("report", "Write the signed completeness report of a period: per target and calendar month, TAPD's\n"+
		"totals, the records the mirror holds, gaps and who acknowledged them, what only the mirror\n"+
		"still holds, the signed checkpoints, the last database verification and the access trail.\n"+
		"--out FILE.json writes the JSON document for tools, any other name the HTML page.\n"+
		"Check it offline with 'tapd-mirror verify-report FILE --key KEY'.", &c)
	from := fs.String("from", "", "first `date` of the period (YYYY-MM-DD, TAPD's zone; required)")
	to := fs.String("to", "", "last `date` of the period, inclusive (required)")
	var workspaces []string
	fs.Func("workspace", "only this sync `target` (repeat, or comma-separated; default: every target)", func(s string) error {
		for _, w := range strings.Split(s, ",") {
			if w = strings.TrimSpace(w); w != "" {
				workspaces = append(workspaces, w)
			}
		}
		return nil
	})
	lang := fs.String("lang", "en", "language of the HTML page: en or zh")
	out := fs.String("out", "", "report `file` to write (required): .json for the JSON document, else HTML")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *out == "" || *from == "" || *to == "" {
		return usageError{errors.New("report: --from, --to and --out are required")}
	}
	if *lang != "en" && *lang != "zh" {
		return usageError{fmt.Errorf("report: --lang %q: use en or zh", *lang)}
	}
	cfg, log, err := m.setup(c)
	if err != nil {
		return err
	}
	loc := cfg.Location()
	start, err := time.ParseInLocation(time.DateOnly, *from, loc)
	if err != nil {
		return usageError{fmt.Errorf("report: --from %q is not a date (YYYY-MM-DD)", *from)}
	}
	end, err := time.ParseInLocation(time.DateOnly, *to, loc)
	if err != nil {
		return usageError{fmt.Errorf("report: --to %q is not a date (YYYY-MM-DD)", *to)}
	}
	if end.Before(start) {
		return usageError{fmt.Errorf("report: --to %s is before --from %s", *to, *from)}
	}
	st, err := openStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer st.Close()
	key, _, err := signingKey(cfg)
	if err != nil {
		return err
	}
	s, _, err := newSyncer(cfg, st, log, nil, m.Clock)
	if err != nil {
		return err
	}
	o := reportOptions(cfg, st, key, s.Horizon, m.now())
	o.From, o.To, o.Workspaces, o.By = start, end, workspaces, "command"
	made, err := report.Make(ctx, o, *lang, strings.EqualFold(filepath.Ext(*out), ".json"), reportRecorder(st, "command"))
	if errors.Is(err, report.ErrNoTargets) {
		return usageError{err}
	}
	if err != nil {
		return err
	}
	if _, err := writeFileAtomic(*out, func(w io.Writer) error { _, err := w.Write(made.Body); return err }); err != nil {
		return fmt.Errorf("writing the report %s: %w", *out, err)
	}
	t := made.Report.Totals
	fmt.Fprintf(m.Stdout, "wrote %s: %d targets, %d months each, TAPD verified %d, mirror holds %d, %d gaps (%d not acknowledged)\n",
		*out, t.Targets, monthsOf(made.Report), t.TAPDVerified, t.MirrorCount, t.Gaps, t.Unacked)
	fmt.Fprintf(m.Stdout, "check it with: tapd-mirror verify-report %s --key %s\n", *out, made.Report.VerifierKey)
	return nil
}

func monthsOf(r report.Report) int {
	if len(r.Targets) == 0 {
		return 0
	}
	return len(r.Targets[0].Months)
}

func (m *Main) verifyReport(_ context.Context, args []string) error {
	fs := m.flags("verify-report FILE", "Check a completeness report (its HTML page or JSON document) offline against the\n"+
		"archive's verifier key: the signature, the signed copy, every value shown against the\n"+
		"signed one, and (a page) that the page is exactly the one its signed report makes.\n"+
		"Exit code 1 names the first field that does not match.", nil)
	key := fs.String("key", "", "the archive's verifier `key` (name+hash+keydata), or a file holding it (required)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || *key == "" {
		return usageError{errors.New("verify-report: want one report FILE and --key")}
	}
	vkey, err := readVerifierKey(*key)
	if err != nil {
		return usageError{err}
	}
	data, err := os.ReadFile(pos[0])
	if err != nil {
		return fmt.Errorf("reading the report: %w", err)
	}
	r, err := report.Verify(data, vkey)
	if err != nil {
		return exitError{1, fmt.Errorf("%s: %w", pos[0], err)}
	}
	fmt.Fprintf(m.Stdout, "%s: OK, signed by %s: %s to %s, %d targets, generated %s\n", pos[0], r.Archive,
		r.Period.From, r.Period.To, len(r.Targets), r.GeneratedAt.Format(time.RFC3339))
	return nil
}
