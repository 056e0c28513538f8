package forward

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/integrity"
	"github.com/tapd-mirror/tapd-mirror/storage"
)

// Event is one line of what destinations receive: an integrity log event,
// with its index so that a duplicate (at-least-once) is recognisable.
type Event struct {
	Index int64  `json:"index"`
	Type  string `json:"type"` // record, update, delete, purge, hold, release, access, alert
	Time  int64  `json:"time"` // Unix seconds: ingested (record, update) or when it happened
	// Record is the record (record) or its new version (update).
	Record *Record `json:"record,omitempty"`
	// RecordID is the record removed (delete, purge), or the record of an
	// event whose content a purge withheld.
	RecordID int64 `json:"record_id,omitempty"`
	// Prev is the index of the event holding the version replaced (update)
	// or removed (delete, purge).
	Prev   int64  `json:"prev,omitempty"`
	Token  string `json:"token,omitempty"`  // the API token that asked (delete, hold, release)
	Policy string `json:"policy,omitempty"` // the retention policy (purge)
	Hold   *Hold  `json:"hold,omitempty"`
	// Access is an access trail entry (access): README "For auditors".
	Access *Access `json:"access,omitempty"`
	// Alert is an alert rule's firing (alert), sent through a forward
	// notifier (README "Alerts"). An alert is not a log event: it has no
	// index (0, omitted) and is identified by Alert.ID instead.
	Alert    *Alert `json:"alert,omitempty"`
	Withheld bool   `json:"withheld,omitempty"` // content removed by a purge: only index, type, record_id
	// Checkpoint is the latest signed checkpoint covering the event when it
	// was delivered (its tree size > index); absent until one is signed.
	Checkpoint *Checkpoint `json:"checkpoint,omitempty"`

	at time.Time // when it happened, in whole seconds (destinations' timestamps)
}

// Checkpoint names a signed checkpoint: GET /api/v1/integrity/checkpoint
// and the proof endpoints take its size.
type Checkpoint struct {
	Size int64  `json:"size"`
	Root string `json:"root"` // base64, as in the signed note
}

// Record is a record with every contract field and the mirror's fields.
type Record struct {
	ID           int64  `json:"id"`
	Platform     string `json:"platform"`
	Serial       string `json:"serial"`
	ActionType   string `json:"action_type"`
	ActionDetail string `json:"action_detail"`
	Username     string `json:"username"`
	Timestamp    int64  `json:"timestamp"`
	Source       string `json:"source"`
	SourceID     string `json:"source_id"` // TAPD's id of a mirrored record
	WorkspaceID  string `json:"workspace_id"`
	IP           string `json:"ip"`
	UA           string `json:"ua"`
	URL          string `json:"url"`
	Object       string `json:"object"`
	ObjectKey    string `json:"object_key"`
	Title        string `json:"title"`
	IngestedAt   int64  `json:"ingested_at"`
	// Extra is every raw TAPD field as stored.
	Extra map[string]string `json:"extra"`
}

// Hold is a legal hold placed or lifted.
type Hold struct {
	ID     int64  `json:"id"`
	Name   string `json:"name"`
	Reason string `json:"reason"`
	Filter string `json:"filter"`
}

// Alert is a firing of an alert rule (GET /api/v1/alerts has the same).
type Alert struct {
	ID        int64  `json:"id"` // the firing's id: a duplicate has the same
	Rule      string `json:"rule"`
	Key       string `json:"key"`       // the username, IP, project or user+IP it fired for
	Condition string `json:"condition"` // every | threshold | first_seen
	Count     int64  `json:"count"`
	// WindowStart and WindowEnd are the times (Unix seconds) of the first
	// and last matching record counted.
	WindowStart   int64  `json:"window_start"`
	WindowEnd     int64  `json:"window_end"`
	FirstRecordID int64  `json:"first_record_id"`
	LastRecordID  int64  `json:"last_record_id"`
	LogIndex      int64  `json:"log_index"` // the integrity log event that fired it
	FiredAt       int64  `json:"fired_at"`
	URL           string `json:"url,omitempty"` // the console search of its records, when console_url is set
}

// Access is an entry of the access trail.
type Access struct {
	ID           int64             `json:"id"`
	Principal    string            `json:"principal"`
	SourceIP     string            `json:"source_ip"`
	ForwardedFor string            `json:"forwarded_for"`
	Action       string            `json:"action"`
	Params       map[string]string `json:"params"`
	Rows         int64             `json:"rows"`
	Outcome      string            `json:"outcome"`
}

