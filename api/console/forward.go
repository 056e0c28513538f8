package console

import (
	"net/http"
	"strconv"
	"time"

	"github.com/tapd-mirror/tapd-mirror/forward"
)

type forwardRow struct {
	forward.Status
	State, Lag, LastSuccess, FailingSinceText string
}

type forwardPage struct {
	*view
	Destinations []forwardRow
}

// forwardStatus lists the forwarding destinations (auditors and admins, as GET
// /api/v1/forward: it names where the archive goes and the receivers'
// errors).
func (c *Console) forwardStatus(w http.ResponseWriter, r *http.Request, v *view) {
	p := forwardPage{view: v}
	if c.o.Forward != nil {
		sts, err := c.o.Forward(r.Context())
		if err != nil {
			c.internal(w, r, v, "reading forwarding status", err)
			return
		}
		for _, st := range sts {
			row := forwardRow{Status: st, State: "ok", Lag: v.duration(st.LagSeconds)}
			switch {
			case st.Failing:
				row.State = "failing"
			case st.LastError != "":
				row.State = "retrying"
			}
			if st.LastSuccess != nil {
				row.LastSuccess = v.Time(*st.LastSuccess)
			}
			if st.FailingSince != nil {
				row.FailingSinceText = v.Time(*st.FailingSince)
			}
			p.Destinations = append(p.Destinations, row)
		}
	}
	c.render(w, r, http.StatusOK, "forward", p)
}

// duration is a lag as a person reads it: 0, 42 s, 3 min, 5 h, 2 d.
func (v *view) duration(secs float64) string {
	d := time.Duration(secs * float64(time.Second))
	switch {
	case d < time.Second:
		return "0"
	case d < time.Minute:
		return strconv.Itoa(int(d.Seconds())) + " " + v.T("fw.s")
	case d < time.Hour:
		return strconv.Itoa(int(d.Minutes())) + " " + v.T("fw.min")
	case d < 48*time.Hour:
		return strconv.Itoa(int(d.Hours())) + " " + v.T("fw.h")
	}
	return strconv.Itoa(int(d.Hours()/24)) + " " + v.T("fw.d")
}
