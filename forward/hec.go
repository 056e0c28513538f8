package forward

import (
	"bytes"
	"context"
	"encoding/json"

	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tapd-mirror/tapd-mirror/config"
)

// hecPath is the Splunk HTTP Event Collector's JSON event endpoint.
const hecPath = "/services/collector/event"

// hec POSTs each batch to Splunk's HTTP Event Collector as concatenated
// JSON event objects; an answer {"text":"Success","code":0} is the ack.
// Indexer acknowledgement (channels) is not used: HEC's success means the
// events were received and queued for indexing.
type hec struct {
	url, shown string // shown: the URL with its secrets masked, for errors
	auth       string
	meta       hecMeta
	format     string
	client     *http.Client
	now        func() time.Time
}

// hecMeta is the metadata every event carries.
type hecMeta struct{ host, source, sourcetype, index string }

func newHEC(f config.Forward, now func() time.Time) *hec {
	endpoint := HECEndpoint(f.URL)
	shown, _ := config.RedactDestinationURL(endpoint)
	return &hec{url: endpoint, shown: shown, auth: "Splunk " + f.Token, format: f.Format, now: now,
		meta:   hecMeta{host: f.Host, source: f.Source, sourcetype: f.Sourcetype, index: f.Index},
		client: &http.Client{Timeout: time.Minute}}
}

// HECEndpoint is url with the event endpoint's path, whether url named it
// (or /services/collector) or only the collector's base.
func HECEndpoint(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw // refused by config validation before it gets here
	}
	p := strings.TrimRight(u.Path, "/")
	switch {
	case strings.HasSuffix(p, hecPath):
	case strings.HasSuffix(p, "/services/collector"):
		p += "/event"
	default:
		p += hecPath
	}
	u.Path, u.RawPath = p, ""
	return u.String()
}

func epochMillis(t time.Time) json.Number {
	ms, sign := t.UnixMilli(), ""
	if ms < 0 { // before 1970: -0.500, not 0.-500
		ms, sign = -ms, "-"
	}
	return json.Number(sign + strconv.FormatInt(ms/1000, 10) + "." + fmt.Sprintf("%03d", ms%1000))
}

func (h *hec) body(b Batch) ([]byte, error) {
	var body []byte
	for _, e := range b.Events {
		inner, err := b.json(h.format, e)
		if err != nil {
			return nil, err
		}
		at := e.at
		if at.IsZero() { // content withheld: when it is sent
			at = h.now()
		}
		body = h.appendEvent(body, at, inner)
	}
	return body, nil
}

// appendEvent appends one event object of HEC's JSON format: time (epoch
// seconds with milliseconds, a JSON number), host, source, sourcetype,
// index (omitted: the token's default index) and event (inner, the
// event's JSON). By hand, not encoding/json: it runs for every event.
func (h *hec) appendEvent(b []byte, at time.Time, inner []byte) []byte {
	b = append(append(b, `{"time":`...), epochMillis(at)...)
	b = appendStr(b, `,"host":`, h.meta.host)
	b = appendStr(b, `,"source":`, h.meta.source)
	b = appendStr(b, `,"sourcetype":`, h.meta.sourcetype)
	if h.meta.index != "" {
		b = appendStr(b, `,"index":`, h.meta.index)
	}
	return append(append(append(b, `,"event":`...), inner...), '}')
}

// hecAnswer is HEC's JSON answer.
type hecAnswer struct {
	Text string `json:"text"`
	Code *int   `json:"code"`
}

// hecRefused are HEC's codes retrying cannot fix: the token (1 disabled,
// 2 missing, 3 invalid authorization, 4 invalid), 7 an index the token may
// not write, channels (10, 11: acknowledgement is on for the token), 16
// query-string authorization, and the format ones (5, 6, 12, 13, 15) that
// would be a bug of ours. 8 (internal error), 9 (server busy) and 18-20
// (unhealthy) are temporary.
var hecRefused = map[int]string{
	1: "the token is disabled", 2: "the token is missing", 3: "the authorization is invalid", 4: "the token is invalid",
	5: "no data", 6: "invalid data format", 7: "the index is incorrect (not allowed for this token, or missing)",
	10: "a data channel is required: turn indexer acknowledgement off for this token",
	11: "the data channel is invalid: turn indexer acknowledgement off for this token",
	12: "event field required", 13: "event field blank", 15: "error in handling indexed fields",
	16: "query-string authorization is not enabled",
}

func (h *hec) Deliver(ctx context.Context, b Batch) error {
	body, err := h.body(b)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("splunk_hec %s: %w", h.shown, scrubURL(err))
	}
	req.Header.Set("Authorization", h.auth)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "tapd-mirror-forward")
	resp, err := h.client.Do(req)
	if err != nil {
		return fmt.Errorf("posting %s to Splunk HEC %s: %w", b.span(), h.shown, scrubURL(err))
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var a hecAnswer
	if json.Unmarshal(raw, &a) != nil || a.Code == nil {
		if resp.StatusCode/100 == 2 {
			return fmt.Errorf("posting %s to Splunk HEC %s: answered %s without HEC's {\"text\",\"code\"} (is the URL a collector?)", b.span(), h.shown, resp.Status)
		}
		return fmt.Errorf("posting %s to Splunk HEC %s: answered %s", b.span(), h.shown, resp.Status)
	}
	if *a.Code == 0 && resp.StatusCode/100 == 2 {
		return nil
	}
	err = fmt.Errorf("posting %s to Splunk HEC %s: answered %s, code %d %q", b.span(), h.shown, resp.Status, *a.Code, a.Text)
	if why, ok := hecRefused[*a.Code]; ok {
		return &RefusedError{Err: fmt.Errorf("%w: %s", err, why)}
	}
	return err
}

func (h *hec) Close() error { return nil }
