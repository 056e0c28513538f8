package console

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/syncer"
)

// runsShown is how many recent runs each workspace lists.
const runsShown = 10

// span is a stretch of the coverage axis, in SVG user units.
type span struct {
	X, W  float64
	Label string
	Acked bool
}

// axis is one workspace's time line: coverage, gaps, TAPD's horizon and
// the records older than it, which only the mirror still holds (drawn
// from the oldest of them to the horizon). Every span and label lies
// inside [0, W]: the lane labels are placed by their estimated width.
type axis struct {
	W, H, Left, PlotW  float64
	Covered, Gaps      []span
	Mirror             *span
	MirrorLabel        *laneLabel // under the grey span
	HorizonX           float64
	HasHorizon         bool
	HorizonLabel       laneLabel
	Ticks              []tick
	StartLabel, EndLbl string
}

// laneLabel is a text under the bars, start-anchored at X.
type laneLabel struct {
	X    float64
	Text string
}

type gapRow struct {
	From, To, Reason string
	Acked            bool
}

type runRow struct {
	storage.SyncRun
	Started, Took, Window string
}

type workspaceView struct {
	syncer.WorkspaceStatus
	Checkpoint, Fresh, Next string
	AtRiskText              string // oldest unfetched minute, and when it leaves TAPD's half year
	Axis                    *axis
	Gaps                    []gapRow
	OpenGaps                bool
	Runs                    []runRow
	Stored                  string
	Beyond                  beyondView
}

// beyondView is what only the mirror holds, as shown: a count and the
// oldest record's time ("" when there is none).
type beyondView struct{ Records, Oldest string }

func (v *view) beyond(b storage.Beyond) beyondView {
	out := beyondView{Records: thousands(b.Records)}
	if b.Oldest != nil {
		out.Oldest = v.Time(*b.Oldest)
	}
	return out
}

type coveragePage struct {
	*view
	NoSyncer   bool
	Workspaces []workspaceView
	CanSince   bool
	Horizon    string
	Beyond     *beyondView // in all, each record once; nil without a horizon or such records
	// QuotaPaused is when TAPD's quota penalty ends, while it lasts.
	QuotaPaused string
}

// quotaPauser is a Syncer that knows TAPD's quota penalty.
type quotaPauser interface{ QuotaPausedUntil() time.Time }

