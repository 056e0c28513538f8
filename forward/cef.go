package forward

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// cefHeader escapes a CEF header field: backslash and pipe are escaped,
// and a header cannot hold a line break.
var cefHeader = strings.NewReplacer(`\`, `\\`, `|`, `\|`, "\r\n", " ", "\n", " ", "\r", " ")

// cefValue escapes a CEF extension value: backslash, equals sign and line
// breaks (written \n, \r).
var cefValue = strings.NewReplacer(`\`, `\\`, `=`, `\=`, "\r\n", `\n`, "\n", `\n`, "\r", `\r`)

// cefSeverity is 3 for a record, 6 for what removes one (delete, purge), 5
// for holds and releases.
func cefSeverity(typ string) int {
	switch typ {
	case "record", "update":
		return 3
	case "delete", "purge":
		return 6
	}
	return 5
}

// cefMessage builds one CEF:0 message: the header, then extension
// key=value pairs, empty values left out.
type cefMessage struct {
	b     strings.Builder
	first bool
}

func newCEF(version, sig, name string, severity int) *cefMessage {
	m := &cefMessage{first: true}
	m.b.WriteString("CEF:0|tapd-mirror|tapd-mirror|")
	for _, h := range []string{version, sig, name} {
		m.b.WriteString(cefHeader.Replace(h))
		m.b.WriteByte('|')
	}
	m.b.WriteString(strconv.Itoa(severity))
	m.b.WriteByte('|')
	return m
}

func (m *cefMessage) add(k, v string) {
	if v == "" {
		return
	}
	if !m.first {
		m.b.WriteByte(' ')
	}
	m.first = false
	m.b.WriteString(k)
	m.b.WriteByte('=')
	m.b.WriteString(cefValue.Replace(v))
}

// labeled adds a custom field and its label, when it has a value.
func (m *cefMessage) labeled(k, label, v string) {
	if v != "" {
		m.add(k+"Label", label)
		m.add(k, v)
	}
}

// cefNum is v in decimal, or "" (left out) for 0.
func cefNum(v int64) string {
	if v == 0 {
		return ""
	}
	return strconv.FormatInt(v, 10)
}

// cef is e as an ArcSight CEF:0 message (README "Forwarding" has the
// field table). Signature ID is the event type and, for records, TAPD's
// action_type ("record:download").
func cef(e Event, version string) string {
	if e.Alert != nil {
		return cefAlert(e, version)
	}
	sig, name := e.Type, e.Type
	r := e.Record
	if r != nil {
		sig, name = e.Type+":"+r.ActionType, "TAPD "+r.ActionType
		if r.Object != "" {
			name += " " + r.Object
		}
	}
	m := newCEF(version, sig, name, cefSeverity(e.Type))
	add, labeled, num := m.add, m.labeled, cefNum
	if !e.at.IsZero() {
		add("rt", strconv.FormatInt(e.at.UnixMilli(), 10))
	}
	labeled("cn1", "logIndex", strconv.FormatInt(e.Index, 10))
	if e.Checkpoint != nil {
		labeled("cn2", "checkpointSize", strconv.FormatInt(e.Checkpoint.Size, 10))
	}
	if r != nil {
		add("externalId", r.SourceID)
		labeled("cn3", "recordId", num(r.ID))
		add("act", r.ActionType)
		add("msg", r.ActionDetail)
		add("suser", r.Username)
		if ip, err := netip.ParseAddr(r.IP); err == nil {
			add("src", ip.String())
		}
		add("requestClientApplication", r.UA)
		add("request", r.URL)
		labeled("cs1", "project", r.Serial)
		labeled("cs2", "workspace", r.WorkspaceID)
		labeled("cs3", "object", r.Object)
		labeled("cs4", "title", r.Title)
		labeled("cs5", "source", r.Source)
		labeled("cs6", "platform", r.Platform)
	} else {
		if e.Access == nil {
			add("act", e.Type)
		}
		labeled("cn3", "recordId", num(e.RecordID))
		add("suser", e.Token)
		add("reason", e.Policy)
		if h := e.Hold; h != nil {
			labeled("cs1", "hold", h.Name)
			add("reason", h.Reason)
			labeled("cs2", "holdFilter", h.Filter)
		}
		if a := e.Access; a != nil { // an access trail entry: who used the archive
			add("act", a.Action)
			add("suser", a.Principal)
			if ip, err := netip.ParseAddr(a.SourceIP); err == nil {
				add("src", ip.String())
			}
			add("outcome", a.Outcome)
			labeled("cn3", "rows", num(a.Rows))
		}
		if e.Withheld {
			labeled("cs3", "withheld", "true")
		}
	}
	if e.Prev != 0 {
		labeled("cn4", "previousIndex", strconv.FormatInt(e.Prev, 10))
	}
	return m.b.String()
}

// cefAlertSeverity is an alert's CEF severity: high (7-8), as a rule
// fired for a person to look at, above any log event's.
const cefAlertSeverity = 7

// cefAlert is a forward notifier's alert as CEF:0: Signature ID
// "alert:RULE"; the firing id where log events carry their index (cn1,
// externalId); README "Alerts" has the field table.
func cefAlert(e Event, version string) string {
	a := e.Alert
	m := newCEF(version, "alert:"+a.Rule, "tapd-mirror alert "+a.Rule, cefAlertSeverity)
	kv, labeled := m.add, m.labeled
	num := func(v int64) string { return strconv.FormatInt(v, 10) }
	ms := func(unix int64) string {
		if unix == 0 {
			return ""
		}
		return num(unix * 1000)
	}
	kv("rt", ms(a.FiredAt))
	labeled("cn1", "firingId", num(a.ID))
	kv("externalId", num(a.ID))
	kv("cat", "alert")
	kv("msg", fmt.Sprintf("%s fired for %s: %d matching records", a.Rule, a.Key, a.Count))
	labeled("cs1", "rule", a.Rule)
	labeled("cs2", "key", a.Key)
	labeled("cs3", "condition", a.Condition)
	kv("cnt", num(a.Count))
	kv("start", ms(a.WindowStart))
	kv("end", ms(a.WindowEnd))
	labeled("cn2", "firstRecordId", num(a.FirstRecordID))
	labeled("cn3", "lastRecordId", num(a.LastRecordID))
	labeled("cn4", "logIndex", num(a.LogIndex))
	labeled("cs4", "consoleUrl", a.URL)
	return m.b.String()
}
