package forward

import (
	"strconv"
	"strings"
)

// OCSF is the schema version the ocsf format follows.
const OCSF = "1.3.0"

// ocsfEvent is an event in OCSF's API Activity class (6003, category 6
// Application Activity): a TAPD activity record is a person's call to the
// TAPD service (an operation on an object, from an IP with a user agent),
// which is that class's shape; README "Forwarding" has the field table.
type ocsfEvent struct {
	ClassUID    int            `json:"class_uid"`
	CategoryUID int            `json:"category_uid"`
	ActivityID  int            `json:"activity_id"`
	TypeUID     int            `json:"type_uid"`
	SeverityID  int            `json:"severity_id"`
	StatusID    int            `json:"status_id"`
	Time        int64          `json:"time"` // ms since the epoch
	Message     string         `json:"message,omitempty"`
	Metadata    ocsfMetadata   `json:"metadata"`
	Actor       ocsfActor      `json:"actor"`
	API         ocsfAPI        `json:"api"`
	Cloud       ocsfCloud      `json:"cloud"`
	SrcEndpoint ocsfEndpoint   `json:"src_endpoint"`
	HTTPRequest *ocsfHTTP      `json:"http_request,omitempty"`
	Resources   []ocsfResource `json:"resources,omitempty"`
	Unmapped    map[string]any `json:"unmapped"`
}

type ocsfMetadata struct {
	Version    string      `json:"version"`
	Product    ocsfProduct `json:"product"`
	UID        string      `json:"uid"`
	Sequence   int64       `json:"sequence"` // the log index
	LoggedTime int64       `json:"logged_time,omitempty"`
}

type ocsfProduct struct {
	Name       string `json:"name"`
	VendorName string `json:"vendor_name"`
}

type ocsfActor struct {
	User ocsfUser `json:"user"`
}

type ocsfUser struct {
	Name string `json:"name,omitempty"`
}

type ocsfAPI struct {
	Operation string      `json:"operation"`
	Service   ocsfService `json:"service"`
	Request   *ocsfUIDRef `json:"request,omitempty"`
}

type ocsfService struct {
	Name string `json:"name"`
}

type ocsfUIDRef struct {
	UID string `json:"uid"`
}

type ocsfCloud struct {
	Provider string `json:"provider"`
}

type ocsfEndpoint struct {
	IP string `json:"ip,omitempty"`
}

type ocsfHTTP struct {
	UserAgent string   `json:"user_agent,omitempty"`
	URL       *ocsfURL `json:"url,omitempty"`
}

type ocsfURL struct {
	URLString string `json:"url_string"`
}

type ocsfResource struct {
	UID  string `json:"uid,omitempty"`
	Name string `json:"name,omitempty"`
	Type string `json:"type,omitempty"`
}

// ocsfActivity maps TAPD's action_type to API Activity's activity_id:
// 1 Create, 2 Read, 3 Update, 4 Delete, 99 Other.
func ocsfActivity(action string) int {
	a := strings.ToLower(action)
	switch {
	case strings.Contains(a, "create"), strings.Contains(a, "add"), strings.Contains(a, "upload"), strings.Contains(a, "new"):
		return 1
	case strings.Contains(a, "download"), strings.Contains(a, "view"), strings.Contains(a, "read"), strings.Contains(a, "export"), strings.Contains(a, "login"):
		return 2
	case strings.Contains(a, "update"), strings.Contains(a, "edit"), strings.Contains(a, "modify"), strings.Contains(a, "change"):
		return 3
	case strings.Contains(a, "delete"), strings.Contains(a, "remove"):
		return 4
	}
	return 99
}

// toOCSF is e in OCSF: an API Activity, or for an alert (a forward
// notifier's) a Detection Finding.
func toOCSF(e Event) any {
	if e.Alert != nil {
		return toOCSFFinding(e)
	}
	return toOCSFActivity(e)
}