// coverage shows, per workspace, what the mirror verified, its gaps, TAPD's
// horizon and the last runs; admins get resync and acknowledge forms.
func (c *Console) coverage(w http.ResponseWriter, r *http.Request, v *view) {
	p := coveragePage{view: v}
	if c.o.Syncer == nil {
		p.NoSyncer = true
		c.render(w, r, http.StatusOK, "coverage", p)
		return
	}
	_, p.CanSince = c.o.Syncer.(sinceTrigger)
	// Runs are read before the coverage shown: a run commits its coverage
	// before it is marked finished, so a run shown finished has its coverage
	// on the page too (read the other way round, a run finishing between
	// the two reads showed finished beside the coverage from before it).
	// The first status read only names the targets.
	targets, err := c.o.Syncer.Status(r.Context())
	if err != nil {
		c.internal(w, r, v, "reading sync status", err)
		return
	}
	runsOf := map[string][]storage.SyncRun{}
	for _, st := range targets {
		if runsOf[st.Workspace], err = c.o.Store.ListRuns(r.Context(), st.Workspace, "", runsShown, 0); err != nil {
			c.internal(w, r, v, "listing runs", err)
			return
		}
	}
	statuses, err := c.o.Syncer.Status(r.Context())
	if err != nil {
		c.internal(w, r, v, "reading sync status", err)
		return
	}
	var horizon time.Time
	if h, ok := c.o.Syncer.(horizoner); ok {
		horizon = h.Horizon()
		p.Horizon = v.Time(horizon)
		total, err := c.o.Store.RecordsBeyond(r.Context(), horizon)
		if err != nil {
			c.internal(w, r, v, "counting records older than TAPD's horizon", err)
			return
		}
		if total.Records > 0 {
			b := v.beyond(total)
			p.Beyond = &b
		}
	}
	if q, ok := c.o.Syncer.(quotaPauser); ok {
		if until := q.QuotaPausedUntil(); !until.IsZero() {
			p.QuotaPaused = v.Time(until)
		}
	}
	now := c.o.Now()
	for _, st := range statuses {
		wv := workspaceView{WorkspaceStatus: st, Stored: thousands(st.RecordsStored), Beyond: v.beyond(st.BeyondHorizon)}
		if st.Checkpoint != nil {
			wv.Checkpoint = v.Time(*st.Checkpoint)
		}
		if st.FreshAt != nil {
			wv.Fresh = v.Time(*st.FreshAt)
		}
		if st.NextRun != nil {
			wv.Next = v.Time(*st.NextRun)
		}
		if a := st.AtRisk; a != nil {
			wv.AtRiskText = v.Time(a.OldestUnfetched) + " (" + v.Time(a.ExpiresAt) + ", " +
				(time.Duration(a.ExpiresInSeconds) * time.Second).Round(time.Minute).String() + ")"
		}
		for _, g := range st.Gaps {
			wv.Gaps = append(wv.Gaps, gapRow{From: v.Time(g.Start), To: v.Time(g.End), Reason: g.Reason, Acked: g.Acknowledged})
			wv.OpenGaps = wv.OpenGaps || !g.Acknowledged
		}
		wv.Axis = drawAxis(v, st, horizon, now)
		runs, read := runsOf[st.Workspace]
		if !read { // a target listed between the two status reads
			if runs, err = c.o.Store.ListRuns(r.Context(), st.Workspace, "", runsShown, 0); err != nil {
				c.internal(w, r, v, "listing runs", err)
				return
			}
		}
		for _, run := range runs {
			rr := runRow{SyncRun: run, Started: v.Time(run.StartedAt)}
			if !run.FinishedAt.IsZero() {
				rr.Took = run.FinishedAt.Sub(run.StartedAt).Round(time.Second).String()
			}
			if !run.WindowStart.IsZero() {
				rr.Window = v.Time(run.WindowStart) + " – " + v.Time(run.WindowEnd)
			}
			wv.Runs = append(wv.Runs, rr)
		}
		p.Workspaces = append(p.Workspaces, wv)
	}
	c.render(w, r, http.StatusOK, "coverage", p)
}

