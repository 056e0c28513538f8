package forward_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/forward"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
)

// addAwkward stores a record whose fields hold every character CEF
// escapes.
func addAwkward(t *testing.T, s *storage.Store) {
	t.Helper()
	if _, err := s.UpsertMirrored(context.Background(), []storage.Activity{{Platform: "tapd", Serial: "p|1", ActionType: "delete",
		ActionDetail: "a=b|c\\d\nsecond line", Username: "eve=x", Timestamp: time.Unix(1_700_000_500, 0).UTC(),
		Source: storage.SourceTAPD, SourceID: "9999", WorkspaceID: "20001",
		Extra: map[string]string{"ip": "10.1.2.3", "title": `x\y=z`, "operate_object": "需求|story"}}}); err != nil {
		t.Fatal(err)
	}
}

// byIndex checks every index below size arrived for the messages pick
// selects, first arrivals in order, duplicates only of what arrived.
func byIndex(t *testing.T, msgs []received, pick func(received) bool, size int64) map[int64]received {
	t.Helper()
	var evs []forward.Event
	first := map[int64]received{}
	for _, m := range msgs {
		if pick(m) {
			evs = append(evs, forward.Event{Index: m.idx})
			if _, ok := first[m.idx]; !ok {
				first[m.idx] = m
			}
		}
	}
	checkDelivery(t, evs, size)
	return first
}

// TestSyslogReachesRsyslogOverTCPAndTLS: rsyslog receives every event as
// RFC 5424 (its parser fills APP-NAME, MSGID and STRUCTURED-DATA with what
// was sent), in JSON and in CEF with the escaped fields intact, over plain
// TCP and over TLS with the receiver verified against its CA.
func TestSyslogReachesRsyslogOverTCPAndTLS(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		fill(t, s, 5)
		addAwkward(t, s)
		size := headSize(t, s)
		host, _ := os.Hostname()
		for _, tls := range []bool{false, true} {
			t.Run(fmt.Sprintf("tls=%t", tls), func(t *testing.T) {
				rs := startRsyslog(t, tls)
				dest := func(name, format string) config.Forward {
					d := config.Forward{Name: name + fmt.Sprint(tls), Kind: "syslog", Address: rs.addr(), Format: format, BatchSize: 3, TLS: tls}
					if tls {
						d.CAFile = rs.ca
					}
					return d
				}
				fw, err := forward.New(fast(forward.Options{Store: s, Version: "1.2|3", Destinations: []config.Forward{dest("json", "json"), dest("cef", "cef")}}))
				if err != nil {
					t.Fatal(err)
				}
				stop := start(fw)
				isCEF := func(m received) bool { return strings.HasPrefix(m.msg, "CEF:0|") }
				waitFor(t, "rsyslog to receive every event twice", func() bool {
					n := 0
					for _, m := range rs.messages() {
						if m.idx == size-1 {
							n++
						}
					}
					return n == 2
				})
				stop()
				msgs := rs.messages()
				jsonMsgs := byIndex(t, msgs, func(m received) bool { return !isCEF(m) }, size)
				cefMsgs := byIndex(t, msgs, isCEF, size)
				for i := range size {
					for _, m := range []received{jsonMsgs[i], cefMsgs[i]} {
						if m.app != "tapd-mirror" || m.procid != "-" || (m.host != host && host != "") {
							t.Fatalf("message %d parsed as app %q procid %q host %q", i, m.app, m.procid, m.host)
						}
					}
					j := jsonMsgs[i]
					if !strings.HasPrefix(j.msg, fmt.Sprintf(`{"index":%d,"type":"%s"`, i, j.msgid)) {
						t.Fatalf("JSON body %q of message %d (msgid %s)", j.msg, i, j.msgid)
					}
					wantPri := "110" // log audit (13), informational
					if j.msgid != "record" {
						wantPri = "109" // notice
					}
					if j.pri != wantPri {
						t.Errorf("message %d (%s): PRI %s, want %s", i, j.msgid, j.pri, wantPri)
					}
				}
				// The awkward record (the last event) in CEF: header pipes
				// and backslashes escaped, = and newlines in extension values.
				c := cefMsgs[size-1].msg
				for _, want := range []string{
					`CEF:0|tapd-mirror|tapd-mirror|1.2\|3|record:delete|TAPD delete 需求\|story|3|`,
					fmt.Sprintf(` cn1Label=logIndex cn1=%d `, size-1), ` act=delete `, ` msg=a\=b|c\\d\nsecond line `, ` suser=eve\=x `, ` src=10.1.2.3 `,
					` cs1Label=project cs1=p|1 `, ` cs4Label=title cs4=x\\y\=z `, ` externalId=9999 `,
				} {
					if !strings.Contains(c, want) {
						t.Errorf("CEF message lacks %q:\n%s", want, c)
					}
				}
				if h := cefMsgs[size-2].msg; !strings.Contains(h, "|hold|hold|5|") || !strings.Contains(h, "cs1Label=hold cs1=case-1") || strings.Contains(h, "Label= ") {
					t.Errorf("the hold in CEF: %s", h)
				}
			})
		}
	})
}

// TestSyslogResendsWhatACrashedReceiverLost: rsyslog killed (SIGKILL) while
// events keep coming, then restarted on its port: every event arrives,
// first arrivals in order, duplicates only of indexes already delivered.
func TestSyslogResendsWhatACrashedReceiverLost(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		fill(t, s, 20)
		rs := startRsyslog(t, false)
		fw, err := forward.New(fast(forward.Options{Store: s, Destinations: []config.Forward{
			{Name: "qradar", Kind: "syslog", Address: rs.addr(), BatchSize: 4}}}))
		if err != nil {
			t.Fatal(err)
		}
		stop := start(fw)
		defer stop()
		arrived := func(idx int64) func() bool {
			return func() bool {
				for _, m := range rs.messages() {
					if m.idx == idx {
						return true
					}
				}
				return false
			}
		}
		waitFor(t, "the first events", arrived(headSize(t, s)-1))
		rs.kill()
		for range 5 { // written to a dead receiver: some into the kernel's buffers, the rest refused
			fill(t, s, 4)
			time.Sleep(20 * time.Millisecond)
		}
		rs.restart()
		size := headSize(t, s)
		waitFor(t, "every event after the restart", arrived(size-1))
		waitFor(t, "the cursor at the end", func() bool { st, _ := fw.Status(context.Background()); return st[0].Cursor == size })
		byIndex(t, rs.messages(), func(received) bool { return true }, size)
	})
}
