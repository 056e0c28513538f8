package forward_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/forward"
	"github.com/tapd-mirror/tapd-mirror/integrity"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
)

// hecObject is one event object exactly as Splunk's HEC documentation
// shows it, with the metadata configured below: time is epoch seconds with
// milliseconds, index present because it was configured.
var hecObject = regexp.MustCompile(`^\{"time":([0-9]+)\.([0-9]{3}),"host":"mirror-7","source":"tapd-mirror","sourcetype":"tapd:mirror","index":"audit","event":(\{.*\})\}$`)

// hecReceiver is an in-process HTTP Event Collector: it checks each
// request as HEC's documentation specifies it and answers from script,
// in HEC's {"text","code"} shape.
type hecReceiver struct {
	t      *testing.T
	mu     sync.Mutex
	answer func(n int) (status int, body string) // request n's answer; nil: success
	n      int
	got    []forward.Event
}

func (h *hecReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if r.Method != http.MethodPost || r.URL.Path != "/services/collector/event" || r.URL.RawQuery != "" {
		h.t.Errorf("%s %s", r.Method, r.URL)
	}
	if got := r.Header.Get("Authorization"); got != "Splunk 11111111-2222-3333-4444-555555555555" {
		h.t.Errorf("Authorization %q", got)
	}
	if got := r.Header.Get("Content-Type"); got != "application/json" {
		h.t.Errorf("Content-Type %q", got)
	}
	// Concatenated objects, nothing between them.
	var events []forward.Event
	dec := json.NewDecoder(bytes.NewReader(body))
	for off := int64(0); dec.More(); {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			h.t.Errorf("body %q: %v", body, err)
			return
		}
		end := dec.InputOffset()
		if !bytes.Equal(body[off:end], raw) {
			h.t.Errorf("bytes between HEC objects: %q", body[off:end])
		}
		off = end
		m := hecObject.FindSubmatch(raw)
		if m == nil {
			h.t.Errorf("object not in HEC's event shape: %s", raw)
			continue
		}
		var e forward.Event
		if err := json.Unmarshal(m[3], &e); err != nil {
			h.t.Errorf("event %s: %v", m[3], err)
		}
		if e.Record != nil && string(m[1]) != strings.TrimSpace(jsonInt(e.Record.Timestamp)) {
			h.t.Errorf("time %s.%s for a record of %d: HEC's time is when the person acted", m[1], m[2], e.Record.Timestamp)
		}
		events = append(events, e)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n++
	status, answer := http.StatusOK, `{"text":"Success","code":0}`
	if h.answer != nil {
		status, answer = h.answer(h.n)
	}
	if status == http.StatusOK {
		h.got = append(h.got, events...)
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(status)
	io.WriteString(w, answer)
}

func jsonInt(n int64) string { b, _ := json.Marshal(n); return string(b) }

func (h *hecReceiver) events() []forward.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]forward.Event(nil), h.got...)
}

// syncBuffer is a log sink tests read while the forwarder writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func signCheckpoint(t *testing.T, s *storage.Store) storage.SignedCheckpoint {
	t.Helper()
	k, _, err := integrity.LoadOrCreateKey(filepath.Join(t.TempDir(), "k"), "test.example/log")
	if err != nil {
		t.Fatal(err)
	}
	cp, _, err := s.SignCheckpoint(context.Background(), k, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

// TestSplunkHECFollowsTheDocumentedProtocol: requests in HEC's documented
// format; "server busy" (9) is retried quietly; an invalid token (4) and an
// incorrect index (7) are refusals logged at ERROR once each, with the
// events kept at the cursor, delivered once the receiver accepts them; each
// event names the signed checkpoint covering it.
func TestSplunkHECFollowsTheDocumentedProtocol(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		fill(t, s, 6)
		cp := signCheckpoint(t, s) // covers every event so far
		fill(t, s, 1)              // and not these
		size := headSize(t, s)
		rc := &hecReceiver{t: t, answer: func(n int) (int, string) {
			switch n {
			case 1:
				return http.StatusServiceUnavailable, `{"text":"Server is busy","code":9}`
			case 2, 3:
				return http.StatusForbidden, `{"text":"Invalid token","code":4}`
			case 4:
				return http.StatusBadRequest, `{"text":"Incorrect index","code":7,"invalid-event-number":0}`
			}
			return http.StatusOK, `{"text":"Success","code":0}`
		}}
		srv := httptest.NewServer(rc)
		defer srv.Close()
		logs := &syncBuffer{}
		o := fast(forward.Options{Store: s, Destinations: []config.Forward{{Name: "splunk", Kind: "splunk_hec",
			URL: srv.URL + "/", Token: "11111111-2222-3333-4444-555555555555", Host: "mirror-7", Index: "audit", BatchSize: 4}}})
		o.Logger = slog.New(slog.NewTextHandler(logs, nil))
		fw, err := forward.New(o)
		if err != nil {
			t.Fatal(err)
		}
		stop := start(fw)
		waitFor(t, "every event acknowledged", func() bool {
			st, err := fw.Status(context.Background())
			return err == nil && st[0].Cursor == size
		})
		stop()
		got := rc.events()
		if dups := checkDelivery(t, got, size); dups != 0 {
			t.Errorf("%d duplicates: HEC refused those batches, it kept none", dups)
		}
		for _, e := range got {
			covered := e.Index < cp.Size
			if covered != (e.Checkpoint != nil) || (covered && (e.Checkpoint.Size != cp.Size || e.Checkpoint.Root != cp.Root.String())) {
				t.Errorf("event %d: checkpoint %+v, the signed one is %d", e.Index, e.Checkpoint, cp.Size)
			}
		}
		out := logs.String()
		if n := strings.Count(out, "level=ERROR"); n != 2 || !strings.Contains(out, "the token is invalid") || !strings.Contains(out, "the index is incorrect") {
			t.Errorf("want one ERROR for the invalid token and one for the index, got %d:\n%s", n, out)
		}
		if !strings.Contains(out, "level=WARN") || !strings.Contains(out, `code 9 \"Server is busy\"`) {
			t.Errorf("server busy not retried with a warning:\n%s", out)
		}
		if strings.Contains(out, "11111111-2222") {
			t.Errorf("the token is in the logs:\n%s", out)
		}
	})
}

func TestHECEndpointAcceptsTheURLWithOrWithoutThePath(t *testing.T) {
	for in, want := range map[string]string{
		"https://splunk.example:8088":                            "https://splunk.example:8088/services/collector/event",
		"https://splunk.example:8088/":                           "https://splunk.example:8088/services/collector/event",
		"https://splunk.example:8088/services/collector":         "https://splunk.example:8088/services/collector/event",
		"https://splunk.example:8088/services/collector/event":   "https://splunk.example:8088/services/collector/event",
		"https://proxy.example/splunk/services/collector/event/": "https://proxy.example/splunk/services/collector/event",
		"https://proxy.example/splunk":                           "https://proxy.example/splunk/services/collector/event",
	} {
		if got := forward.HECEndpoint(in); got != want {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
	}
}
