package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
	"github.com/tapd-mirror/tapd-mirror/tapd/tapdtest"
)

// runDoctor runs `tapd-mirror doctor args…` in-process with env.
func runDoctor(env map[string]string, args ...string) (stdout, stderr string, err error) {
	var out, errOut syncBuffer
	m := &Main{Stdout: &out, Stderr: &errOut, Getenv: func(k string) string { return env[k] }}
	err = m.Run(context.Background(), append([]string{"doctor", "--log-format", "text"}, args...))
	return out.String(), errOut.String(), err
}

// doctorJSON is the part of the --json report the tests read.
type doctorJSON struct {
	OK   bool `json:"ok"`
	Auth struct {
		Method               string  `json:"method"`
		OK                   bool    `json:"ok"`
		TokenLifetimeSeconds float64 `json:"token_lifetime_seconds"`
	} `json:"auth"`
	Quota struct {
		ConfiguredPerMinute int     `json:"configured_per_minute"`
		InUsePerMinute      float64 `json:"in_use_per_minute"`
		Refused429          int     `json:"refused_429"`
	} `json:"quota"`
	Checks struct {
		EndTime struct {
			Value     string `json:"value"`
			LearnedBy string `json:"learned_by"`
		} `json:"end_time"`
		CompanyWide struct {
			Includes  string `json:"includes_company_level"`
			LearnedBy string `json:"learned_by"`
		} `json:"company_wide"`
		Horizon struct {
			Refused bool `json:"refused"`
		} `json:"horizon"`
		Entries []struct {
			Entry    string `json:"entry"`
			Projects []struct {
				ID, Name, Status string
			} `json:"projects"`
			Targets []string `json:"targets"`
		} `json:"workspaces"`
		Targets []struct {
			Target   string `json:"target"`
			Records  int    `json:"records"`
			Requests int    `json:"requests"`
			Months   []struct {
				Records int `json:"records"`
			} `json:"months"`
		} `json:"targets"`
		Estimate struct {
			Requests int `json:"requests"`
			Records  int `json:"records"`
		} `json:"estimate"`
		Alternatives []struct {
			Use      string `json:"use"`
			Requests int    `json:"requests"`
			Was      int    `json:"was"`
		} `json:"alternatives"`
	} `json:"checks"`
	Blocking []string `json:"blocking"`
	Requests int      `json:"requests"`
}

func decodeDoctor(t *testing.T, out string) doctorJSON {
	t.Helper()
	var r doctorJSON
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("doctor --json is not JSON: %v\n%s", err, out)
	}
	return r
}

