package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/storage"
)

func TestDemoEndToEnd(t *testing.T) {
	db := filepath.Join(t.TempDir(), "demo.db")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr := make(chan string, 1)
	out, errOut := &syncBuffer{}, &syncBuffer{}
	m := &Main{Stdout: out, Stderr: errOut, Getenv: func(string) string { return "" }, Listening: func(a string) { addr <- a }}
	done := make(chan error, 1)
	go func() {
		done <- m.Run(ctx, []string{"demo", "--listen", "127.0.0.1:0", "--db", db, "--interval", "1s", "--log-format", "json"})
	}()
	var base string
	select {
	case a := <-addr:
		base = "http://" + a
	case err := <-done:
		t.Fatalf("demo exited: %v\n%s", err, errOut.String())
	case <-time.After(4 * time.Minute): // it syncs its history first: minutes under -race (the embedded SQLite is Go code, instrumented too)
		t.Fatal("demo did not listen")
	}
	banner := out.String()
	for _, want := range []string{base + "/api/v1/activity_log?platform=tapd&limit=5", "/api/v1/activity_log/count", "/api/v1/sync/status"} {
		if !strings.Contains(banner, want) {
			t.Fatalf("banner lacks %q:\n%s", want, banner)
		}
	}
	if first := strings.TrimSpace(banner); !strings.HasPrefix(first, "Console: "+base+"/signin") {
		t.Fatalf("banner does not start with the console URL:\n%s", banner)
	}
	if code, page := get(t, base+"/signin"); code != 200 || !strings.Contains(page, `name="token"`) {
		t.Fatalf("console sign-in page = %d %.200s", code, page)
	}
	token := regexp.MustCompile(`Bearer ([0-9a-f]+)`).FindStringSubmatch(banner)
	if token == nil {
		t.Fatalf("no admin token in banner:\n%s", banner)
	}
	assertDemoBeyondHorizon(t, base, token[1], banner, errOut)
	// All four demo workspaces (3 projects + company) synced before serving...
	b := demoStatus(t, base, token[1])
	if n := strings.Count(string(b), `"last_success":{`); n != 4 {
		t.Fatalf("%d demo workspaces synced when it began serving, want 4: %s", n, b)
	}
	deadline := time.Now().Add(4 * time.Minute)
	// ...then the mirror keeps growing as records arrive and the schedule syncs them.
	_, first := get(t, base+"/api/v1/activity_log/count?platform=tapd")
	for {
		_, body := get(t, base+"/api/v1/activity_log/count?platform=tapd")
		if body != first {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("demo mirror did not grow past %s\n%s", first, errOut.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	code, body := get(t, base+"/api/v1/activity_log?platform=tapd&limit=5")
	if code != 200 || strings.Count(body, `"platform":"tapd"`) != 5 {
		t.Fatalf("list = %d %s", code, body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("demo stopped with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("demo did not stop")
	}
	if _, err := os.Stat(db); err != nil {
		t.Fatalf("demo database: %v", err)
	}
}

// assertDemoBeyondHorizon checks that the demo's archive is older than
// TAPD's memory, as the banner says: its count, its ready curl, the sync
// status (per target and in all) and the metrics agree.
// demoStatus is GET /api/v1/sync/status once it lists the demo's four
// targets. The serving syncer knows the company at once but learns its
// projects (projects:2001) on its first run, which the fake's 3 % of faults
// can hold up for a retry or two.
func demoStatus(t *testing.T, base, token string) []byte {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		req, _ := http.NewRequest("GET", base+"/api/v1/sync/status", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var listed struct {
			Data []json.RawMessage `json:"data"`
		}
		if json.Unmarshal(b, &listed) == nil && len(listed.Data) >= 4 || time.Now().After(deadline) {
			return b
		}
	}
}

func assertDemoBeyondHorizon(t *testing.T, base, token, banner string, logs *syncBuffer) {
	t.Helper()
	m := regexp.MustCompile(`\n(\d+) records are older than TAPD's horizon: only this archive has them`).FindStringSubmatch(banner)
	if m == nil {
		t.Fatalf("banner does not say what only the archive holds:\n%s", banner)
	}
	held, _ := strconv.ParseInt(m[1], 10, 64)
	if held == 0 {
		t.Fatalf("the demo's archive holds nothing older than TAPD's horizon:\n%s", banner)
	}
	curl := regexp.MustCompile(`curl '(\S+/api/v1/activity_log/count\?platform=tapd&until=\d+)'`).FindStringSubmatch(banner)
	if curl == nil {
		t.Fatalf("no curl for the records older than the horizon:\n%s", banner)
	}
	if code, body := get(t, curl[1]); code != 200 || !strings.Contains(body, fmt.Sprintf(`"count":%d}`, held)) {
		t.Fatalf("%s = %d %s, want the banner's %d", curl[1], code, body, held)
	}
	body := demoStatus(t, base, token)
	var status struct {
		Data []struct {
			Workspace     string         `json:"workspace"`
			BeyondHorizon storage.Beyond `json:"beyond_horizon"`
		} `json:"data"`
		BeyondHorizon struct {
			Horizon time.Time `json:"horizon"`
			storage.Beyond
		} `json:"beyond_horizon"`
	}
	if err := json.Unmarshal(body, &status); err != nil || len(status.Data) != 4 {
		t.Fatalf("sync status: %+v, %v", status, err)
	}
	// The horizon has moved on a little since the banner: at least as many.
	total := status.BeyondHorizon
	if total.Records < held || total.Oldest == nil || !total.Oldest.Before(total.Horizon) || time.Since(total.Horizon) < 180*24*time.Hour {
		t.Fatalf("status in all: %+v, want at least the banner's %d records, oldest before the horizon", total, held)
	}
	var sum int64
	for _, ws := range status.Data {
		if ws.BeyondHorizon.Records == 0 || ws.BeyondHorizon.Oldest == nil || ws.BeyondHorizon.Oldest.Before(*total.Oldest) {
			t.Fatalf("status of %s: %+v (in all: %+v)", ws.Workspace, ws.BeyondHorizon, total.Beyond)
		}
		sum += ws.BeyondHorizon.Records
	}
	if sum != total.Records { // the demo's targets share no records
		t.Fatalf("targets hold %d records beyond the horizon, %d in all", sum, total.Records)
	}
	// A scrape gives up after 10 s; under -race, beside the schedule's
	// syncs, one may: scrape again until the series are there.
	var metrics string
	const companyBeyond = `tapdmirror_workspace_records_beyond_horizon{workspace="company:2001"}`
	series := func(name string) []string {
		return regexp.MustCompile(`\n` + regexp.QuoteMeta(name) + ` (\d+)\n`).FindStringSubmatch(metrics)
	}
	for deadline := time.Now().Add(4 * time.Minute); ; time.Sleep(time.Second) {
		_, metrics = get(t, base+"/metrics")
		if series("tapdmirror_records_beyond_horizon") != nil && series(companyBeyond) != nil || time.Now().After(deadline) {
			break
		}
	}
	gauge := func(name string) int64 {
		t.Helper()
		m := series(name)
		if m == nil {
			t.Fatalf("metrics lack %s:\n%s\nlogs:\n%s", name, metrics, logs.String())
		}
		n, _ := strconv.ParseInt(m[1], 10, 64)
		return n
	}
	if n := gauge("tapdmirror_records_beyond_horizon"); n < held {
		t.Fatalf("tapdmirror_records_beyond_horizon = %d, banner %d", n, held)
	}
	if n := gauge(companyBeyond); n == 0 {
		t.Fatal("the company-level logs hold nothing beyond the horizon in the metrics")
	}
}

func TestConfigCheck(t *testing.T) {
	var out syncBuffer
	env := map[string]string{"TAPD_MIRROR_TAPD_API_PASSWORD": "hunter2", "TAPD_MIRROR_TAPD_API_USER": "bot", "TAPD_MIRROR_WORKSPACES": "1,company:2"}
	m := &Main{Stdout: &out, Stderr: io.Discard, Getenv: func(k string) string { return env[k] }}
	if err := m.Run(context.Background(), []string{"config", "check"}); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); strings.Contains(s, "hunter2") || !strings.Contains(s, "tapd.api_password") ||
		!strings.Contains(s, "1,company:2") || !strings.Contains(s, "configuration OK") {
		t.Fatalf("config check printed:\n%s", s)
	}
	env["TAPD_MIRROR_SYNC_OVERLAP"] = "5s"
	env["TAPD_MIRROR_LISTEN"] = "nope"
	out.Reset()
	err := m.Run(context.Background(), []string{"config", "check"})
	if err == nil || !strings.Contains(err.Error(), "TAPD_MIRROR_SYNC_OVERLAP") || !strings.Contains(err.Error(), "TAPD_MIRROR_LISTEN") {
		t.Fatalf("config check with two errors = %v", err)
	}
	if s := strings.TrimSpace(out.String()); !strings.HasSuffix(s, "configuration INVALID (the problems are on stderr)") || strings.Contains(s, "configuration OK") {
		t.Fatalf("stdout of a failed config check ends:\n%s", s[max(0, len(s)-200):])
	}
	if err := m.Run(context.Background(), []string{"config"}); err == nil {
		t.Fatal("config without check accepted")
	}
}
