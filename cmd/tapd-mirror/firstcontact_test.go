package main

import (
	"context"
	"strings"
	"testing"

	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
	"github.com/tapd-mirror/tapd-mirror/tapd/tapdtest"
)

// TestSyncWithAWrongBaseURLFailsAtOnce: a tapd.base_url below TAPD's API
// root gets TAPD's greeting; `sync` fails after one request, names the key,
// and records the run failed.
func TestSyncWithAWrongBaseURLFailsAtOnce(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		f := tapdtest.New(tapdtest.Options{Seed: 9, Projects: 1, RecordsPerDay: 2})
		defer f.Close()
		env := fakeEnv(f, dbURL, f.Projects()[0].ID)
		env["TAPD_MIRROR_TAPD_BASE_URL"] = f.URL + "/v2"
		var out, errOut syncBuffer
		m := &Main{Stdout: &out, Stderr: &errOut, Getenv: func(k string) string { return env[k] }}
		err := m.Run(context.Background(), []string{"sync", "--log-format", "text"})
		if err == nil || !strings.Contains(out.String()+errOut.String(), "tapd.base_url") {
			t.Fatalf("sync: %v\n%s\n%s", err, out.String(), errOut.String())
		}
		if n := len(f.Requests()); n != 1 {
			t.Fatalf("%d requests to TAPD, want 1", n)
		}
		runs, err := storagetest.Open(t, dbURL).ListRuns(context.Background(), "", "", 10, 0)
		if err != nil || len(runs) != 1 || runs[0].Outcome != storage.OutcomeFailed || !strings.Contains(runs[0].Error, "tapd.base_url") {
			t.Fatalf("runs %+v, err %v: want one failed run naming tapd.base_url", runs, err)
		}
	})
}

func TestPenaltyMaxIsValidated(t *testing.T) {
	f := tapdtest.New(tapdtest.Options{Seed: 9, Projects: 1, RecordsPerDay: 1})
	defer f.Close()
	env := fakeEnv(f, "sqlite:"+t.TempDir()+"/m.db", f.Projects()[0].ID)
	env["TAPD_MIRROR_TAPD_PENALTY_MAX"] = "30s"
	var out, errOut syncBuffer
	m := &Main{Stdout: &out, Stderr: &errOut, Getenv: func(k string) string { return env[k] }}
	err := m.Run(context.Background(), []string{"sync"})
	if err == nil || !strings.Contains(err.Error()+errOut.String(), "tapd.penalty_max") || len(f.Requests()) != 0 {
		t.Fatalf("sync with penalty_max 30s: %v\n%s", err, errOut.String())
	}
}