// TestDoctorChecksTheAccountAndTeachesTheSync: doctor against the fake,
// through the real wiring, on both databases: the readable report names the
// projects and what was learned; --json says the same; the requests are
// counted and bounded; nothing is written to the archive; the first sync
// after it probes nothing again and costs what doctor estimated (±15 %).
func TestDoctorChecksTheAccountAndTeachesTheSync(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		// The projects list as captured (the company among them, no
		// category), a closed project, a quota announced in headers.
		f := tapdtest.New(tapdtest.Options{Seed: 11, Projects: 3, RecordsPerDay: 30, CompanyWideIncludesCompanyLevel: true, CaptureProjectList: true})
		defer f.Close()
		f.SetProjectStatus("10074563", "closed")
		f.SetQuotaHeaders(50000, time.Minute, false)
		env := fakeEnv(f, dbURL, "projects:2001,all:2001")
		out, logs, err := runDoctor(env)
		if err != nil {
			t.Fatalf("doctor: %v\n%s\n%s", err, out, logs)
		}
		requests := len(f.Requests())
		for _, want := range []string{
			"credentials accepted: api_user/api_password (Basic)",
			"tapd.base_url answers as the TAPD API",
			"end_time hh:mm is inclusive of its minute's seconds (learned now, kept for the sync)",
			"company 2001: the company-wide query includes company-level logs (learned now, kept for the sync)",
			"projects:2001    3 target(s), 3 project(s)",
			"10074561     normal   西门子灌灌灌乐了路虎退货",
			"10074563     closed   Mobile App 📱",
			"quota: tapd.requests_per_minute 60000, in use 50000/min (lowered to what TAPD announced",
			"TAPD's X-RateLimit-Limit 50000, X-RateLimit-Remaining ",
			"all:2001         1 target(s), 3 project(s)",
			"all:2001 instead of projects:2001",
			"Nothing blocks a sync.",
			"TAPD requests sent by doctor: " + strconv.Itoa(requests) + "\n",
		} {
			if !strings.Contains(out, want) {
				t.Fatalf("report lacks %q:\n%s", want, out)
			}
		}
		// Bounded: testauth, two project lists, the company probe (≤ 8),
		// the horizon (2), one count per month of 4 targets, and of all:2001
		// once more for the alternative; end_time's probe.
		months := 8
		if bound := 1 + 2 + 8 + 2 + months*4 + months + 1; requests > bound {
			t.Fatalf("doctor sent %d requests, bound %d", requests, bound)
		}
		st := storagetest.Open(t, dbURL)
		ctx := context.Background()
		if n, _ := st.CountActivities(ctx, storage.Filter{}); n != 0 {
			t.Fatalf("doctor wrote %d records", n)
		}
		if runs, _ := st.ListRuns(ctx, "", "", 10, 0); len(runs) != 0 {
			t.Fatalf("doctor recorded runs: %+v", runs)
		}

		// --json: the same facts, learned before this time.
		f.ResetRequests()
		out, logs, err = runDoctor(env, "--json")
		if err != nil {
			t.Fatalf("doctor --json: %v\n%s", err, logs)
		}
		r := decodeDoctor(t, out)
		if !r.OK || !r.Auth.OK || r.Auth.Method != "basic" || r.Quota.ConfiguredPerMinute != 60000 || r.Quota.InUsePerMinute != 50000 ||
			r.Checks.EndTime.Value != "inclusive" || r.Checks.EndTime.LearnedBy != "earlier" ||
			r.Checks.CompanyWide.Includes != "yes" || r.Checks.CompanyWide.LearnedBy != "earlier" || r.Checks.Horizon.Refused ||
			len(r.Blocking) != 0 || r.Requests != len(f.Requests()) {
			t.Fatalf("doctor --json: %+v", r)
		}
		if len(r.Checks.Entries) != 2 || len(r.Checks.Entries[0].Projects) != 3 || r.Checks.Entries[0].Projects[0].Status != "normal" ||
			r.Checks.Entries[0].Projects[2].Status != "closed" ||
			strings.Join(r.Checks.Entries[1].Targets, ",") != "all:2001" || len(r.Checks.Targets) != 4 {
			t.Fatalf("entries and targets: %+v", r.Checks)
		}
		for _, v := range r.Checks.Targets {
			want := 0
			if v.Target == "all:2001" {
				want = len(f.Queryable(f.CompanyID(), false))
			} else {
				want = len(f.Queryable(v.Target, false))
			}
			if v.Records != want || len(v.Months) < 7 {
				t.Fatalf("%s: %d records in %d months counted, TAPD holds %d", v.Target, v.Records, len(v.Months), want)
			}
		}
		if a := r.Checks.Alternatives; len(a) != 1 || a[0].Use != "all:2001" || a[0].Requests >= a[0].Was {
			t.Fatalf("alternatives: %+v", a)
		}

		// The sync after it probes nothing doctor learned, and costs what it said.
		f.ResetRequests()
		var syncOut, syncErr syncBuffer
		m := &Main{Stdout: &syncOut, Stderr: &syncErr, Getenv: func(k string) string { return env[k] }}
		// On the real clock TAPD's horizon may pass a minute between the two:
		// that minute expired, and the sync says so (partial, exit 3).
		if err := m.Run(ctx, []string{"sync"}); err != nil && exitCode(err) != 3 {
			t.Fatalf("sync: %v\n%s", err, syncErr.String())
		}
		for _, q := range f.Requests() {
			switch {
			case q.Query.Get("start_time") != "" && q.Query.Get("start_time") == q.Query.Get("end_time"):
				t.Fatalf("the sync probed end_time again: %v", q.Query)
			case q.Query.Get("company_only") == "1":
				t.Fatalf("the sync probed the company-wide query again: %v", q.Query)
			case q.Query.Get("limit") == "50":
				t.Fatalf("the sync looked for a record to probe end_time with: %v", q.Query)
			}
		}
		if got, est := len(f.Requests()), r.Checks.Estimate.Requests; math.Abs(float64(got-est)) > 0.15*float64(got) {
			t.Fatalf("the backfill sent %d requests, doctor estimated %d", got, est)
		}
	})
}