// drawAxis lays a workspace's coverage out on [oldest known, now]; nil
// before its first committed window.
func drawAxis(v *view, st syncer.WorkspaceStatus, horizon, now time.Time) *axis {
	if len(st.Covered) == 0 && len(st.Gaps) == 0 {
		return nil
	}
	// The axis runs from the oldest span or record known to now, or to the
	// checkpoint when the engine's clock is ahead of this one.
	start, end := now, now
	for _, iv := range st.Covered {
		start, end = minTime(start, iv.Start), maxTime(end, iv.End)
	}
	for _, g := range st.Gaps {
		start, end = minTime(start, g.Start), maxTime(end, g.End)
	}
	beyond := st.BeyondHorizon
	if beyond.Records == 0 || beyond.Oldest == nil || horizon.IsZero() || !beyond.Oldest.Before(horizon) {
		beyond = storage.Beyond{}
	} else {
		start = minTime(start, *beyond.Oldest)
	}
	if !horizon.IsZero() {
		start, end = minTime(start, horizon), maxTime(end, horizon)
	}
	now = end
	ax := &axis{W: 960, H: 96, Left: 8}
	ax.PlotW = ax.W - 2*ax.Left
	total := now.Sub(start)
	if total <= 0 {
		return nil
	}
	x := func(t time.Time) float64 {
		t = minTime(maxTime(t, start), now)
		return ax.Left + float64(t.Sub(start))/float64(total)*ax.PlotW
	}
	stretch := func(from, to time.Time, label string, minW float64) span {
		s := span{X: x(from), W: x(to) - x(from), Label: label}
		if s.W < minW { // a one-minute gap must still show, inside the plot
			s.X, s.W = s.X-(minW-s.W)/2, minW
			s.X = min(max(s.X, ax.Left), ax.Left+ax.PlotW-s.W)
		}
		return s
	}
	for _, iv := range st.Covered {
		ax.Covered = append(ax.Covered, stretch(iv.Start, iv.End, v.T("c.legend_covered")+": "+v.Time(iv.Start)+" – "+v.Time(iv.End), 0))
	}
	for _, g := range st.Gaps {
		label := v.T("c.legend_gap")
		if g.Acknowledged {
			label = v.T("c.legend_acked")
		}
		label += ": " + v.Time(g.Start) + " – " + v.Time(g.End)
		if g.Reason != "" {
			label += " (" + g.Reason + ")"
		}
		s := stretch(g.Start, g.End, label, 3)
		s.Acked = g.Acknowledged
		ax.Gaps = append(ax.Gaps, s)
	}
	if !horizon.IsZero() {
		ax.HasHorizon, ax.HorizonX = true, x(horizon)
		// Right of the line when it fits there, else left of it.
		text := v.T("c.horizon") + ": " + horizon.In(v.loc).Format("2006-01-02")
		at := ax.HorizonX + 4
		if at+labelWidth(text) > ax.W-ax.Left {
			at = ax.HorizonX - 4 - labelWidth(text)
		}
		ax.HorizonLabel = ax.lane(text, at)
		if beyond.Records > 0 {
			text := v.T("c.mirror_span", thousands(beyond.Records), beyond.Oldest.In(v.loc).Format("2006-01-02"))
			m := stretch(*beyond.Oldest, horizon, text, 2)
			ax.Mirror = &m
			l := ax.lane(text, m.X)
			ax.MirrorLabel = &l
		}
	}
	for i := 0; i <= 4; i++ {
		t := start.Add(time.Duration(float64(total) * float64(i) / 4))
		ax.Ticks = append(ax.Ticks, tick{Pos: x(t), Label: t.In(v.loc).Format("2006-01-02"),
			Anchor: []string{"start", "middle", "middle", "middle", "end"}[i]})
	}
	return ax
}

// lane places text start-anchored at x, moved so that it lies inside the
// plot however long it is.
func (ax *axis) lane(text string, x float64) laneLabel {
	return laneLabel{X: max(ax.Left, min(x, ax.Left+ax.PlotW-labelWidth(text))), Text: text}
}

