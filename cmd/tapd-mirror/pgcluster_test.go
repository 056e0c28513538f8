package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/config"
)

// pgCluster is a pg_auto_failover formation on loopback ports: a monitor, a
// primary and a standby, run by Debian's pg_autoctl as the postgres user in
// a temporary directory that goes away with every process, pass or fail.
type pgCluster struct {
	t       *testing.T
	dir     string
	cred    *syscall.Credential
	monitor int    // the monitor's port
	ports   [2]int // node1's and node2's
	procs   []*exec.Cmd
	exited  []chan struct{}
}

const pgCtl = "/usr/lib/postgresql/15/bin/pg_ctl"

// startPGCluster builds the formation and waits until node1 is the primary
// and node2 its synchronous standby. Without pg_autoctl (or root, to become
// postgres) it skips, unless CI=true.
func startPGCluster(t *testing.T) *pgCluster {
	t.Helper()
	unavailable := func(why string) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but %s (.ci/run installs postgresql-15-auto-failover)", why)
		}
		t.Skip(why)
	}
	if _, err := exec.LookPath("pg_autoctl"); err != nil {
		unavailable("pg_autoctl is not installed (Debian: postgresql-15-auto-failover)")
	}
	if _, err := os.Stat(pgCtl); err != nil {
		unavailable("PostgreSQL 15's pg_ctl is missing")
	}
	if os.Geteuid() != 0 {
		unavailable("the test must run as root to start PostgreSQL as the postgres user")
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		unavailable("no postgres OS user")
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	dir, err := os.MkdirTemp("", "tapd-mirror-failover-")
	if err != nil {
		t.Fatal(err)
	}
	c := &pgCluster{t: t, dir: dir, cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	t.Cleanup(c.stop)
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	c.monitor, c.ports[0], c.ports[1] = freePort(t), freePort(t), freePort(t)

	c.start("monitor", "create", "monitor", "--pgctl", pgCtl, "--pgdata", c.pgdata("monitor"),
		"--pgport", strconv.Itoa(c.monitor), "--hostname", "127.0.0.1", "--auth", "trust", "--no-ssl", "--run")
	c.waitFor("the monitor to accept connections", func(db *sql.DB) (bool, error) { return true, nil })
	// The monitor promotes the standby once the old primary reports itself
	// demoted, or after primary_demote_timeout (30 s) in any case. On a
	// loaded 2-core machine the old primary's keeper can take longer than
	// that to demote, and the writes it still accepts meanwhile are lost
	// (seen: a finished run read back as running). Waiting longer for a keeper
	// that is alive keeps the test about the mirror, not the machine's load.
	monitor, err := sql.Open("postgres", fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=pg_auto_failover sslmode=disable", c.monitor))
	if err != nil {
		t.Fatal(err)
	}
	defer monitor.Close()
	if _, err := monitor.Exec(`ALTER SYSTEM SET pgautofailover.primary_demote_timeout = '5min'`); err != nil {
		t.Fatalf("setting the monitor's primary_demote_timeout: %v", err)
	}
	if _, err := monitor.Exec(`SELECT pg_reload_conf()`); err != nil {
		t.Fatalf("reloading the monitor's configuration: %v", err)
	}
	c.startNode(1)
	c.waitStates(map[string]string{"node1": "single"})
	// The standby's base backup waits for a checkpoint, which is spread over
	// minutes by default; with nothing left to write, it is instant.
	if _, err := c.node(1).Exec(`CHECKPOINT`); err != nil {
		t.Fatalf("checkpoint on node1: %v", err)
	}
	c.startNode(2)
	c.waitStates(map[string]string{"node1": "primary", "node2": "secondary"})
	return c
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func (c *pgCluster) pgdata(name string) string { return filepath.Join(c.dir, name) }

func (c *pgCluster) monitorURL() string {
	return fmt.Sprintf("postgres://autoctl_node@127.0.0.1:%d/pg_auto_failover?sslmode=disable", c.monitor)
}

// DSN is database_url for the formation, in the host-list URL form.
func (c *pgCluster) DSN() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d,127.0.0.1:%d/tapd?sslmode=disable&target_session_attrs=read-write&connect_timeout=5",
		c.ports[0], c.ports[1])
}

// node is a connection pool on node n alone.
func (c *pgCluster) node(n int) *sql.DB {
	db, err := sql.Open("postgres", fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=tapd sslmode=disable", c.ports[n-1]))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { db.Close() })
	return db
}

func (c *pgCluster) startNode(n int) {
	name := fmt.Sprintf("node%d", n)
	c.start(name, "create", "postgres", "--pgctl", pgCtl, "--pgdata", c.pgdata(name),
		"--pgport", strconv.Itoa(c.ports[n-1]), "--hostname", "127.0.0.1", "--name", name,
		"--auth", "trust", "--no-ssl", "--dbname", "tapd", "--monitor", c.monitorURL(), "--run")
}

// autoctl is pg_autoctl args as the postgres user, with its configuration
// and state kept in the cluster's directory.
func (c *pgCluster) autoctl(args ...string) *exec.Cmd {
	cmd := exec.Command("pg_autoctl", args...)
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), "HOME="+c.dir, "XDG_CONFIG_HOME="+filepath.Join(c.dir, "config"),
		"XDG_DATA_HOME="+filepath.Join(c.dir, "data"), "XDG_RUNTIME_DIR="+filepath.Join(c.dir, "run"))
	// Its own process group, so that stop reaches every process it started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred, Setpgid: true}
	return cmd
}