// TestDoctorWaitsOutAPenalty: TAPD refuses the account for 10 minutes
// after a 429 (on the fake's clock, which doctor's client waits on): doctor
// pauses, probes, goes on once the penalty is over, learns the quota from
// the 429's text, and says it met the penalty without calling it blocking.
func TestDoctorWaitsOutAPenalty(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		f := tapdtest.New(tapdtest.Options{Seed: 14, Projects: 2, RecordsPerDay: 2})
		defer f.Close()
		f.SetPenalty(10 * time.Minute)
		f.RateLimitStorm(1, false)
		began := f.Now()
		env := fakeEnv(f, dbURL, "10074561")
		var out, errOut syncBuffer
		m := &Main{Stdout: &out, Stderr: &errOut, Getenv: func(k string) string { return env[k] }, Clock: f.Now, Wait: f.WaitUntil}
		if err := m.Run(context.Background(), []string{"doctor", "--log-format", "text", "--json"}); err != nil {
			t.Fatalf("doctor: %v\n%s\n%s", err, out.String(), errOut.String())
		}
		r := decodeDoctor(t, out.String())
		penalised := 0
		for _, q := range f.Requests() {
			if q.Fault == string(tapdtest.FaultPenalty) {
				penalised++
			}
		}
		// 1 + 2 + 4 minutes of pauses are refused, the probe after 8 more is not.
		if !r.OK || r.Quota.Refused429 != 1+penalised || penalised != 3 || r.Quota.InUsePerMinute != 180 || f.Now().Sub(began) < 10*time.Minute {
			t.Fatalf("doctor through a penalty: ok %v, %d refused (%d in the penalty), quota in use %.0f/min, %s passed\n%s",
				r.OK, r.Quota.Refused429, penalised, r.Quota.InUsePerMinute, f.Now().Sub(began), out.String())
		}
		out.b.Reset()
		f.RateLimitStorm(1, false)
		if err := m.Run(context.Background(), []string{"doctor", "--log-format", "text"}); err != nil {
			t.Fatalf("doctor: %v\n%s", err, errOut.String())
		}
		for _, want := range []string{"WARN  TAPD refused ", "request(s) with 429", "in use 180/min (lowered", "Nothing blocks a sync."} {
			if !strings.Contains(out.String(), want) {
				t.Fatalf("report lacks %q:\n%s", want, out.String())
			}
		}
	})
}

// TestDoctorExitCodes: what blocks a sync makes doctor exit 1 (through
// runProgram, as the binary), and the report says what: a tapd.base_url
// that only greets, a workspace TAPD does not know, refused credentials.
func TestDoctorExitCodes(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		f := tapdtest.New(tapdtest.Options{Seed: 12, Projects: 2, RecordsPerDay: 2})
		defer f.Close()
		cases := []struct {
			name, want string
			mod        func(env map[string]string)
			code       int
		}{
			{"healthy", "Nothing blocks a sync.", func(map[string]string) {}, 0},
			{"wrong base_url", "tapd.base_url is not the TAPD API", func(env map[string]string) {
				env["TAPD_MIRROR_TAPD_BASE_URL"] = f.URL + "/v1"
			}, 1},
			{"unknown workspace", "99999: workspace 99999 not found at TAPD (404)", func(env map[string]string) {
				env["TAPD_MIRROR_WORKSPACES"] = "10074561,99999"
			}, 1},
			{"unknown company", "projects:4242: company 4242 not found at TAPD (404)", func(env map[string]string) {
				env["TAPD_MIRROR_WORKSPACES"] = "projects:4242"
			}, 1},
			{"wrong password", "TAPD refused the credentials", func(env map[string]string) {
				env["TAPD_MIRROR_TAPD_API_PASSWORD"] = "not-the-password"
			}, 1},
		}
		for _, c := range cases {
			env := fakeEnv(f, dbURL, "10074561")
			c.mod(env)
			for k, v := range env {
				t.Setenv(k, v)
			}
			var out, errOut syncBuffer
			code := runProgram([]string{"doctor", "--log-format", "text"}, &out, &errOut)
			if code != c.code || !strings.Contains(out.String(), c.want) {
				t.Fatalf("%s: exit %d (want %d), report:\n%s\nstderr:\n%s", c.name, code, c.code, out.String(), errOut.String())
			}
			if c.code != 0 && !strings.Contains(out.String(), "Blocking a sync") {
				t.Fatalf("%s: no blocking section:\n%s", c.name, out.String())
			}
		}
	})
}

