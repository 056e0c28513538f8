package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// build compiles the real binary once, for runs in their own process.
func (b *bench) build(ctx context.Context) (string, error) {
	if b.binary != "" {
		return b.binary, nil
	}
	out := filepath.Join(b.tmp, "tapd-mirror")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/tapd-mirror")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building tapd-mirror (run the bench from the repository root): %w", err)
	}
	b.binary = out
	return out, nil
}

// proc is a tapd-mirror process started by the bench.
type proc struct {
	cmd   *exec.Cmd
	start time.Time
	peak  atomic.Int64 // KiB, from /proc/PID/status VmHWM
	done  chan struct{}
}

// command is the built tapd-mirror with args, in the bench's environment plus env.
func (b *bench) command(ctx context.Context, env map[string]string, args ...string) (*exec.Cmd, error) {
	bin, err := b.build(ctx)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	return cmd, nil
}

func (b *bench) startProc(ctx context.Context, env map[string]string, args ...string) (*proc, error) {
	cmd, err := b.command(ctx, env, args...)
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	p := &proc{cmd: cmd, start: time.Now(), done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go p.watchRSS()
	return p, nil
}

// watchRSS samples the child's VmHWM (its own peak RSS, high-water since
// exec) until it exits. getrusage's maxrss is no good here: it counts the
// moment between fork and exec, when the child shared the bench's memory.
func (p *proc) watchRSS() {
	path := fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid)
	for {
		if b, err := os.ReadFile(path); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
					kib, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
					if kib > p.peak.Load() {
						p.peak.Store(kib)
					}
				}
			}
		}
		select {
		case <-p.done:
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// wait waits for the process and returns its wall time and peak RSS in MiB.
func (p *proc) wait() (time.Duration, float64, error) {
	err := p.cmd.Wait()
	close(p.done)
	return time.Since(p.start), float64(p.peak.Load()) / 1024, err
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