// start runs a long-lived pg_autoctl, logging to DIR/name.log.
func (c *pgCluster) start(name string, args ...string) {
	c.t.Helper()
	logf, err := os.Create(filepath.Join(c.dir, name+".log"))
	if err != nil {
		c.t.Fatal(err)
	}
	cmd := c.autoctl(args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		c.t.Fatalf("starting pg_autoctl %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(exited) }() //nolint:errcheck // stop signals it
	c.procs, c.exited = append(c.procs, cmd), append(c.exited, exited)
}

// failover makes node to the primary in place of node from, and waits
// until from follows it.
//
// pg_auto_failover 2.0 has a race here (hapostgres/pg_auto_failover#774,
// fixed after 2.0): if the old primary's keeper reports "primary" while the
// monitor commits the failover, the monitor reassigns it wait_primary, then
// demote_timeout, a transition its keeper does not have, and the formation
// is stuck (seen in CI: "does not know how to reach state demote_timeout
// from wait_primary"). So the old primary's keeper is paused while the
// failover is committed; its Postgres keeps serving, as it would for a
// keeper between two reports, and the mirror meets the same failover.
func (c *pgCluster) failover(from, to int) {
	c.t.Helper()
	resume := c.pauseKeeper(from)
	defer resume()
	c.waitFor("no keeper report in flight at the monitor", func(db *sql.DB) (bool, error) {
		var active int
		err := db.QueryRow(`SELECT count(*) FROM pg_stat_activity
			WHERE state = 'active' AND pid <> pg_backend_pid() AND query LIKE '%node_active%'`).Scan(&active)
		return err == nil && active == 0, err
	})
	c.waitFor("the monitor to start the failover", func(db *sql.DB) (bool, error) {
		_, err := db.Exec(`SELECT pgautofailover.perform_failover('default', 0)`)
		return err == nil, err
	})
	resume()
	c.waitStates(map[string]string{fmt.Sprintf("node%d", to): "primary", fmt.Sprintf("node%d", from): "secondary"})
}

// pauseKeeper stops (SIGSTOP) every pg_autoctl process of node n, not its
// Postgres, and returns the function that resumes them (safe to call twice).
func (c *pgCluster) pauseKeeper(n int) (resume func()) {
	c.t.Helper()
	pgid := c.procs[n].Process.Pid // procs: monitor, node1, node2
	var paused []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil || strings.TrimSpace(string(comm)) != "pg_autoctl" {
			continue
		}
		if g, err := syscall.Getpgid(pid); err == nil && g == pgid && syscall.Kill(pid, syscall.SIGSTOP) == nil {
			paused = append(paused, pid)
		}
	}
	if len(paused) == 0 {
		c.t.Fatalf("node%d: no pg_autoctl process to pause in process group %d", n, pgid)
	}
	done := false
	return func() {
		if done {
			return
		}
		done = true
		for _, pid := range paused {
			syscall.Kill(pid, syscall.SIGCONT) //nolint:errcheck // it may be gone
		}
	}
}

// waitFor polls the monitor until ok says so.
func (c *pgCluster) waitFor(what string, ok func(db *sql.DB) (bool, error)) {
	c.t.Helper()
	db, err := sql.Open("postgres", c.monitorURL()+"&connect_timeout=2")
	if err != nil {
		c.t.Fatal(err)
	}
	defer db.Close()
	var last error
	for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if last = db.Ping(); last != nil {
			continue
		}
		done, err := ok(db)
		if done {
			return
		}
		last = err
	}
	c.t.Fatalf("timed out waiting for %s (last: %v)\n%s", what, last, c.logs())
}