// TestDoctorRecordsAndReplays: --record saves every exchange with TAPD,
// without the credentials or the tokens it used; tapdtest replays the
// directory, and doctor against the replay reports what it reported
// against the fake.
func TestDoctorRecordsAndReplays(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		const user, password = "mirror-api-user", "PLANTEDrecordPassword"
		f := tapdtest.New(tapdtest.Options{Seed: 13, Projects: 2, RecordsPerDay: 5, User: user, Password: password})
		defer f.Close()
		for _, auth := range []string{"basic", "oauth"} {
			env := fakeEnv(f, dbURL, "projects:2001")
			env["TAPD_MIRROR_DATABASE_URL"] = "sqlite:" + filepath.Join(t.TempDir(), "doctor.db")
			id, secret := f.AppCredentials()
			if auth == "oauth" {
				delete(env, "TAPD_MIRROR_TAPD_API_USER")
				delete(env, "TAPD_MIRROR_TAPD_API_PASSWORD")
				env["TAPD_MIRROR_TAPD_CLIENT_ID"], env["TAPD_MIRROR_TAPD_CLIENT_SECRET"] = id, secret
			}
			if auth == "basic" {
				env["TAPD_MIRROR_DATABASE_URL"] = dbURL
			}
			dir := filepath.Join(t.TempDir(), "rec")
			f.ResetRequests()
			out, logs, err := runDoctor(env, "--json", "--record", dir)
			if err != nil {
				t.Fatalf("%s: doctor --record: %v\n%s", auth, err, logs)
			}
			recorded := decodeDoctor(t, out)
			files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
			if len(files) != len(f.Requests()) || len(files) != recorded.Requests {
				t.Fatalf("%s: %d files for %d requests (report: %d)", auth, len(files), len(f.Requests()), recorded.Requests)
			}
			var all strings.Builder
			for _, name := range files {
				b, _ := os.ReadFile(name)
				all.Write(b)
			}
			text := all.String()
			for _, secret := range []string{password, user, f.Token(), id, secret} {
				if strings.Contains(text, secret) {
					t.Fatalf("%s: the recording holds %q", auth, secret)
				}
			}
			if strings.Contains(text, "Basic ") || strings.Contains(text, "Bearer ") {
				t.Fatalf("%s: the recording holds an Authorization value", auth)
			}
			if !strings.Contains(text, `member_activity_log`) || !strings.Contains(text, `\"totalItems\"`) {
				t.Fatalf("%s: the recording lacks the raw answers", auth)
			}
			if auth == "oauth" {
				if recorded.Auth.Method != "oauth_app" || recorded.Auth.TokenLifetimeSeconds != 7200 {
					t.Fatalf("oauth: auth %+v", recorded.Auth)
				}
				if !strings.Contains(text, `request_token`) || !strings.Contains(text, `\"access_token\":\"[removed]\"`) {
					t.Fatalf("oauth: the token answer is not recorded with its token removed:\n%s", text[:min(len(text), 3000)])
				}
			}

			replay, err := tapdtest.NewReplay(dir)
			if err != nil {
				t.Fatal(err)
			}
			env["TAPD_MIRROR_TAPD_BASE_URL"] = replay.URL
			env["TAPD_MIRROR_DATABASE_URL"] = "sqlite:" + filepath.Join(t.TempDir(), "replay.db") // learns it all again
			out, logs, err = runDoctor(env, "--json")
			replay.Close()
			if err != nil {
				t.Fatalf("%s: doctor against the replay: %v\n%s", auth, err, logs)
			}
			replayed := decodeDoctor(t, out)
			if u := replay.Unmatched(); len(u) > 0 || replay.Unserved() != 0 {
				t.Fatalf("%s: replay unmatched %v, %d recorded answers unserved", auth, u, replay.Unserved())
			}
			// What was learned and counted, not when (the replay runs a moment later).
			a, _ := json.Marshal(recorded)
			b, _ := json.Marshal(replayed)
			if string(a) != string(b) {
				t.Fatalf("%s: replay reports differently:\n%s\n%s", auth, a, b)
			}
		}
	})
}

