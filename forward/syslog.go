package forward

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/integrity"
)

// SDID is the SD-ID of the structured data element every syslog message
// carries (RFC 5424 §6.3.2: name@private enterprise number). 32473 is the
// enterprise number RFC 5612 reserves for documentation and examples; this
// project has none of its own.
const SDID = "tapd-mirror@32473"

// resendBytes bounds what a syslog destination resends after its
// connection broke: TCP has no application-level ack, so what the kernel
// accepted may never have reached the receiver. A few MiB covers the
// socket buffers on both ends.
const resendBytes = 8 << 20

// syslogDest sends RFC 5424 messages over TCP with octet-counting framing
// (RFC 6587 §3.4.1), or TLS (RFC 5425, which frames the same way). A batch
// is delivered once written and flushed to the connection.
type syslogDest struct {
	address  string
	tls      *tls.Config
	facility int
	format   string
	host     string
	version  string
	now      func() time.Time

	conn net.Conn
	w    *bufio.Writer
	// sent are the frames written on connections since the last one that
	// broke, newest last, at most resendBytes: a new connection after a
	// broken one sends them again first (duplicates carry their index).
	sent      []syslogFrame
	sentBytes int
	broke     bool
}

// syslogFrame is one octet-counted message, in two parts: the count and
// header, and the body — often the event's shared JSON line, not copied.
type syslogFrame struct{ head, body []byte }

func (f syslogFrame) size() int { return len(f.head) + len(f.body) }

func newSyslog(f config.Forward, now func() time.Time, version string) (*syslogDest, error) {
	d := &syslogDest{address: f.Address, facility: *f.Facility, format: f.Format, host: syslogHost(), version: version, now: now}
	if f.TLS {
		c, err := syslogTLS(f)
		if err != nil {
			return nil, fmt.Errorf("syslog destination %s: %w", f.Name, err)
		}
		d.tls = c
	}
	return d, nil
}

func syslogTLS(f config.Forward) (*tls.Config, error) {
	host, _, _ := net.SplitHostPort(f.Address)
	c := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12, InsecureSkipVerify: f.InsecureSkipVerify}
	if f.ServerName != "" {
		c.ServerName = f.ServerName
	}
	if f.CAFile != "" {
		pem, err := os.ReadFile(f.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading ca_file: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s holds no PEM certificate", f.CAFile)
		}
	}
	if f.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
		if err != nil {
			// The error names neither file's content; the key's path is
			// scrubbed from logs like the other secrets.
			return nil, fmt.Errorf("loading the client certificate (cert_file, key_file): %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// syslogHost is this machine's name as RFC 5424's HOSTNAME (printable
// ASCII, at most 255), or "-".
func syslogHost() string {
	h, err := os.Hostname()
	if err != nil || h == "" || len(h) > 255 || strings.IndexFunc(h, func(r rune) bool { return r < 33 || r > 126 }) >= 0 {
		return "-"
	}
	return h
}

func (d *syslogDest) dial(ctx context.Context) error {
	dl := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	var conn net.Conn
	var err error
	if d.tls != nil {
		conn, err = (&tls.Dialer{NetDialer: dl, Config: d.tls}).DialContext(ctx, "tcp", d.address)
	} else {
		conn, err = dl.DialContext(ctx, "tcp", d.address)
	}
	if err != nil {
		return fmt.Errorf("connecting to syslog receiver %s: %w", d.address, err)
	}
	d.conn, d.w = conn, bufio.NewWriterSize(conn, 64<<10)
	return nil
}

func (d *syslogDest) Deliver(ctx context.Context, b Batch) error {
	frames := make([]syslogFrame, 0, len(b.Events))
	for _, e := range b.Events {
		f, err := d.frame(b, e)
		if err != nil {
			return err
		}
		frames = append(frames, f)
	}
	if d.conn == nil {
		if err := d.dial(ctx); err != nil {
			return err
		}
		if d.broke {
			if err := d.write(ctx, d.sent); err != nil {
				return fmt.Errorf("resending the last %d messages to %s after a broken connection: %w", len(d.sent), d.address, err)
			}
			d.broke = false
		}
	}
	if err := d.write(ctx, frames); err != nil {
		return fmt.Errorf("sending %s to syslog receiver %s: %w", b.span(), d.address, err)
	}
	for _, f := range frames {
		d.sent = append(d.sent, f)
		d.sentBytes += f.size()
	}
	for d.sentBytes > resendBytes && len(d.sent) > 1 {
		d.sentBytes -= d.sent[0].size()
		d.sent = d.sent[1:]
	}
	return nil
}

// write sends frames and flushes them; on any error the connection is
// dropped, and the next delivery reconnects and resends.
func (d *syslogDest) write(ctx context.Context, frames []syslogFrame) error {
	deadline := time.Now().Add(30 * time.Second)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	conn := d.conn // the field is cleared below; the AfterFunc runs on another goroutine
	conn.SetWriteDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.SetWriteDeadline(time.Unix(1, 0)) })
	defer stop()
	var err error
	for _, f := range frames {
		if _, err = d.w.Write(f.head); err != nil {
			break
		}
		if _, err = d.w.Write(f.body); err != nil {
			break
		}
	}
	if err == nil {
		err = d.w.Flush()
	}
	if err != nil {
		d.conn.Close()
		d.conn, d.w, d.broke = nil, nil, true
	}
	return err
}