func toOCSFActivity(e Event) ocsfEvent {
	o := ocsfEvent{ClassUID: 6003, CategoryUID: 6, SeverityID: 1, Cloud: ocsfCloud{Provider: "TAPD"},
		Metadata: ocsfMetadata{Version: OCSF, Product: ocsfProduct{Name: "tapd-mirror", VendorName: "tapd-mirror"},
			UID: strconv.FormatInt(e.Index, 10), Sequence: e.Index},
		Unmapped: map[string]any{"type": e.Type, "index": e.Index}}
	if !e.at.IsZero() {
		o.Time = e.at.UnixMilli()
	}
	if e.Checkpoint != nil {
		o.Unmapped["checkpoint"] = e.Checkpoint
	}
	if e.Prev != 0 {
		o.Unmapped["prev"] = e.Prev
	}
	if r := e.Record; r != nil {
		o.ActivityID, o.StatusID = ocsfActivity(r.ActionType), 1 // TAPD logs what was done
		o.Time, o.Message = r.Timestamp*1000, r.ActionDetail
		o.Metadata.LoggedTime = r.IngestedAt * 1000
		o.Actor.User.Name = r.Username
		o.API = ocsfAPI{Operation: r.ActionType, Service: ocsfService{Name: r.Platform}}
		if r.SourceID != "" {
			o.API.Request = &ocsfUIDRef{UID: r.SourceID}
		}
		o.SrcEndpoint.IP = r.IP
		if r.UA != "" || r.URL != "" {
			o.HTTPRequest = &ocsfHTTP{UserAgent: r.UA}
			if r.URL != "" {
				o.HTTPRequest.URL = &ocsfURL{URLString: r.URL}
			}
		}
		o.Resources = []ocsfResource{{UID: r.ObjectKey, Name: r.Title, Type: r.Object}}
		o.Unmapped["record_id"], o.Unmapped["serial"], o.Unmapped["workspace_id"] = r.ID, r.Serial, r.WorkspaceID
		o.Unmapped["source"], o.Unmapped["extra"] = r.Source, r.Extra
	} else {
		// The mirror's own acts on its archive: a delete or purge removes
		// a record, a hold or release changes what may be removed.
		o.ActivityID, o.StatusID = 99, 1
		if e.Type == "delete" || e.Type == "purge" {
			o.ActivityID = 4
		}
		o.Actor.User.Name = e.Token
		o.API = ocsfAPI{Operation: e.Type, Service: ocsfService{Name: "tapd-mirror"}}
		if e.RecordID != 0 {
			o.Resources = []ocsfResource{{UID: strconv.FormatInt(e.RecordID, 10), Type: "activity_record"}}
		}
		if h := e.Hold; h != nil {
			o.Resources = append(o.Resources, ocsfResource{UID: strconv.FormatInt(h.ID, 10), Name: h.Name, Type: "legal_hold"})
			o.Message = h.Reason
			o.Unmapped["hold_filter"] = h.Filter
		}
		if e.Policy != "" {
			o.Unmapped["policy"] = e.Policy
		}
		if a := e.Access; a != nil { // an access trail entry: a call to the mirror's own API
			o.ActivityID = 2 // Read, unless the action changed something
			if a.Action != "" && !strings.Contains(a.Action, "list") && !strings.Contains(a.Action, "status") && !strings.Contains(a.Action, "export") {
				o.ActivityID = 99
			}
			o.Actor.User.Name = a.Principal
			o.API.Operation = a.Action
			o.SrcEndpoint.IP = a.SourceIP
			if a.Outcome != "ok" {
				o.StatusID = 2 // Failure
			}
			o.Unmapped["access"] = a
		}
		if e.Withheld {
			o.Unmapped["withheld"] = true
			o.StatusID = 0
		}
	}
	o.TypeUID = o.ClassUID*100 + o.ActivityID
	return o
}

// ocsfFinding is an alert in OCSF's Detection Finding class (2004,
// category 2 Findings): a rule of ours, evaluated on TAPD's activity,
// found something for a person to look at, which is what that class is
// for ("detections or alerts generated by ... correlation engines,
// detection engines"). The firing is immutable, so its activity is always
// 1 Create and its status 1 New; the firing id identifies it.
type ocsfFinding struct {
	ClassUID    int             `json:"class_uid"`
	CategoryUID int             `json:"category_uid"`
	ActivityID  int             `json:"activity_id"`
	TypeUID     int             `json:"type_uid"`
	SeverityID  int             `json:"severity_id"`
	StatusID    int             `json:"status_id"`
	Time        int64           `json:"time"` // fired, ms since the epoch
	StartTime   int64           `json:"start_time,omitempty"`
	EndTime     int64           `json:"end_time,omitempty"`
	Count       int64           `json:"count"`
	Message     string          `json:"message"`
	Metadata    ocsfFindingMeta `json:"metadata"`
	FindingInfo ocsfFindingInfo `json:"finding_info"`
	Unmapped    map[string]any  `json:"unmapped"`
}

type ocsfFindingMeta struct {
	Version string      `json:"version"`
	Product ocsfProduct `json:"product"`
	UID     string      `json:"uid"` // "alert-" and the firing id
}

type ocsfFindingInfo struct {
	UID           string       `json:"uid"`
	Title         string       `json:"title"`
	Desc          string       `json:"desc"`
	Types         []string     `json:"types"`
	Analytic      ocsfAnalytic `json:"analytic"`
	CreatedTime   int64        `json:"created_time"`
	FirstSeenTime int64        `json:"first_seen_time,omitempty"`
	LastSeenTime  int64        `json:"last_seen_time,omitempty"`
	SrcURL        string       `json:"src_url,omitempty"`
}

// ocsfAnalytic is the rule that fired: type_id 1 Rule.
type ocsfAnalytic struct {
	Name   string `json:"name"`
	UID    string `json:"uid"`
	TypeID int    `json:"type_id"`
}

func toOCSFFinding(e Event) ocsfFinding {
	a := e.Alert
	ms := func(unix int64) int64 { return unix * 1000 }
	uid := "alert-" + strconv.FormatInt(a.ID, 10)
	desc := a.Rule + " fired for " + a.Key + ": " + strconv.FormatInt(a.Count, 10) + " matching records"
	o := ocsfFinding{ClassUID: 2004, CategoryUID: 2, ActivityID: 1, SeverityID: 3, StatusID: 1, // Medium, New
		Time: ms(a.FiredAt), StartTime: ms(a.WindowStart), EndTime: ms(a.WindowEnd), Count: a.Count, Message: desc,
		Metadata: ocsfFindingMeta{Version: OCSF, Product: ocsfProduct{Name: "tapd-mirror", VendorName: "tapd-mirror"}, UID: uid},
		FindingInfo: ocsfFindingInfo{UID: uid, Title: "tapd-mirror alert: " + a.Rule, Desc: desc, Types: []string{a.Condition},
			Analytic:    ocsfAnalytic{Name: a.Rule, UID: a.Rule, TypeID: 1},
			CreatedTime: ms(a.FiredAt), FirstSeenTime: ms(a.WindowStart), LastSeenTime: ms(a.WindowEnd), SrcURL: a.URL},
		Unmapped: map[string]any{"type": e.Type, "firing_id": a.ID, "rule": a.Rule, "key": a.Key, "condition": a.Condition,
			"first_record_id": a.FirstRecordID, "last_record_id": a.LastRecordID, "log_index": a.LogIndex}}
	o.TypeUID = o.ClassUID*100 + o.ActivityID
	return o
}
