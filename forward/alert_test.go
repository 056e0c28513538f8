package forward_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/forward"
)

// firedAt is when the test alerts fired.
const firedAt = 1_767_225_900

// testAlerts are two firings, the second with a key holding what CEF and
// JSON escape.
func testAlerts() []forward.Alert {
	return []forward.Alert{
		{ID: 41, Rule: "bulk-download", Key: "mallory", Condition: "threshold", Count: 100, WindowStart: firedAt - 3000,
			WindowEnd: firedAt - 60, FirstRecordID: 700, LastRecordID: 799, LogIndex: 812, FiredAt: firedAt,
			URL: "https://mirror.example/?action=download&user=mallory"},
		{ID: 42, Rule: "new-ip", Key: `eve|10.0.0.9=x\y`, Condition: "first_seen", Count: 1, WindowStart: firedAt - 5,
			WindowEnd: firedAt - 5, FirstRecordID: 800, LastRecordID: 800, LogIndex: 813, FiredAt: firedAt},
	}
}

func newSender(t *testing.T, cfg config.Forward) *forward.AlertSender {
	t.Helper()
	s, err := forward.NewAlertSender(cfg, "1.4.0", func() time.Time { return time.Unix(firedAt+1, 0) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// capture is an HTTP receiver keeping every request, answering status.
type capture struct {
	mu     sync.Mutex
	status int
	got    []*http.Request
	bodies [][]byte
}

func (c *capture) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got, c.bodies = append(c.got, r), append(c.bodies, body)
	w.WriteHeader(c.status)
	io.WriteString(w, `{"text":"Success","code":0}`)
}

// TestAlertSenderWebhook: one POST carrying both alerts as NDJSON lines
// of type alert, no index, signed with the destination's secret, with the
// idempotency key of the first and last firing id; a refusal is an error
// naming the firings.
func TestAlertSenderWebhook(t *testing.T) {
	rc := &capture{status: http.StatusNoContent}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	s := newSender(t, config.Forward{Name: "siem", Kind: "webhook", URL: srv.URL + "/ingest", Secret: "wh-s3cret", Filter: config.ForwardFilter{ActionType: "none"}})
	alerts := testAlerts()
	if err := s.Send(context.Background(), "alert-siem-alerts-41-42", alerts); err != nil {
		t.Fatal(err)
	}
	if len(rc.got) != 1 {
		t.Fatalf("%d requests, want 1", len(rc.got))
	}
	r, body := rc.got[0], rc.bodies[0]
	mac := hmac.New(sha256.New, []byte("wh-s3cret"))
	mac.Write(body)
	if r.URL.Path != "/ingest" || r.Header.Get("Content-Type") != "application/x-ndjson" ||
		r.Header.Get(forward.SignatureHeader) != "sha256="+hex.EncodeToString(mac.Sum(nil)) || r.Header.Get(forward.IdempotencyHeader) != "alert-siem-alerts-41-42" {
		t.Fatalf("request %s %v", r.URL, r.Header)
	}
	var want bytes.Buffer
	enc := json.NewEncoder(&want) // one line each; & < > as they are, as for log events
	enc.SetEscapeHTML(false)
	for _, a := range alerts {
		enc.Encode(struct {
			Type  string        `json:"type"`
			Time  int64         `json:"time"`
			Alert forward.Alert `json:"alert"`
		}{"alert", a.FiredAt, a})
	}
	// Exactly: type, time and alert, nothing else (no index).
	if !bytes.Equal(body, want.Bytes()) {
		t.Fatalf("body\n%s\nwant\n%s", body, want.Bytes())
	}
	got := parseLines(t, body)
	if len(got) != 2 || got[0].Index != 0 || got[0].Alert.ID != 41 || got[1].Alert.Key != alerts[1].Key || bytes.Contains(body, []byte(`"index"`)) {
		t.Fatalf("events %+v", got)
	}
	rc.status = http.StatusBadGateway
	err := s.Send(context.Background(), "alert-siem-alerts-42-42", alerts[1:])
	if err == nil || !strings.Contains(err.Error(), "alerts 42-42") || !strings.Contains(err.Error(), "502") || strings.Contains(err.Error(), "wh-s3cret") {
		t.Fatalf("a refused send: %v", err)
	}
}

// TestAlertSenderSplunkHECAndOCSF: through HEC each alert is an event
// object whose time is when it fired; in format ocsf it is a Detection
// Finding identified by its firing id.
func TestAlertSenderSplunkHECAndOCSF(t *testing.T) {
	rc := &capture{status: http.StatusOK}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	for _, format := range []string{"json", "ocsf"} {
		rc.got, rc.bodies = nil, nil
		s := newSender(t, config.Forward{Name: "splunk", Kind: "splunk_hec", URL: srv.URL, Token: "11111111-2222-3333-4444-555555555555",
			Host: "mirror-7", Index: "audit", Format: format})
		if err := s.Send(context.Background(), "alert-siem-alerts-41-42", testAlerts()); err != nil {
			t.Fatal(err)
		}
		if len(rc.got) != 1 || rc.got[0].URL.Path != "/services/collector/event" || rc.got[0].Header.Get("Authorization") != "Splunk 11111111-2222-3333-4444-555555555555" {
			t.Fatalf("%s: requests %v", format, rc.got)
		}
		dec := json.NewDecoder(bytes.NewReader(rc.bodies[0]))
		for i := 0; dec.More(); i++ {
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				t.Fatal(err)
			}
			m := hecObject.FindSubmatch(raw)
			if m == nil || string(m[1]) != "1767225900" || string(m[2]) != "000" {
				t.Fatalf("%s: HEC object %s: its time must be when the alert fired", format, raw)
			}
			if format == "json" {
				var e forward.Event
				if err := json.Unmarshal(m[3], &e); err != nil || e.Type != "alert" || e.Alert == nil || e.Alert.ID != int64(41+i) {
					t.Fatalf("event %s (%v)", m[3], err)
				}
				continue
			}
			var o struct {
				ClassUID    int `json:"class_uid"`
				CategoryUID int `json:"category_uid"`
				ActivityID  int `json:"activity_id"`
				TypeUID     int `json:"type_uid"`
				StatusID    int `json:"status_id"`
				Time, Count int64
				Metadata    struct{ UID, Version string }
				FindingInfo struct {
					UID, Title    string
					SrcURL        string `json:"src_url"`
					Types         []string
					Analytic      struct{ Name string }
					CreatedTime   int64 `json:"created_time"`
					FirstSeenTime int64 `json:"first_seen_time"`
					LastSeenTime  int64 `json:"last_seen_time"`
				} `json:"finding_info"`
				Unmapped map[string]any
			}
			if err := json.Unmarshal(m[3], &o); err != nil {
				t.Fatal(err)
			}
			a := testAlerts()[i]
			if o.ClassUID != 2004 || o.CategoryUID != 2 || o.ActivityID != 1 || o.TypeUID != 200401 || o.StatusID != 1 ||
				o.Time != a.FiredAt*1000 || o.Count != a.Count || o.Metadata.UID != "alert-"+jsonInt(a.ID) || o.Metadata.Version != forward.OCSF ||
				o.FindingInfo.UID != o.Metadata.UID || o.FindingInfo.Analytic.Name != a.Rule || o.FindingInfo.CreatedTime != a.FiredAt*1000 ||
				o.FindingInfo.FirstSeenTime != a.WindowStart*1000 || o.FindingInfo.LastSeenTime != a.WindowEnd*1000 ||
				len(o.FindingInfo.Types) != 1 || o.FindingInfo.Types[0] != a.Condition || o.FindingInfo.SrcURL != a.URL ||
				o.Unmapped["key"] != a.Key || o.Unmapped["log_index"] != float64(a.LogIndex) || o.Unmapped["type"] != "alert" {
				t.Fatalf("OCSF finding %s", m[3])
			}
		}
	}
}

// TestAlertSenderFileKeepsAlertsApart: an alert batch is its own file,
// closed (renamed) at once, named so that the log destination's files and
// recovery never meet it: neither side's start closes the other's
// partial file.
func TestAlertSenderFileKeepsAlertsApart(t *testing.T) {
	dir := t.TempDir()
	dest := config.Forward{Name: "lake", Kind: "file", Path: dir}
	logPartial := filepath.Join(dir, "lake-00000000000000000007-1.ndjson.partial")
	if err := os.WriteFile(logPartial, []byte(`{"index":7}`+"\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	s := newSender(t, dest)
	if _, err := os.Stat(logPartial); err != nil {
		t.Fatalf("the alert sender's start touched the log's partial file: %v", err)
	}
	if err := s.Send(context.Background(), "alert-siem-alerts-41-42", testAlerts()); err != nil {
		t.Fatal(err)
	}
	names, _ := filepath.Glob(filepath.Join(dir, "lake.alert-*"))
	if len(names) != 1 || !regexp.MustCompile(`/lake\.alert-00000000000000000041-[0-9]+\.ndjson$`).MatchString(names[0]) {
		t.Fatalf("alert files %v, want one closed file named by the first firing id", names)
	}
	raw, _ := os.ReadFile(names[0])
	if got := parseLines(t, raw); len(got) != 2 || got[0].Alert.ID != 41 || got[1].Alert.ID != 42 {
		t.Fatalf("alert file holds %s", raw)
	}
	// A crash mid-write leaves an alert partial file: the log
	// destination's start leaves it, the next alert sender closes it.
	alertPartial := filepath.Join(dir, "lake.alert-00000000000000000043-1.ndjson.partial")
	if err := os.WriteFile(alertPartial, raw, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := forward.New(forward.Options{Destinations: []config.Forward{dest}}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(alertPartial); err != nil {
		t.Fatalf("the log destination's start touched the alerts' partial file: %v", err)
	}
	if _, err := os.Stat(strings.TrimSuffix(logPartial, ".partial")); err != nil {
		t.Fatalf("the log destination did not close its own partial file: %v", err)
	}
	newSender(t, dest)
	if _, err := os.Stat(strings.TrimSuffix(alertPartial, ".partial")); err != nil {
		t.Fatalf("the alert sender did not close its partial file: %v", err)
	}
}

var sdAlert = regexp.MustCompile(`^\[tapd-mirror@32473 alert="([0-9]+)" type="alert" rule="([a-z-]+)"\]$`)

// TestAlertSenderSyslogReachesRsyslog: rsyslog parses each alert as RFC
// 5424 with MSGID alert, severity warning and the firing id in the
// structured data, in JSON and in CEF with the firing's fields, over TCP
// and TLS.
func TestAlertSenderSyslogReachesRsyslog(t *testing.T) {
	for _, tls := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%t", tls), func(t *testing.T) { alertsToRsyslog(t, tls) })
	}
}

func alertsToRsyslog(t *testing.T, tls bool) {
	rs := startRsyslog(t, tls)
	for _, format := range []string{"json", "cef"} {
		d := config.Forward{Name: "qradar-" + format, Kind: "syslog", Address: rs.addr(), Format: format, TLS: tls}
		if tls {
			d.CAFile = rs.ca
		}
		if err := newSender(t, d).Send(context.Background(), "alert-siem-alerts-41-42", testAlerts()); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "rsyslog to receive both alerts twice", func() bool { return len(rs.lines()) == 4 })
	var jsonMsgs, cefMsgs []received
	for _, m := range rs.lines() {
		sd := sdAlert.FindStringSubmatch(m.sd)
		if sd == nil || m.msgid != "alert" || m.app != "tapd-mirror" || m.pri != "108" { // log audit (13), warning (4)
			t.Fatalf("message parsed as PRI %s app %q msgid %q SD %q", m.pri, m.app, m.msgid, m.sd)
		}
		if strings.HasPrefix(m.msg, "CEF:0|") {
			cefMsgs = append(cefMsgs, m)
		} else {
			jsonMsgs = append(jsonMsgs, m)
		}
	}
	if len(jsonMsgs) != 2 || len(cefMsgs) != 2 {
		t.Fatalf("%d JSON and %d CEF messages", len(jsonMsgs), len(cefMsgs))
	}
	for i, a := range testAlerts() {
		var e forward.Event
		if err := json.Unmarshal([]byte(jsonMsgs[i].msg), &e); err != nil || e.Alert == nil || *e.Alert != a || e.Index != 0 {
			t.Errorf("JSON body %q (%v)", jsonMsgs[i].msg, err)
		}
		if sd := sdAlert.FindStringSubmatch(jsonMsgs[i].sd); sd[1] != jsonInt(a.ID) || sd[2] != a.Rule {
			t.Errorf("structured data %q for firing %d", jsonMsgs[i].sd, a.ID)
		}
	}
	for _, want := range []string{"CEF:0|tapd-mirror|tapd-mirror|1.4.0|alert:bulk-download|tapd-mirror alert bulk-download|7|",
		"rt=1767225900000 cn1Label=firingId cn1=41 externalId=41 cat=alert", "cs1Label=rule cs1=bulk-download", "cs2Label=key cs2=mallory",
		"cs3Label=condition cs3=threshold", "cnt=100", "start=1767222900000", "end=1767225840000", "cn2Label=firstRecordId cn2=700",
		"cn3Label=lastRecordId cn3=799", "cn4Label=logIndex cn4=812", "cs4Label=consoleUrl cs4=https://mirror.example/?action\\=download&user\\=mallory"} {
		if !strings.Contains(cefMsgs[0].msg, want) {
			t.Errorf("CEF lacks %q:\n%s", want, cefMsgs[0].msg)
		}
	}
	if c := cefMsgs[1].msg; !strings.Contains(c, `cs2Label=key cs2=eve|10.0.0.9\=x\\y`) || strings.Contains(c, "consoleUrl") {
		t.Errorf("the second alert in CEF: %s", c)
	}
}
