package console

import (
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/tapd-mirror/tapd-mirror/storage"
)

// accessPageSize is how many trail entries one page shows.
const accessPageSize = 100

type accessRow struct {
	storage.AccessEntry
	When   string
	Params string // key=value, sorted
}

type accessPage struct {
	*view
	Principal, Action, From, To string
	Rows                        []accessRow
	Next                        string // the link to older entries; "" on the last page
	Error                       string
}

// access shows the access trail, newest first: who read, exported or
// changed what. Filters: principal, action, and a date range in the
// configured zone; "before" pages to older entries.
func (c *Console) access(w http.ResponseWriter, r *http.Request, v *view) {
	q := r.URL.Query()
	p := accessPage{view: v, Principal: q.Get("principal"), Action: q.Get("action"), From: q.Get("from"), To: q.Get("to")}
	f := storage.AccessFilter{Principal: p.Principal, Action: p.Action, Newest: true}
	var err error
	if f.From, err = c.day(p.From, 0); err == nil {
		f.To, err = c.day(p.To, 1)
	}
	var before int64
	if err == nil && q.Get("before") != "" {
		if before, err = strconv.ParseInt(q.Get("before"), 10, 64); err != nil || before <= 0 {
			err = fmt.Errorf("before=%q", q.Get("before"))
		}
	}
	if err != nil {
		p.Error = v.T("a.bad_filter", err.Error())
		c.render(w, r, http.StatusBadRequest, "access", p)
		return
	}
	entries, err := c.o.Store.ListAccess(r.Context(), f, accessPageSize, before)
	if err != nil {
		c.internal(w, r, v, "reading the access trail", err)
		return
	}
	noteAccess(r, int64(len(entries)))
	for _, e := range entries {
		var params []string
		for _, k := range slices.Sorted(maps.Keys(e.Params)) {
			params = append(params, k+"="+quoteParam(e.Params[k]))
		}
		p.Rows = append(p.Rows, accessRow{AccessEntry: e, When: v.Time(e.At), Params: strings.Join(params, " ")})
	}
	if len(entries) == accessPageSize {
		next := url.Values{}
		for _, k := range []string{"principal", "action", "from", "to"} {
			if q.Get(k) != "" {
				next.Set(k, q.Get(k))
			}
		}
		next.Set("before", strconv.FormatInt(entries[len(entries)-1].ID, 10))
		p.Next = "/access?" + next.Encode()
	}
	c.render(w, r, http.StatusOK, "access", p)
}

// noteAccess sets the rows of the request's trail entry and adds params
// (key, value pairs) that its URL does not show: form fields.
func noteAccess(r *http.Request, rows int64, params ...string) {
	e := storage.AccessOf(r.Context())
	if e == nil {
		return
	}
	e.Rows = rows
	for i := 0; i+1 < len(params); i += 2 {
		if params[i+1] != "" {
			e.Params[params[i]] = clip(params[i+1])
		}
	}
}

// day reads a YYYY-MM-DD date in the configured zone, plus days; "" is zero.
func (c *Console) day(s string, plus int) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	d, err := time.ParseInLocation("2006-01-02", s, c.o.Location)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not a date like 2026-01-31", s)
	}
	return d.AddDate(0, 0, plus), nil
}

// quoteParam quotes a value that could be read as more than one k=v (a
// space, =, a quote or anything unusual), so a value cannot pose as a field.
func quoteParam(v string) string {
	for _, r := range v {
		if !(unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("._:/-,@+", r)) {
			return strconv.Quote(v)
		}
	}
	return v
}
