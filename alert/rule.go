package alert

import (
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"time"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/integrity"
	"github.com/tapd-mirror/tapd-mirror/storage"
)

// rule is a configured rule compiled for evaluation, with its memory: the
// state of every key, kept in memory and written back (dirty keys only)
// in the transaction that moves the rule's cursor.
type rule struct {
	cfg       config.AlertRule
	cond      string
	loc       *time.Location
	weekdays  [7]bool // match.when: the days (all when none listed)
	from, to  int     // match.when: minutes of the day; from == to: all day
	hasWhen   bool
	outside   bool
	window    int64 // threshold: seconds
	count     int
	suppress  int64 // seconds of record time
	ignoreOld time.Duration

	cursor int64                // the first log index not yet evaluated
	state  map[string]*keyState // key → memory
	dirty  map[string]bool
}

// keyState is one key's memory, stored as JSON in alert_state.
type keyState struct {
	// Matches are a threshold's matching records still within two windows
	// of the newest (record time in Unix seconds, record id), by time: a
	// record arriving up to a window late is still counted.
	Matches [][2]int64 `json:"m,omitempty"`
	Fired   int64      `json:"f,omitempty"` // record time of the last firing
	Seen    bool       `json:"s,omitempty"` // first_seen: the key was seen
}

func compile(c config.AlertRule, loc *time.Location) (*rule, error) {
	c = c.WithDefaults()
	r := &rule{cfg: c, cond: c.Condition(), loc: loc, suppress: int64(c.Suppress.Seconds()),
		ignoreOld: c.IgnoreOlderThan.Duration, state: map[string]*keyState{}, dirty: map[string]bool{}}
	if w := c.Match.When; w != nil {
		r.hasWhen, r.outside = true, w.Outside
		for _, d := range w.Weekdays {
			wd, ok := config.ParseWeekday(d)
			if !ok {
				return nil, fmt.Errorf("alert rule %s: weekday %q", c.Name, d)
			}
			r.weekdays[wd] = true
		}
		if len(w.Weekdays) == 0 {
			r.weekdays = [7]bool{true, true, true, true, true, true, true}
		}
		if w.Hours != "" {
			var err error
			if r.from, r.to, err = config.ParseHours(w.Hours); err != nil {
				return nil, fmt.Errorf("alert rule %s: %w", c.Name, err)
			}
		}
	}
	if t := c.Threshold; t != nil {
		r.window, r.count = int64(t.Window.Seconds()), t.Count
	}
	return r, nil
}

// matches reports whether rec is one the rule looks at.
func (r *rule) matches(rec *integrity.Record) bool {
	m := r.cfg.Match
	eq := func(want, got string) bool { return want == "" || want == got }
	x := rec.Extra
	if !eq(m.ActionType, rec.ActionType) || !eq(m.Username, rec.Username) || !eq(m.Serial, rec.Serial) ||
		!eq(m.Source, rec.Source) || !eq(m.IP, x["ip"]) || !(eq(m.Object, x["operate_object_key"]) || eq(m.Object, x["operate_object"])) {
		return false
	}
	if !r.hasWhen {
		return true
	}
	t := rec.Timestamp.In(r.loc)
	in := r.weekdays[t.Weekday()]
	if in && r.from != r.to {
		min := t.Hour()*60 + t.Minute()
		if r.from < r.to {
			in = min >= r.from && min < r.to
		} else { // wraps midnight
			in = min >= r.from || min < r.to
		}
	}
	return in != r.outside
}

// key is what the rule counts or remembers rec under; "" skips rec (a
// threshold per IP of a record without one).
func (r *rule) key(rec *integrity.Record) string {
	switch {
	case r.cond == "first_seen" && r.cfg.FirstSeen == "ip":
		if rec.Extra["ip"] == "" {
			return ""
		}
		return rec.Username + "|" + rec.Extra["ip"]
	case r.cond == "threshold" && r.cfg.Threshold.Per == "ip":
		return rec.Extra["ip"]
	case r.cond == "threshold" && r.cfg.Threshold.Per == "serial":
		return rec.Serial
	}
	return rec.Username
}

// search is the console search of the records a firing counts.
func (r *rule) search(rec *integrity.Record) string {
	q := url.Values{}
	m := r.cfg.Match
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("action", m.ActionType)
	set("object", m.Object)
	set("project", m.Serial)
	set("ip", m.IP)
	set("user", m.Username)
	switch {
	case r.cond == "threshold" && r.cfg.Threshold.Per == "ip":
		set("ip", rec.Extra["ip"])
	case r.cond == "threshold" && r.cfg.Threshold.Per == "serial":
		set("project", rec.Serial)
	case r.cond == "first_seen" && r.cfg.FirstSeen == "ip":
		set("user", rec.Username)
		set("ip", rec.Extra["ip"])
	default:
		set("user", rec.Username)
	}
	return q.Encode()
}