func toEvent(le storage.LoggedEvent) Event {
	out := Event{Index: le.Index, Type: string(le.Kind)}
	e := le.Event
	if e == nil {
		out.RecordID, out.Withheld = le.RecordID, true
		return out
	}
	out.at = e.When()
	if e.Record != nil && (e.Kind == integrity.KindRecord || e.Kind == integrity.KindUpdate) {
		out.at = e.Record.Timestamp // when the person acted, the time a SIEM files it under
	}
	// Whole seconds, as the log keeps them: the same event read from
	// memory, a live row or a stored body gets the same timestamp.
	out.at = out.at.Truncate(time.Second)
	out.Time = e.When().Unix()
	out.Prev, out.RecordID, out.Token, out.Policy = e.Prev, e.RecordID, e.Token, e.Policy
	if r := e.Record; r != nil {
		x := r.Extra
		if x == nil {
			x = map[string]string{}
		}
		out.Record = &Record{ID: r.ID, Platform: r.Platform, Serial: r.Serial, ActionType: r.ActionType,
			ActionDetail: r.ActionDetail, Username: r.Username, Timestamp: r.Timestamp.Unix(), Source: r.Source,
			SourceID: r.SourceID, WorkspaceID: r.WorkspaceID, IP: x["ip"], UA: x["ua"], URL: x["url"],
			Object: x["operate_object"], ObjectKey: x["operate_object_key"], Title: x["title"],
			IngestedAt: r.IngestedAt.Unix(), Extra: x}
	}
	if h := e.Hold; h != nil {
		out.Hold = &Hold{ID: h.ID, Name: h.Name, Reason: h.Reason, Filter: h.Filter}
	}
	if a := e.Access; a != nil {
		out.Access = &Access{ID: a.ID, Principal: a.Principal, SourceIP: a.SourceIP, ForwardedFor: a.ForwardedFor,
			Action: a.Action, Params: a.Params, Rows: a.Rows, Outcome: a.Outcome}
	}
	return out
}

// matches reports whether f lets e through. Only record and update events
// are filtered: deletions, purges and holds always pass, so the
// destination's copy can be reconciled. Withheld content matches only an
// empty filter (nothing is known to compare).
func matches(f config.ForwardFilter, e Event) bool {
	if f == (config.ForwardFilter{}) {
		return true
	}
	if e.Type != string(integrity.KindRecord) && e.Type != string(integrity.KindUpdate) {
		return true
	}
	r := e.Record
	if r == nil {
		return false
	}
	eq := func(want, got string) bool { return want == "" || want == got }
	return eq(f.Source, r.Source) && eq(f.Serial, r.Serial) && eq(f.ActionType, r.ActionType) &&
		eq(f.Username, r.Username) && (eq(f.Object, r.ObjectKey) || eq(f.Object, r.Object))
}

// Batch is what one delivery carries: events in log order.
type Batch struct {
	First, Last int64 // the indexes of its first and last event
	Count       int
	Events      []Event
	lines       *sharedLines // nil: each event encoded here
	key         string       // an alert batch's idempotency key (AlertSender's caller's)
}

func newBatch(events []Event, lines *sharedLines) Batch {
	return Batch{First: events[0].Index, Last: events[len(events)-1].Index, Count: len(events), Events: events, lines: lines}
}

// json is event e of the batch in format, encoded once for every
// destination of the forwarder.
func (b Batch) json(format string, e Event) ([]byte, error) {
	if b.lines == nil {
		return encodeJSON(format, e)
	}
	return b.lines.encode(format, e)
}

// encodeJSON is one event as a JSON object in the destination's format
// (json: Event as is, encode.go; ocsf: ocsf.go).
func encodeJSON(format string, e Event) ([]byte, error) {
	if format != "ocsf" {
		// Encoded into a reused buffer, then copied once at its size: the
		// line may be kept (sharedLines), the buffer's slack should not.
		buf := encodeBuffers.Get().(*[]byte)
		line := bytes.Clone(appendEvent((*buf)[:0], e))
		*buf = (*buf)[:0]
		encodeBuffers.Put(buf)
		return line, nil
	}
	line, err := json.Marshal(toOCSF(e))
	if err != nil {
		return nil, fmt.Errorf("encoding event %d: %w", e.Index, err)
	}
	return line, nil
}

var encodeBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// ndjson is the batch as NDJSON lines.
func ndjson(format string, b Batch) ([]byte, error) {
	lines := make([][]byte, len(b.Events))
	size := 0
	for i, e := range b.Events {
		line, err := b.json(format, e)
		if err != nil {
			return nil, err
		}
		lines[i] = line
		size += len(line) + 1
	}
	body := make([]byte, 0, size)
	for _, line := range lines {
		body = append(append(body, line...), '\n')
	}
	return body, nil
}
