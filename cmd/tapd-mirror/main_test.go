package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
)

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Reset()
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// running is the program started in-process.
type running struct {
	base   string
	stderr *syncBuffer
	stop   func() error
}

// start runs `tapd-mirror args…` in-process with env and waits until it listens.
func start(t *testing.T, env map[string]string, args ...string) running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	stderr := &syncBuffer{}
	m := &Main{
		Stdout: io.Discard, Stderr: stderr,
		Getenv:    func(k string) string { return env[k] },
		Listening: func(a string) { addr <- a },
	}
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, args) }()
	select {
	case a := <-addr:
		r := running{base: "http://" + a, stderr: stderr}
		var once sync.Once
		var stopErr error
		r.stop = func() error {
			once.Do(func() { cancel(); stopErr = <-done })
			return stopErr
		}
		t.Cleanup(func() { r.stop() })
		return r
	case err := <-done:
		cancel()
		t.Fatalf("program exited before listening: %v\n%s", err, stderr)
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatalf("program did not start listening\n%s", stderr)
	}
	return running{}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

func TestServeEndToEnd(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		env := map[string]string{
			"TAPD_MIRROR_DATABASE_URL": dbURL,
			"TAPD_MIRROR_LISTEN":       "127.0.0.1:0",
			"TAPD_MIRROR_ADMIN_TOKEN":  "tok",
		}
		p := start(t, env, "serve", "--log-format", "json")
		req, _ := http.NewRequest("POST", p.base+"/api/v1/activity_log",
			strings.NewReader(`{"platform":"tiktok","action_type":"post","timestamp":1707725000}`))
		req.Header.Set("Authorization", "Bearer tok")
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("POST = %d", resp.StatusCode)
		}
		status, body := get(t, p.base+"/api/v1/activity_log/count")
		if status != 200 || body != `{"code":0,"message":"success","data":{"count":1}}` {
			t.Fatalf("count = %d %s", status, body)
		}
		if err := p.stop(); err != nil {
			t.Fatalf("graceful stop returned %v", err)
		}
		if !strings.Contains(p.stderr.String(), "shutting down") {
			t.Fatalf("no shutdown log:\n%s", p.stderr)
		}
		if strings.Contains(p.stderr.String(), "tok\"") {
			t.Fatalf("admin token leaked into logs:\n%s", p.stderr)
		}
	})
}

func TestMigrateCommandAndConfigErrors(t *testing.T) {
	dbURL := "sqlite:" + filepath.Join(t.TempDir(), "m.db")
	var out bytes.Buffer
	m := &Main{Stdout: &out, Stderr: io.Discard, Getenv: func(k string) string {
		return map[string]string{"TAPD_MIRROR_DATABASE_URL": dbURL}[k]
	}}
	if err := m.Run(context.Background(), []string{"migrate"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "applied 0001_activity_log") {
		t.Fatalf("migrate output = %q", out.String())
	}
	out.Reset()
	if err := m.Run(context.Background(), []string{"migrate"}); err != nil || !strings.Contains(out.String(), "up to date") {
		t.Fatalf("second migrate = %v, %q", err, out.String())
	}

	cfgFile := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(cfgFile, []byte("listen: 0.0.0.0:50809\ntimezone: Mars/Olympus\n"), 0o600)
	m = &Main{Stdout: io.Discard, Stderr: io.Discard, Getenv: func(string) string { return "" }}
	err := m.Run(context.Background(), []string{"serve", "--config", cfgFile})
	if err == nil || !strings.Contains(err.Error(), "TAPD_MIRROR_ADMIN_TOKEN") || !strings.Contains(err.Error(), "TAPD_MIRROR_TIMEZONE") {
		t.Fatalf("serve with a public listen and no token = %v; want both problems named", err)
	}
	if err := m.Run(context.Background(), []string{"serve", "extra"}); err == nil {
		t.Fatal("unexpected argument accepted")
	}
}

func TestHelpListsTheCommands(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		var out syncBuffer
		m := &Main{Stdout: &out, Stderr: &out, Getenv: func(string) string { return "" }}
		if err := m.Run(context.Background(), args); !errors.Is(err, errHelp) {
			t.Fatalf("%v: err %v", args, err)
		}
		for _, c := range commands() {
			if !strings.Contains(out.String(), "  "+c.name+" ") {
				t.Fatalf("%v does not list %q:\n%s", args, c.name, out.String())
			}
		}
	}
	var out syncBuffer
	m := &Main{Stdout: &out, Stderr: &out, Getenv: func(string) string { return "" }}
	if err := m.Run(context.Background(), []string{"sync", "--help"}); !errors.Is(err, errHelp) || !strings.Contains(out.String(), "-workspace") {
		t.Fatalf("sync --help: %v\n%s", err, out.String())
	}
	for group, sub := range map[string]string{"config": "check", "integrity": "pubkey", "maintenance": "rebuild-counts"} {
		out = syncBuffer{}
		m := &Main{Stdout: &out, Stderr: &out, Getenv: func(string) string { return "" }}
		if err := m.Run(context.Background(), []string{group, "--help"}); !errors.Is(err, errHelp) || !strings.Contains(out.String(), group+" "+sub) {
			t.Fatalf("%s --help: %v\n%s", group, err, out.String())
		}
	}
}
