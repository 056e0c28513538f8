package forward

import (
	"strconv"

	"github.com/tapd-mirror/tapd-mirror/internal/jsontext"
)

// appendEvent appends e as the JSON object encoding/json makes of Event
// (field order, omitempty, maps' keys sorted), without HTML escaping.
// Written by hand because every event of every destination goes through
// it: reflection and the extra map cost about half of a destination's CPU.
// An alert has no index (it is not a log event).
func appendEvent(b []byte, e Event) []byte {
	b = append(b, '{')
	if e.Alert == nil {
		b = strconv.AppendInt(append(b, `"index":`...), e.Index, 10)
		b = append(b, ',')
	}
	b = jsontext.AppendString(append(b, `"type":`...), e.Type)
	b = appendInt(b, `,"time":`, e.Time)
	if e.Alert != nil {
		return append(appendAlert(append(b, `,"alert":`...), e.Alert), '}')
	}
	if r := e.Record; r != nil {
		b = appendRecord(append(b, `,"record":`...), r)
	}
	if e.RecordID != 0 {
		b = appendInt(b, `,"record_id":`, e.RecordID)
	}
	if e.Prev != 0 {
		b = appendInt(b, `,"prev":`, e.Prev)
	}
	if e.Token != "" {
		b = appendStr(b, `,"token":`, e.Token)
	}
	if e.Policy != "" {
		b = appendStr(b, `,"policy":`, e.Policy)
	}
	if h := e.Hold; h != nil {
		b = appendInt(b, `,"hold":{"id":`, h.ID)
		b = appendStr(b, `,"name":`, h.Name)
		b = appendStr(b, `,"reason":`, h.Reason)
		b = append(appendStr(b, `,"filter":`, h.Filter), '}')
	}
	if a := e.Access; a != nil {
		b = appendInt(b, `,"access":{"id":`, a.ID)
		b = appendStr(b, `,"principal":`, a.Principal)
		b = appendStr(b, `,"source_ip":`, a.SourceIP)
		b = appendStr(b, `,"forwarded_for":`, a.ForwardedFor)
		b = appendStr(b, `,"action":`, a.Action)
		b = appendMap(append(b, `,"params":`...), a.Params)
		b = appendInt(b, `,"rows":`, a.Rows)
		b = append(appendStr(b, `,"outcome":`, a.Outcome), '}')
	}
	if e.Withheld {
		b = append(b, `,"withheld":true`...)
	}
	if c := e.Checkpoint; c != nil {
		b = appendInt(b, `,"checkpoint":{"size":`, c.Size)
		b = append(appendStr(b, `,"root":`, c.Root), '}')
	}
	return append(b, '}')
}

func appendRecord(b []byte, r *Record) []byte {
	b = appendInt(b, `{"id":`, r.ID)
	b = appendStr(b, `,"platform":`, r.Platform)
	b = appendStr(b, `,"serial":`, r.Serial)
	b = appendStr(b, `,"action_type":`, r.ActionType)
	b = appendStr(b, `,"action_detail":`, r.ActionDetail)
	b = appendStr(b, `,"username":`, r.Username)
	b = appendInt(b, `,"timestamp":`, r.Timestamp)
	b = appendStr(b, `,"source":`, r.Source)
	b = appendStr(b, `,"source_id":`, r.SourceID)
	b = appendStr(b, `,"workspace_id":`, r.WorkspaceID)
	b = appendStr(b, `,"ip":`, r.IP)
	b = appendStr(b, `,"ua":`, r.UA)
	b = appendStr(b, `,"url":`, r.URL)
	b = appendStr(b, `,"object":`, r.Object)
	b = appendStr(b, `,"object_key":`, r.ObjectKey)
	b = appendStr(b, `,"title":`, r.Title)
	b = appendInt(b, `,"ingested_at":`, r.IngestedAt)
	return append(appendMap(append(b, `,"extra":`...), r.Extra), '}')
}

func appendAlert(b []byte, a *Alert) []byte {
	b = appendInt(b, `{"id":`, a.ID)
	b = appendStr(b, `,"rule":`, a.Rule)
	b = appendStr(b, `,"key":`, a.Key)
	b = appendStr(b, `,"condition":`, a.Condition)
	b = appendInt(b, `,"count":`, a.Count)
	b = appendInt(b, `,"window_start":`, a.WindowStart)
	b = appendInt(b, `,"window_end":`, a.WindowEnd)
	b = appendInt(b, `,"first_record_id":`, a.FirstRecordID)
	b = appendInt(b, `,"last_record_id":`, a.LastRecordID)
	b = appendInt(b, `,"log_index":`, a.LogIndex)
	b = appendInt(b, `,"fired_at":`, a.FiredAt)
	if a.URL != "" {
		b = appendStr(b, `,"url":`, a.URL)
	}
	return append(b, '}')
}

// appendInt and appendStr append a member: key is `,"name":`.
func appendInt(b []byte, key string, v int64) []byte {
	return strconv.AppendInt(append(b, key...), v, 10)
}

func appendStr(b []byte, key, v string) []byte {
	return jsontext.AppendString(append(b, key...), v)
}

// appendMap appends m as encoding/json does (null when nil).
func appendMap(b []byte, m map[string]string) []byte {
	if m == nil {
		return append(b, "null"...)
	}
	return jsontext.AppendStringMap(b, m)
}