// labelWidth is an upper estimate of text's width in the axis' units at
// the lane's 11px: CJK and other wide characters take a full em, the rest
// at most about 0.65 em in the console's sans-serif fonts.
func labelWidth(text string) float64 {
	w := 0.0
	for _, r := range text {
		switch {
		case r >= 0x1100 && (r <= 0x115f || r >= 0x2e80 && r <= 0xa4cf || r >= 0xac00 && r <= 0xd7a3 ||
			r >= 0xf900 && r <= 0xfaff || r >= 0xfe30 && r <= 0xfe4f || r >= 0xff00 && r <= 0xff60 || r >= 0x20000):
			w += 11
		default:
			w += 7.2
		}
	}
	return w
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// resync triggers a run of one workspace or all: from the checkpoint, in
// full, or since a date, and says on the coverage page what happened.
func (c *Console) resync(w http.ResponseWriter, r *http.Request, v *view) {
	if c.o.Syncer == nil {
		c.fail(w, r, v, http.StatusServiceUnavailable, v.T("c.no_syncer"))
		return
	}
	ws, mode := r.PostForm.Get("workspace"), r.PostForm.Get("mode")
	noteAccess(r, 0, "workspace", ws, "mode", mode, "since", r.PostForm.Get("since"))
	var got syncer.Triggered
	var err error
	switch mode {
	case "since":
		st, ok := c.o.Syncer.(sinceTrigger)
		raw := strings.TrimSpace(r.PostForm.Get("since"))
		since, perr := time.ParseInLocation("2006-01-02", raw, c.o.Location)
		if !ok || perr != nil {
			c.fail(w, r, v, http.StatusBadRequest, v.T("e.bad_since", clip(raw)))
			return
		}
		got, err = st.TriggerSince(r.Context(), ws, since)
	case "full":
		got, err = c.o.Syncer.Trigger(r.Context(), ws, true)
	default:
		got, err = c.o.Syncer.Trigger(r.Context(), ws, false)
	}
	if errors.Is(err, syncer.ErrUnknownWorkspace) {
		c.fail(w, r, v, http.StatusNotFound, v.T("e.unknown_workspace", clip(ws)))
		return
	}
	if err != nil {
		c.internal(w, r, v, "triggering a sync", err)
		return
	}
	c.o.Logger.InfoContext(r.Context(), "console: sync triggered", "user", v.User, "workspace", ws, "mode", mode,
		"queued", len(got.Queued), "already_running", len(got.AlreadyRunning), "failed", len(got.Failed))
	var msg []string
	if len(got.Queued) > 0 {
		msg = append(msg, v.T("c.queued", strings.Join(got.Queued, ", ")))
	}
	if len(got.AlreadyRunning) > 0 {
		var names []string
		for _, a := range got.AlreadyRunning {
			names = append(names, fmt.Sprintf("%s (%s)", a.Workspace, a.Where))
		}
		msg = append(msg, v.T("c.already", strings.Join(names, ", ")))
	}
	if len(got.Failed) > 0 {
		var names []string
		for _, f := range got.Failed {
			names = append(names, fmt.Sprintf("%s: %s", f.Workspace, f.Error))
		}
		msg = append(msg, v.T("c.failed", strings.Join(names, "; ")))
	}
	if len(msg) == 0 {
		msg = append(msg, v.T("c.nothing"))
	}
	c.sessions.setFlash(v.sid, strings.Join(msg, " "))
	http.Redirect(w, r, "/coverage", http.StatusSeeOther)
}

// maxNote bounds an acknowledgement's note.
const maxNote = 1000

// ack acknowledges a workspace's current gaps with a note.
func (c *Console) ack(w http.ResponseWriter, r *http.Request, v *view) {
	if c.o.Syncer == nil {
		c.fail(w, r, v, http.StatusServiceUnavailable, v.T("c.no_syncer"))
		return
	}
	ws, note := r.PostForm.Get("workspace"), strings.TrimSpace(r.PostForm.Get("note"))
	noteAccess(r, 0, "workspace", ws, "note", note)
	if problem := badNote(note); problem != "" {
		c.fail(w, r, v, http.StatusBadRequest, v.T("e.bad_text", v.T("c.ack_note"), problem))
		return
	}
	acked, err := c.o.Syncer.AcknowledgeGaps(storage.WithToken(r.Context(), v.User), ws, note)
	if errors.Is(err, syncer.ErrUnknownWorkspace) {
		c.fail(w, r, v, http.StatusNotFound, v.T("e.unknown_workspace", clip(ws)))
		return
	}
	if err != nil {
		c.internal(w, r, v, "acknowledging gaps", err)
		return
	}
	c.o.Logger.InfoContext(r.Context(), "console: gaps acknowledged", "user", v.User, "workspace", ws,
		"gaps", len(acked), "note", note)
	c.sessions.setFlash(v.sid, v.T("c.acked", len(acked), ws))
	http.Redirect(w, r, "/coverage", http.StatusSeeOther)
}

// badNote is badText allowing newlines, within maxNote characters.
func badNote(s string) string {
	if len([]rune(s)) > maxNote {
		return fmt.Sprintf("at most %d characters", maxNote)
	}
	return badText(strings.NewReplacer("\r\n", "", "\n", "").Replace(s))
}