func (d *syslogDest) Close() error {
	if d.conn == nil {
		return nil
	}
	err := d.conn.Close()
	d.conn = nil
	return err
}

// frame is e as an RFC 5424 SYSLOG-MSG — PRI, version 1, the event's
// time, this host, APP-NAME tapd-mirror, no PROCID, MSGID the event's type,
// the SDID element (idx: the log index; cp: the covering checkpoint's
// size, when signed; rid: the record's id) and the body (JSON, OCSF JSON or
// CEF) — with RFC 6587's octet count before it ("LEN MSG"). It runs for
// every event: the header is appended by hand, the body is not copied. An
// alert (a forward notifier's) has no index: its element carries alert
// (the firing id) and rule instead, at severity warning.
func (d *syslogDest) frame(b Batch, e Event) (syslogFrame, error) {
	var body []byte
	if d.format == "cef" {
		body = []byte(cef(e, d.version))
	} else {
		var err error
		if body, err = b.json(d.format, e); err != nil {
			return syslogFrame{}, err
		}
	}
	sev := 6 // informational: a record
	if e.Type != string(integrity.KindRecord) && e.Type != string(integrity.KindUpdate) {
		sev = 5 // notice: a deletion, purge or hold changes the archive
	}
	if e.Alert != nil {
		sev = 4 // warning: a rule fired, someone should look
	}
	at := e.at
	if at.IsZero() {
		at = d.now()
	}
	m := make([]byte, 0, 160+len(d.host))
	m = strconv.AppendInt(append(m, '<'), int64(d.facility*8+sev), 10)
	m = at.UTC().AppendFormat(append(m, ">1 "...), "2006-01-02T15:04:05.000Z")
	m = append(append(append(m, ' '), d.host...), " tapd-mirror - "...)
	m = append(append(append(append(m, e.Type...), " ["...), SDID...), ' ')
	if a := e.Alert; a != nil {
		m = append(strconv.AppendInt(append(m, `alert="`...), a.ID, 10), `" type="`...)
		m = append(append(append(append(m, e.Type...), `" rule="`...), sdValue.Replace(a.Rule)...), '"')
	} else {
		m = append(strconv.AppendInt(append(m, `idx="`...), e.Index, 10), `" type="`...)
		m = append(append(m, e.Type...), '"')
	}
	if id := e.RecordID; id != 0 || e.Record != nil {
		if e.Record != nil {
			id = e.Record.ID
		}
		m = append(strconv.AppendInt(append(m, ` rid="`...), id, 10), '"')
	}
	if e.Checkpoint != nil {
		m = append(strconv.AppendInt(append(m, ` cp="`...), e.Checkpoint.Size, 10), '"')
	}
	m = append(m, "] "...)
	head := strconv.AppendInt(make([]byte, 0, len(m)+12), int64(len(m)+len(body)), 10)
	return syslogFrame{append(append(head, ' '), m...), body}, nil
}

// sdValue escapes an SD-PARAM value (RFC 5424 §6.3.3: ", \ and ]).
var sdValue = strings.NewReplacer(`"`, `\"`, `\`, `\\`, `]`, `\]`)

// CheckFiles reads what the destinations need from disk (a TLS syslog
// destination's CA file and client certificate) without connecting, so
// that `config check` finds what serve would refuse at start.
func CheckFiles(dests []config.Forward) error {
	var errs []error
	for _, f := range dests {
		if f.Kind == config.ForwardSyslog && f.TLS {
			if _, err := syslogTLS(f); err != nil {
				errs = append(errs, fmt.Errorf("syslog destination %s: %w", f.Name, err))
			}
		}
	}
	return errors.Join(errs...)
}