// TestDoctorFindsTAPDsHorizon: a TAPD keeping fewer days than
// tapd.horizon_days refuses the configured start; doctor finds TAPD's
// oldest minute, counts from it, and says which setting fits. One keeping
// more is noticed too. Neither blocks a sync.
func TestDoctorFindsTAPDsHorizon(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		for _, c := range []struct {
			tapdDays int
			want     string
			advice   string
		}{
			{180, "horizon: TAPD refuses start_time before", "set tapd.horizon_days to 180"}, // in words never seen before
			{190, "and even a day before", "a larger tapd.horizon_days mirrors those records too"},
		} {
			f := tapdtest.New(tapdtest.Options{Seed: 14, Projects: 1, RecordsPerDay: 3, HorizonDays: c.tapdDays,
				HorizonError: "start_time out of the queryable range"})
			env := fakeEnv(f, dbURL, "10074561")
			env["TAPD_MIRROR_DATABASE_URL"] = "sqlite:" + filepath.Join(t.TempDir(), "h.db")
			if c.tapdDays == 180 {
				env["TAPD_MIRROR_DATABASE_URL"] = dbURL
			}
			out, logs, err := runDoctor(env)
			f.Close()
			if err != nil || !strings.Contains(out, c.want) || !strings.Contains(out, c.advice) {
				t.Fatalf("TAPD keeping %d days: %v\n%s\n%s", c.tapdDays, err, out, logs)
			}
			if c.tapdDays == 180 {
				oldest := f.Horizon().Truncate(time.Minute)
				if !strings.Contains(out, "before "+oldest.Add(time.Minute).Format("2006-01-02 15:04")) &&
					!strings.Contains(out, "before "+oldest.Format("2006-01-02 15:04")) {
					t.Fatalf("TAPD's horizon is %s:\n%s", oldest, out)
				}
				if want := len(f.Queryable("10074561", false)); !strings.Contains(out, strconv.Itoa(want)+" records") {
					t.Fatalf("doctor did not count the %d records TAPD holds from its horizon:\n%s", want, out)
				}
			}
		}
	})
}

// TestDoctorRecordingHoldsNoEchoedCredentials: a TAPD (or a gateway) that
// quotes the refused Authorization header back: the recording holds
// neither the password nor the header's base64.
func TestDoctorRecordingHoldsNoEchoedCredentials(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		f := tapdtest.New(tapdtest.Options{Seed: 15, Projects: 1, RecordsPerDay: 1, EchoAuthorization: true})
		defer f.Close()
		env := fakeEnv(f, dbURL, "10074561")
		const wrong = "PLANTEDwrongDoctorPassword"
		env["TAPD_MIRROR_TAPD_API_PASSWORD"] = wrong
		dir := filepath.Join(t.TempDir(), "rec")
		out, _, err := runDoctor(env, "--record", dir)
		if !errors.Is(err, errBlocked) || !strings.Contains(out, "TAPD refused the credentials") {
			t.Fatalf("doctor with a wrong password: %v\n%s", err, out)
		}
		user, _ := f.Credentials()
		files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
		if len(files) == 0 {
			t.Fatal("nothing recorded")
		}
		for _, name := range files {
			b, _ := os.ReadFile(name)
			text := string(b)
			basic := base64.StdEncoding.EncodeToString([]byte(user + ":" + wrong))
			if strings.Contains(text, wrong) || strings.Contains(text, basic) || strings.Contains(text, "PLANTED") {
				t.Fatalf("%s holds the refused credentials:\n%s", name, text)
			}
			if !strings.Contains(text, "Unauthorized (Authorization: Basic [removed])") {
				t.Fatalf("%s: the echo is not recorded with its value removed:\n%s", name, text)
			}
		}
	})
}
