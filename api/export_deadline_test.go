package api_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/api"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
)

// smallBuffers makes a listener's connections keep little in flight, so a
// client that stops reading blocks the server's writes at once.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(16 << 10) //nolint:errcheck // best effort: a test knob
	}
	return c, err
}

// TestExportOutlivesWriteTimeoutButNotAStalledClient: an export that keeps
// making progress runs past the server's WriteTimeout; one whose client
// stops reading is dropped and frees its export slot.
func TestExportOutlivesWriteTimeoutButNotAStalledClient(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		const n = 20000
		seed(t, s, n)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		// Generous against a loaded machine: the server must be starved for
		// 2 s between chunks before a live export is dropped.
		h := newAPI(t, api.Options{Store: s, MaxExports: 1, ExportStall: 2 * time.Second}).Handler()
		srv := &http.Server{Handler: h, WriteTimeout: 500 * time.Millisecond}
		go srv.Serve(smallBuffers{ln}) //nolint:errcheck // closed below
		defer srv.Close()
		url := "http://" + ln.Addr().String() + "/api/v1/activity_log/export?format=csv"
		client := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
			return c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 16<<10) }) //nolint:errcheck // test knob
		}}).DialContext}}

		// A slow but steady reader: the export takes far longer than WriteTimeout.
		start := time.Now()
		resp, err := client.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		lines, rd := 0, bufio.NewReaderSize(resp.Body, 4096)
		for {
			line, err := rd.ReadString('\n')
			if line != "" && line[0] >= '0' && line[0] <= '9' { // a row's id (multi-line details continue otherwise)
				lines++
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("slow reader cut off after %s, %d lines: %v", time.Since(start), lines, err)
			}
			if lines%200 == 0 {
				time.Sleep(20 * time.Millisecond) // ~2 s in all: four times the WriteTimeout
			}
		}
		resp.Body.Close()
		if took := time.Since(start); took < 500*time.Millisecond || lines < n {
			t.Fatalf("export took %s with %d lines; want > WriteTimeout and all %d rows", took, lines, n)
		}

		// A reader that stops: the export is dropped and its slot freed.
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		stalled, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer stalled.Body.Close()
		deadline := time.Now().Add(15 * time.Second)
		for {
			r, err := client.Get(url)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, r.Body) //nolint:errcheck // only the status matters
			r.Body.Close()
			if r.StatusCode == 200 {
				break // the stalled export was dropped and gave its slot back
			}
			if r.StatusCode != http.StatusTooManyRequests || time.Now().After(deadline) {
				t.Fatalf("export beside a stalled one = %d", r.StatusCode)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}
