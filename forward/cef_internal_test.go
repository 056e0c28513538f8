package forward

import (
	"strings"
	"testing"
	"time"
)

// TestAccessEntriesInCEFAndOCSF: an access trail entry says who used the
// archive, from where and how it ended, in CEF and OCSF alike.
func TestAccessEntriesInCEFAndOCSF(t *testing.T) {
	e := Event{Index: 42, Type: "access", at: time.UnixMilli(1_700_000_000_123),
		Access: &Access{ID: 7, Principal: "auditor-1", SourceIP: "10.0.0.9", Action: "export", Rows: 12, Outcome: "denied"}}
	c := cef(e, "1.0")
	for _, want := range []string{"CEF:0|tapd-mirror|tapd-mirror|1.0|access|access|5|", "rt=1700000000123", "act=export", "suser=auditor-1",
		"src=10.0.0.9", "outcome=denied", "cn3Label=rows cn3=12", "cn1Label=logIndex cn1=42"} {
		if !strings.Contains(c, want) {
			t.Errorf("CEF lacks %q: %s", want, c)
		}
	}
	if strings.Count(c, " act=")+strings.Count(c, "|act=") != 1 || strings.Count(c, "suser=") != 1 {
		t.Errorf("a key given twice: %s", c)
	}
	o := toOCSFActivity(e)
	if o.Actor.User.Name != "auditor-1" || o.API.Operation != "export" || o.SrcEndpoint.IP != "10.0.0.9" || o.StatusID != 2 ||
		o.ActivityID != 2 || o.TypeUID != 600302 || o.Time != 1_700_000_000_123 || o.Metadata.Sequence != 42 {
		t.Errorf("OCSF %+v", o)
	}
}