// evaluate applies rec (log event idx) to the rule's memory and returns
// the firing it causes, if any. A record older than ignore_older_than
// (against now) feeds the memory but never fires.
func (r *rule) evaluate(idx int64, rec *integrity.Record, now time.Time) (storage.AlertFiring, bool) {
	old := r.ignoreOld > 0 && now.Sub(rec.Timestamp) > r.ignoreOld
	switch {
	case old && r.cond == "every":
		return storage.AlertFiring{}, false
	case old && r.cond == "threshold" && rec.Timestamp.Unix() < now.Add(-r.ignoreOld).Unix()-r.window:
		// It can never share a window with a record young enough to fire
		// (a backfill is mostly such records): nothing to remember. In
		// whole seconds, as windows count them.
		return storage.AlertFiring{}, false
	case !r.matches(rec): // after the cheap checks: a match may convert the time to the rules' zone
		return storage.AlertFiring{}, false
	}
	key := r.key(rec)
	if key == "" {
		return storage.AlertFiring{}, false
	}
	st := r.state[key]
	if st == nil {
		st = &keyState{}
		r.state[key] = st
	}
	t := rec.Timestamp.Unix()
	suppressed := st.Fired != 0 && abs(t-st.Fired) < r.suppress
	f := storage.AlertFiring{Rule: r.cfg.Name, Key: key, Condition: r.cond, WindowStart: rec.Timestamp.UTC(),
		WindowEnd: rec.Timestamp.UTC(), Count: 1, FirstRecordID: rec.ID, LastRecordID: rec.ID, LogIndex: idx,
		FiredAt: now.UTC()}
	switch r.cond {
	case "first_seen":
		if st.Seen {
			return storage.AlertFiring{}, false
		}
		st.Seen, r.dirty[key] = true, true
		if old {
			return storage.AlertFiring{}, false
		}
	case "threshold":
		r.dirty[key] = true
		in := r.insert(st, t, rec.ID)
		if old || suppressed || in < 0 {
			return storage.AlertFiring{}, false
		}
		i, j := r.busiest(st.Matches, in)
		if j-i+1 < r.count {
			return storage.AlertFiring{}, false
		}
		first, last := st.Matches[i], st.Matches[j]
		f.WindowStart, f.WindowEnd = time.Unix(first[0], 0).UTC(), time.Unix(last[0], 0).UTC()
		f.FirstRecordID, f.LastRecordID, f.Count = first[1], last[1], int64(j-i+1)
	default: // every
		if old || suppressed {
			return storage.AlertFiring{}, false
		}
	}
	st.Fired, r.dirty[key] = t, true
	f.Search = r.search(rec) // only for a firing: it costs more than the rest
	return f, true
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

// insert adds a match in time order, drops those more than two windows
// older than the newest, and returns where the new one is (-1: itself
// dropped, too late to count).
func (r *rule) insert(st *keyState, t, id int64) int {
	m := st.Matches
	i := len(m)
	if i > 0 && m[i-1][0] > t { // late: records mostly come in time order
		i = sort.Search(len(m), func(k int) bool { return m[k][0] > t })
	}
	m = append(m, [2]int64{})
	copy(m[i+1:], m[i:])
	m[i] = [2]int64{t, id}
	cut := sort.Search(len(m), func(k int) bool { return m[k][0] >= m[len(m)-1][0]-2*r.window })
	if cut > 0 {
		m = append(m[:0], m[cut:]...)
		i -= cut
	}
	st.Matches = m
	return max(i, -1)
}

// busiest is the window of the most matches that holds match at: its
// first and last positions.
func (r *rule) busiest(m [][2]int64, at int) (first, last int) {
	t := m[at][0]
	if at == len(m)-1 { // the newest: the window ending at it
		return sort.Search(len(m), func(k int) bool { return m[k][0] >= t-r.window }), at
	}
	first, last = at, at
	j := at
	for i := sort.Search(len(m), func(k int) bool { return m[k][0] >= t-r.window }); i <= at; i++ {
		for j+1 < len(m) && m[j+1][0] <= m[i][0]+r.window {
			j++
		}
		if j-i > last-first {
			first, last = i, j
		}
	}
	return first, last
}

// encodeState is json.Marshal; a test makes it fail to check that a
// failed step does not leave its matches in memory.
var encodeState = json.Marshal

// flush returns the dirty keys' rows and forgets them; a threshold key
// with no match left and no suppression running is deleted.
func (r *rule) flush(newest int64) ([]storage.AlertStateRow, error) {
	out := make([]storage.AlertStateRow, 0, len(r.dirty))
	for key := range r.dirty {
		st := r.state[key]
		if r.cond == "threshold" && len(st.Matches) == 0 && newest-st.Fired >= r.suppress {
			delete(r.state, key)
			out = append(out, storage.AlertStateRow{Rule: r.cfg.Name, Key: key, Delete: true})
			continue
		}
		b, err := encodeState(st)
		if err != nil {
			return nil, fmt.Errorf("encoding the state of alert rule %s: %w", r.cfg.Name, err)
		}
		out = append(out, storage.AlertStateRow{Rule: r.cfg.Name, Key: key, State: string(b)})
	}
	clear(r.dirty)
	return out, nil
}

// load sets the rule's memory from its stored rows.
func (r *rule) load(rows map[string]string) error {
	for k, v := range rows {
		var st keyState
		if err := json.Unmarshal([]byte(v), &st); err != nil {
			return fmt.Errorf("alert rule %s: state of %q: %w", r.cfg.Name, k, err)
		}
		r.state[k] = &st
	}
	return nil
}
