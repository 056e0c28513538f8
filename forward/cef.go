package forward

import (
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

// cef is e as an ArcSight CEF:0 message (README "Forwarding" has the
// field table). Signature ID is the event type and, for records, TAPD's
// action_type ("record:download").
func cef(e Event, version string) string {
	sig, name := e.Type, e.Type
	r := e.Record
	if r != nil {
		sig, name = e.Type+":"+r.ActionType, "TAPD "+r.ActionType
		if r.Object != "" {
			name += " " + r.Object
		}
	}
	var b strings.Builder
	b.WriteString("CEF:0|tapd-mirror|tapd-mirror|")
	for _, h := range []string{version, sig, name} {
		b.WriteString(cefHeader.Replace(h))
		b.WriteByte('|')
	}
	b.WriteString(strconv.Itoa(cefSeverity(e.Type)))
	b.WriteByte('|')
	first := true
	add := func(k, v string) {
		if v == "" {
			return
		}
		if !first {
			b.WriteByte(' ')
		}
		first = false
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(cefValue.Replace(v))
	}
	num := func(v int64) string {
		if v == 0 {
			return ""
		}
		return strconv.FormatInt(v, 10)
	}
	if !e.at.IsZero() {
		add("rt", strconv.FormatInt(e.at.UnixMilli(), 10))
	}
	add("cn1Label", "logIndex")
	add("cn1", strconv.FormatInt(e.Index, 10))
	if e.Checkpoint != nil {
		add("cn2Label", "checkpointSize")
		add("cn2", strconv.FormatInt(e.Checkpoint.Size, 10))
	}
	if r != nil {
		add("externalId", r.SourceID)
		add("cn3Label", "recordId")
		add("cn3", num(r.ID))
		add("act", r.ActionType)
		add("msg", r.ActionDetail)
		add("suser", r.Username)
		if ip, err := netip.ParseAddr(r.IP); err == nil {
			add("src", ip.String())
		}
		add("requestClientApplication", r.UA)
		add("request", r.URL)
		add("cs1Label", "project")
		add("cs1", r.Serial)
		add("cs2Label", "workspace")
		add("cs2", r.WorkspaceID)
		add("cs3Label", "object")
		add("cs3", r.Object)
		add("cs4Label", "title")
		add("cs4", r.Title)
		add("cs5Label", "source")
		add("cs5", r.Source)
		add("cs6Label", "platform")
		add("cs6", r.Platform)
	} else {
		add("act", e.Type)
		add("cn3Label", "recordId")
		add("cn3", num(e.RecordID))
		add("suser", e.Token)
		add("reason", e.Policy)
		if h := e.Hold; h != nil {
			add("cs1Label", "hold")
			add("cs1", h.Name)
			add("reason", h.Reason)
			add("cs2Label", "holdFilter")
			add("cs2", h.Filter)
		}
		if e.Withheld {
			add("cs3Label", "withheld")
			add("cs3", "true")
		}
	}
	if e.Prev != 0 {
		add("cn4Label", "previousIndex")
		add("cn4", strconv.FormatInt(e.Prev, 10))
	}
	return b.String()
}