// waitStates waits until each named node reports, and is assigned, its state.
func (c *pgCluster) waitStates(want map[string]string) {
	c.t.Helper()
	c.waitFor(fmt.Sprintf("node states %v", want), func(db *sql.DB) (bool, error) {
		rows, err := db.Query(`SELECT nodename, reportedstate::text, goalstate::text FROM pgautofailover.node`)
		if err != nil {
			return false, err
		}
		defer rows.Close()
		reached := 0
		for rows.Next() {
			var name, reported, goal string
			if err := rows.Scan(&name, &reported, &goal); err != nil {
				return false, err
			}
			if w, ok := want[name]; ok && reported == w && goal == w {
				reached++
			}
		}
		return reached == len(want), rows.Err()
	})
}

// logs is the tail of every pg_autoctl log, for failure messages: long
// enough to show each node's state transitions through both failovers.
func (c *pgCluster) logs() string {
	var b strings.Builder
	files, _ := filepath.Glob(filepath.Join(c.dir, "*.log"))
	for _, f := range files {
		data, _ := os.ReadFile(f)
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		fmt.Fprintf(&b, "--- %s (last lines)\n%s\n", filepath.Base(f), strings.Join(lines[max(0, len(lines)-80):], "\n"))
	}
	return b.String()
}

// stop ends every process of the formation — pg_autoctl stops its
// PostgreSQL on SIGTERM; whatever outlives that is killed — then removes
// the directory.
func (c *pgCluster) stop() {
	if c.t.Failed() {
		c.t.Logf("pg_auto_failover logs:\n%s", c.logs())
	}
	for i := len(c.procs) - 1; i >= 0; i-- {
		syscall.Kill(-c.procs[i].Process.Pid, syscall.SIGTERM) //nolint:errcheck // it may be gone
	}
	for i, exited := range c.exited {
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			syscall.Kill(-c.procs[i].Process.Pid, syscall.SIGKILL) //nolint:errcheck // it may be gone
			<-exited
		}
	}
	// A postmaster that left the process group: its pid is in postmaster.pid.
	for _, name := range []string{"monitor", "node1", "node2"} {
		data, err := os.ReadFile(filepath.Join(c.pgdata(name), "postmaster.pid"))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.SplitN(string(data), "\n", 2)[0])
		if err != nil || pid <= 0 {
			continue
		}
		// Only if that pid is still this cluster's postgres, not a reused one.
		if cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && strings.Contains(string(cmdline), c.dir) {
			if err := syscall.Kill(pid, syscall.SIGKILL); err == nil {
				c.t.Logf("killed %s's postmaster %d, left running by pg_autoctl", name, pid)
			}
		}
	}
	if err := os.RemoveAll(c.dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		c.t.Errorf("removing the cluster's directory: %v", err)
	}
}

// primaryPort is the port of the node that accepts writes, as a client of
// DSN finds it.
func (c *pgCluster) primaryPort(ctx context.Context) (int, error) {
	_, dsn, err := config.ParseDatabaseURL(c.DSN())
	if err != nil {
		return 0, err
	}
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var port int
	err = db.QueryRowContext(ctx, `SELECT inet_server_port()`).Scan(&port)
	return port, err
}
