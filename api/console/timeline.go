package console

import (
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/tapd-mirror/tapd-mirror/storage"
)

// Granularities of the histogram, finest first.
const (
	byDay   = "day"
	byWeek  = "week"
	byMonth = "month"
)

// maxBars bounds the histogram; a finer granularity asked for over a
// longer range falls back to a coarser one.
const maxBars = 400

type bucket struct {
	Start, End time.Time // [Start, End) in the configured zone
	Count      int64
}

// bar is one drawn bucket, in SVG user units.
type bar struct {
	X, Y, W, H float64
	URL, Label string
	Count      int64
}

type tick struct {
	Pos    float64
	Label  string
	Anchor string // start, middle or end (a class: CSS would override an attribute)
}

// chart is the server-rendered SVG histogram.
type chart struct {
	W, H, Left, Top, PlotW, PlotH float64
	Bars                          []bar
	XTicks, YTicks                []tick
}

type timelinePage struct {
	*view
	filterForm
	By      string
	Chart   *chart
	Buckets []bucket
	Total   string
	Search  string
	ByLinks []option // the granularity switch: Value is the link
	Since   string   // the From chosen when none was given
}

// timeline draws activity per day, week or month for the current search;
// each bar links to the search narrowed to its period.
func (c *Console) timeline(w http.ResponseWriter, r *http.Request, v *view) {
	ctx := r.Context()
	s := c.parseSearch(ctx, r, v)
	p := timelinePage{view: v, filterForm: c.filterForm(ctx, v, s, "/timeline"), Search: s.link("/")}
	if len(s.Errors) > 0 {
		c.render(w, r, http.StatusBadRequest, "timeline", p)
		return
	}
	loc := c.o.Location
	f := s.filter
	from, to := f.Since, f.Until
	if from.IsZero() || to.IsZero() {
		oldest, newest, ok, err := c.o.Store.ActivitySpan(ctx, f)
		if err != nil {
			c.internal(w, r, v, "reading the timeline's span", err)
			return
		}
		if !ok {
			c.render(w, r, http.StatusOK, "timeline", p)
			return
		}
		if to.IsZero() {
			to = newest.Add(time.Second)
		}
		if from.IsZero() {
			// Without a From, the year up to the newest record: every
			// record drawn is a record counted, and all of history at
			// millions of records is not a question to ask by default.
			from = maxTime(oldest, startOf(to.AddDate(-1, 0, 0), byDay, loc))
			p.Since = from.In(loc).Format("2006-01-02")
		}
	}
	f.Since, f.Until = from, to // the span is known: DailyCounts need not look it up again
	days, err := c.o.Store.DailyCounts(ctx, f, loc)
	if err != nil {
		c.internal(w, r, v, "counting per day", err)
		return
	}
	p.By = granularity(r.URL.Query().Get("by"), from, to, loc)
	for _, g := range []string{byDay, byWeek, byMonth} {
		p.ByLinks = append(p.ByLinks, option{Value: s.link("/timeline", "by", g), Label: v.T("t.by", v.T("t."+g)), Selected: g == p.By})
	}
	p.Buckets = buckets(days, from, to, p.By, loc)
	var total int64
	for _, b := range p.Buckets {
		total += b.Count
	}
	p.Total = thousands(total)
	if total > 0 {
		p.Chart = c.draw(v, s, p.Buckets, p.By)
	}
	c.render(w, r, http.StatusOK, "timeline", p)
}

// granularity is the asked-for one (?by=) when it keeps the bars few
// enough, else the next coarser one; by default days up to three months,
// weeks up to three years, months beyond.
func granularity(asked string, from, to time.Time, loc *time.Location) string {
	bars := func(by string) int { return len(bucketStarts(from, to, by, loc)) }
	order := []string{byDay, byWeek, byMonth}
	if i := slices.Index(order, asked); i >= 0 {
		for _, g := range order[i:] {
			if bars(g) <= maxBars {
				return g
			}
		}
		return byMonth
	}
	switch {
	case bars(byDay) <= 92:
		return byDay
	case bars(byWeek) <= 157:
		return byWeek
	}
	return byMonth
}

