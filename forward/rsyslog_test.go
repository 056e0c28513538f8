package forward_test

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// rsyslog is Debian's rsyslogd receiving on a loopback port with imtcp
// (octet-counted framing, RFC 6587; with tls the gtls driver, RFC 5425) and
// writing every message through a template of RFC 5424 fields, which only
// hold the right values if rsyslog parsed the message as RFC 5424.
type rsyslog struct {
	t        *testing.T
	dir      string
	port     int
	out      string
	conf     string
	ca       string // the CA that signed its certificate (tls)
	cmd      *exec.Cmd
	waitDone chan struct{}
}

// rsyslogLine is one received message: APP-NAME|MSGID|STRUCTURED-DATA|MSG
// (with PRI and HOSTNAME before them, to check those too).
const rsyslogTemplate = `template(name="fields" type="list") {
  property(name="pri") constant(value="|")
  property(name="hostname") constant(value="|")
  property(name="app-name") constant(value="|")
  property(name="procid") constant(value="|")
  property(name="msgid") constant(value="|")
  property(name="structured-data") constant(value="|")
  property(name="msg") constant(value="\n")
}
`

func startRsyslog(t *testing.T, tls bool) *rsyslog {
	t.Helper()
	bin, err := exec.LookPath("rsyslogd")
	if err != nil {
		bin = "/usr/sbin/rsyslogd"
		if _, serr := os.Stat(bin); serr != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("rsyslogd is not installed (apt-get install rsyslog rsyslog-gnutls; .ci/run does)")
			}
			t.Skip("rsyslogd is not installed (apt-get install rsyslog rsyslog-gnutls)")
		}
	}
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	r := &rsyslog{t: t, dir: dir, port: port, out: filepath.Join(dir, "received.log"), conf: filepath.Join(dir, "rsyslog.conf")}
	var conf strings.Builder
	fmt.Fprintf(&conf, "global(workDirectory=%q maxMessageSize=\"64k\"", dir)
	input := fmt.Sprintf(`input(type="imtcp" port="%d" address="127.0.0.1")`, port)
	if tls {
		if _, err := os.Stat("/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so"); err != nil && os.Getenv("CI") != "true" {
			t.Skip("rsyslog's gtls driver is not installed (apt-get install rsyslog-gnutls)")
		}
		r.ca, _ = writeCerts(t, dir)
		fmt.Fprintf(&conf, ` defaultNetstreamDriver="gtls" defaultNetstreamDriverCAFile=%q defaultNetstreamDriverCertFile=%q defaultNetstreamDriverKeyFile=%q`,
			r.ca, filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem"))
		conf.WriteString(")\nmodule(load=\"imtcp\" streamDriver.name=\"gtls\" streamDriver.mode=\"1\" streamDriver.authMode=\"anon\")\n")
	} else {
		conf.WriteString(")\nmodule(load=\"imtcp\")\n")
	}
	conf.WriteString(input + "\n" + rsyslogTemplate)
	fmt.Fprintf(&conf, "*.* action(type=\"omfile\" file=%q template=\"fields\")\n", r.out)
	if err := os.WriteFile(r.conf, []byte(conf.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-N1", "-f", r.conf).CombinedOutput(); err != nil {
		t.Fatalf("rsyslogd rejects its config: %v\n%s\n%s", err, out, conf.String())
	}
	r.start(bin)
	t.Cleanup(r.kill)
	return r
}

func (r *rsyslog) start(bin string) {
	r.t.Helper()
	r.cmd = exec.Command(bin, "-n", "-f", r.conf, "-i", filepath.Join(r.dir, "rsyslogd.pid"))
	r.cmd.Stderr, r.cmd.Stdout = os.Stderr, os.Stderr
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	r.waitDone = make(chan struct{})
	go func() { r.cmd.Wait(); close(r.waitDone) }()
	waitFor(r.t, "rsyslogd listening", func() bool {
		c, err := net.DialTimeout("tcp", r.addr(), time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

func (r *rsyslog) addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

// kill stops rsyslogd at once (SIGKILL: no flushing, as in a crash).
func (r *rsyslog) kill() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	r.cmd.Process.Signal(syscall.SIGKILL)
	<-r.waitDone
	r.cmd = nil
}

func (r *rsyslog) restart() {
	r.t.Helper()
	r.kill()
	bin, _ := exec.LookPath("rsyslogd")
	if bin == "" {
		bin = "/usr/sbin/rsyslogd"
	}
	r.start(bin)
}

// received is one message as rsyslog parsed it.
type received struct {
	pri, host, app, procid, msgid, sd, msg string
	idx                                    int64
}

var sdIdx = regexp.MustCompile(`^\[tapd-mirror@32473 idx="([0-9]+)" type="([a-z]+)"( rid="[0-9]+")?( cp="[0-9]+")?\]$`)

// messages are the log events received, each with its SD element checked.
func (r *rsyslog) messages() []received {
	r.t.Helper()
	out := r.lines()
	for i, m := range out {
		sd := sdIdx.FindStringSubmatch(m.sd)
		if sd == nil || sd[2] != m.msgid {
			r.t.Fatalf("structured data %q with msgid %q, not the SD element tapd-mirror sends", m.sd, m.msgid)
		}
		out[i].idx, _ = strconv.ParseInt(sd[1], 10, 64)
	}
	return out
}

// lines are the messages received as rsyslog parsed them, unchecked.
func (r *rsyslog) lines() []received {
	r.t.Helper()
	f, err := os.Open(r.out)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		r.t.Fatal(err)
	}
	defer f.Close()
	var out []received
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		p := strings.SplitN(sc.Text(), "|", 7)
		if len(p) != 7 {
			continue // a line being written
		}
		out = append(out, received{pri: p[0], host: p[1], app: p[2], procid: p[3], msgid: p[4], sd: p[5], msg: p[6]})
	}
	return out
}

// writeCerts writes a CA and a certificate for 127.0.0.1 signed by it.
func writeCerts(t *testing.T, dir string) (caFile, certFile string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(24 * time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	write := func(name, typ string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("server-key.pem", "PRIVATE KEY", keyDER)
	return write("ca.pem", "CERTIFICATE", caDER), write("server.pem", "CERTIFICATE", der)
}