// startOf is the start of the bucket holding t: midnight, Monday, the 1st.
func startOf(t time.Time, by string, loc *time.Location) time.Time {
	t = t.In(loc)
	day := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, loc)
	switch by {
	case byWeek:
		return day.AddDate(0, 0, -((int(day.Weekday()) + 6) % 7))
	case byMonth:
		return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, loc)
	}
	return day
}

func next(t time.Time, by string) time.Time {
	switch by {
	case byWeek:
		return t.AddDate(0, 0, 7)
	case byMonth:
		return t.AddDate(0, 1, 0)
	}
	return t.AddDate(0, 0, 1)
}

// bucketStarts lists the buckets covering [from, to); at most 10 000.
func bucketStarts(from, to time.Time, by string, loc *time.Location) []time.Time {
	var out []time.Time
	for t := startOf(from, by, loc); t.Before(to) && len(out) < 10000; t = next(t, by) {
		out = append(out, t)
	}
	return out
}

// buckets sums per-day counts into the buckets covering [from, to), empty
// ones included so the time axis is continuous.
func buckets(days []storage.DayCount, from, to time.Time, by string, loc *time.Location) []bucket {
	starts := bucketStarts(from, to, by, loc)
	out := make([]bucket, len(starts))
	for i, s := range starts {
		out[i] = bucket{Start: s, End: next(s, by)}
	}
	i := 0
	for _, d := range days {
		for i < len(out) && !d.Day.Before(out[i].End) {
			i++
		}
		if i == len(out) {
			break
		}
		if !d.Day.Before(out[i].Start) {
			out[i].Count += d.Count
		}
	}
	return out
}

// draw lays the buckets out as bars with axis ticks.
func (c *Console) draw(v *view, s search, bs []bucket, by string) *chart {
	ch := &chart{W: 960, H: 240, Left: 56, Top: 10}
	ch.PlotW, ch.PlotH = ch.W-ch.Left-10, ch.H-ch.Top-34
	var top int64
	for _, b := range bs {
		top = max(top, b.Count)
	}
	slot := ch.PlotW / float64(len(bs))
	gap := 0.0
	if slot > 4 {
		gap = 1
	}
	for i, b := range bs {
		h := float64(b.Count) / float64(top) * ch.PlotH
		if b.Count > 0 && h < 1 {
			h = 1 // a day with one record among thousands is still visible
		}
		ch.Bars = append(ch.Bars, bar{X: ch.Left + float64(i)*slot, Y: ch.Top + ch.PlotH - h, W: slot - gap, H: h,
			URL: c.narrowed(s, b), Label: fmt.Sprintf("%s: %s", period(b, by), thousands(b.Count)), Count: b.Count})
	}
	layout := map[string]string{byDay: "01-02", byWeek: "2006-01-02", byMonth: "2006-01"}[by]
	if by == byDay && len(bs) > 0 && bs[0].Start.Year() != bs[len(bs)-1].Start.Year() {
		layout = "2006-01-02"
	}
	step := max(1, (len(bs)+7)/8)
	for i := 0; i < len(bs); i += step {
		ch.XTicks = append(ch.XTicks, tick{Pos: ch.Left + (float64(i)+0.5)*slot, Label: bs[i].Start.Format(layout)})
	}
	for _, frac := range []float64{0, 0.5, 1} {
		n := int64(float64(top) * frac)
		ch.YTicks = append(ch.YTicks, tick{Pos: ch.Top + ch.PlotH - float64(n)/float64(top)*ch.PlotH, Label: thousands(n)})
	}
	return ch
}

// period names a bucket: its day, or its first and last day.
func period(b bucket, by string) string {
	if by == byDay {
		return b.Start.Format("2006-01-02")
	}
	return b.Start.Format("2006-01-02") + " – " + b.End.AddDate(0, 0, -1).Format("2006-01-02")
}

// narrowed is the search limited to a bucket's days, keeping a typed bound
// that lies inside it.
func (c *Console) narrowed(s search, b bucket) string {
	n := s
	n.From = b.Start.Format("2006-01-02")
	if !s.filter.Since.IsZero() && s.filter.Since.After(b.Start) {
		n.From = s.From
	}
	n.To = b.End.AddDate(0, 0, -1).Format("2006-01-02") // a bare date: through that whole day
	if !s.filter.Until.IsZero() && s.filter.Until.Before(b.End) {
		n.To = s.To
	}
	return n.link("/")
}
