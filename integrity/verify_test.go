package integrity

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"
)

// wantEventError asserts that err names event index for reason want.
func wantEventError(t *testing.T, err error, index int64, want error) {
	t.Helper()
	var ee *EventError
	if !errors.As(err, &ee) {
		t.Fatalf("error = %v; want an *EventError", err)
	}
	if ee.Index != index || !errors.Is(err, want) {
		t.Fatalf("error = %v; want event %d: %v", err, index, want)
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("event %d:", index)) {
		t.Fatalf("message %q does not name event %d", err, index)
	}
}

func TestFullBundleRoundTripEverySize(t *testing.T) {
	k := testKey(t, "tapd-mirror.test")
	// Every size up to 70 exercises every shape of the right edge; the tiny
	// chunk size spreads the events over many files.
	for n := 0; n <= 70; n++ {
		evs := testEvents(n)
		sum, err := Verify(bytes.NewReader(fullBundle(t, k, evs, 700, nil)), k.VerifierKey(), nil)
		if err != nil {
			t.Fatalf("size %d: %v", n, err)
		}
		if sum.Events != int64(n) || sum.Checkpoint.Size != int64(n) || sum.Filtered {
			t.Fatalf("size %d: summary %+v", n, sum)
		}
	}
}

func TestSummaryCountsKindsAndSpan(t *testing.T) {
	k := testKey(t, "tapd-mirror.test")
	evs := testEvents(300)
	want := map[Kind]int64{}
	for _, e := range evs {
		want[e.Kind]++
	}
	sum, err := Verify(bytes.NewReader(fullBundle(t, k, evs, 0, map[int64]bool{0: true})), k.VerifierKey(), nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[Kind]int64{KindRecord: sum.Records + sum.Withheld, KindUpdate: sum.Updates, KindDelete: sum.Deletions,
		KindPurge: sum.Purges, KindHold: sum.Holds, KindRelease: sum.Releases, KindAccess: sum.Accesses}
	for kind, n := range want {
		if got[kind] != n {
			t.Errorf("%s: summary counts %d, want %d", kind, got[kind], n)
		}
	}
	if sum.Withheld != 1 || sum.Events != 300 {
		t.Errorf("withheld %d, events %d; want 1, 300", sum.Withheld, sum.Events)
	}
	// Event 0 is withheld, so the span starts at event 1.
	if !sum.First.Equal(t0.Add(time.Second)) || !sum.Last.Equal(t0.Add(299*time.Second)) {
		t.Errorf("span %v .. %v", sum.First, sum.Last)
	}
	if sum.Records == 0 || sum.Updates == 0 || sum.Deletions == 0 || sum.Purges == 0 || sum.Holds == 0 || sum.Releases == 0 || sum.Accesses == 0 {
		t.Fatalf("test history lacks a kind: %+v", sum)
	}
}

func TestVerifyDetectsAlteredEvent(t *testing.T) {
	k := testKey(t, "tapd-mirror.test")
	b := fullBundle(t, k, testEvents(100), 2000, nil)
	bad := editLines(t, b, func(l []string) []string {
		l[40] = strings.Replace(l[40], `"username":"张三"`, `"username":"李四"`, 1)
		return l
	})
	if bytes.Equal(bad, editLines(t, b, func(l []string) []string { return l })) {
		t.Fatal("test edit changed nothing")
	}
	sum, err := Verify(bytes.NewReader(bad), k.VerifierKey(), nil)
	wantEventError(t, err, 40, ErrMismatch)
	if sum.Events != 40 {
		t.Fatalf("read %d events before the bad one; want 40", sum.Events)
	}
}

func TestVerifyDetectsAlteredLastEventAndHold(t *testing.T) {
	k := testKey(t, "tapd-mirror.test")
	evs := testEvents(40) // event 37 is a hold, 39 the last
	b := fullBundle(t, k, evs, 0, nil)
	for _, c := range []struct {
		i        int
		old, new string
	}{{39, `"ip":"10.0.0.1"`, `"ip":"10.0.0.2"`}, {37, `"reason":"litigation"`, `"reason":"none"`}} {
		if !strings.Contains(string(b), c.old) {
			t.Fatalf("bundle lacks %s", c.old)
		}
		bad := editLines(t, b, func(l []string) []string {
			l[c.i] = strings.Replace(l[c.i], c.old, c.new, 1)
			return l
		})
		_, err := Verify(bytes.NewReader(bad), k.VerifierKey(), nil)
		wantEventError(t, err, int64(c.i), ErrMismatch)
	}
}

var indexField = regexp.MustCompile(`^\{"index":\d+`)

func TestVerifyDetectsSwappedEvents(t *testing.T) {
	k := testKey(t, "tapd-mirror.test")
	b := fullBundle(t, k, testEvents(64), 0, nil)
	swap := func(l []string) []string { l[10], l[20] = l[20], l[10]; return l }
	_, err := Verify(bytes.NewReader(editLines(t, b, swap)), k.VerifierKey(), nil)
	wantEventError(t, err, 10, ErrMismatch)

	// Renumbered so that the index fields look right: the hashes still tell.
	renumbered := editLines(t, b, func(l []string) []string {
		l = swap(l)
		for i := range l {
			l[i] = indexField.ReplaceAllString(l[i], fmt.Sprintf(`{"index":%d`, i))
		}
		return l
	})
	_, err = Verify(bytes.NewReader(renumbered), k.VerifierKey(), nil)
	wantEventError(t, err, 10, ErrMismatch)

	// An index far beyond the log is reported at the place it took.
	far := editLines(t, b, func(l []string) []string {
		l[10] = indexField.ReplaceAllString(l[10], `{"index":999999`)
		return l
	})
	_, err = Verify(bytes.NewReader(far), k.VerifierKey(), nil)
	wantEventError(t, err, 10, ErrMismatch)
}

func TestVerifyDetectsTruncation(t *testing.T) {
	k := testKey(t, "tapd-mirror.test")
	b := fullBundle(t, k, testEvents(50), 0, nil)
	cut := editLines(t, b, func(l []string) []string { return l[:45] })
	sum, err := Verify(bytes.NewReader(cut), k.VerifierKey(), nil)
	wantEventError(t, err, 45, ErrTruncated)
	if sum.Events != 45 {
		t.Fatalf("summary counts %d events; want the 45 read", sum.Events)
	}
	// A dropped event in the middle shows as the next one in its place.
	gap := editLines(t, b, func(l []string) []string { return append(l[:20:20], l[21:]...) })
	_, err = Verify(bytes.NewReader(gap), k.VerifierKey(), nil)
	wantEventError(t, err, 20, ErrMismatch)
	// A byte-level cut inside the tar stream.
	_, err = Verify(bytes.NewReader(b[:len(b)*2/3]), k.VerifierKey(), nil)
	if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTruncated) {
		t.Fatalf("cut tar: %v", err)
	}
	// An extra event beyond the checkpoint.
	extra := editLines(t, b, func(l []string) []string {
		return append(l, indexField.ReplaceAllString(l[49], `{"index":50`))
	})
	_, err = Verify(bytes.NewReader(extra), k.VerifierKey(), nil)
	wantEventError(t, err, 50, ErrMismatch)
}

func TestVerifyRejectsOtherKey(t *testing.T) {
	k := testKey(t, "tapd-mirror.test")
	other := testKey(t, "tapd-mirror.test")
	b := fullBundle(t, k, testEvents(5), 0, nil)
	_, err := Verify(bytes.NewReader(b), other.VerifierKey(), nil)
	if !errors.Is(err, ErrSignature) {
		t.Fatalf("error = %v; want ErrSignature", err)
	}
	// The message says which key signed and which was trusted.
	for _, want := range []string{"not signed by the trusted key", other.VerifierKey()[:len("tapd-mirror.test")+9], k.VerifierKey()} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	}
	// A bundle re-signed by another key, naming that key, fails the same way.
	resigned := readTar(t, fullBundle(t, other, testEvents(5), 0, nil))
	_, err = Verify(bytes.NewReader(writeTar(t, resigned)), k.VerifierKey(), nil)
	if !errors.Is(err, ErrSignature) {
		t.Fatalf("re-signed bundle: %v", err)
	}
}

func TestVerifyEarlierCheckpoint(t *testing.T) {
	k := testKey(t, "tapd-mirror.test")
	evs := testEvents(30)
	b := fullBundle(t, k, evs, 0, nil)
	st, _ := testLog(t, evs)
	open := func(signed []byte) *Checkpoint {
		c, err := OpenCheckpoint(signed, k.VerifierKey())
		if err != nil {
			t.Fatal(err)
		}
		return &c
	}
	for _, size := range []int64{0, 1, 17, 30} {
		if _, err := Verify(bytes.NewReader(b), k.VerifierKey(), open(signAt(t, k, st, size))); err != nil {
			t.Fatalf("true prefix of size %d: %v", size, err)
		}
	}
	// A forked history: event 3 differs, signed at size 10 with the same key.
	forked := append([]Event(nil), evs...)
	r := *forked[3].Record
	r.Username = "mallory"
	forked[3] = RecordEvent(r)
	fst, _ := testLog(t, forked)
	_, err := Verify(bytes.NewReader(b), k.VerifierKey(), open(signAt(t, k, fst, 10)))
	if !errors.Is(err, ErrNotPrefix) || !strings.Contains(err.Error(), "first 10 events") {
		t.Fatalf("forked earlier checkpoint: %v", err)
	}
	// An earlier checkpoint larger than the bundle's.
	big, _ := testLog(t, testEvents(31))
	if _, err := Verify(bytes.NewReader(b), k.VerifierKey(), open(signAt(t, k, big, 31))); !errors.Is(err, ErrNotPrefix) {
		t.Fatalf("larger earlier checkpoint: %v", err)
	}
}

// filteredBundle writes the events at idx of evs with their proofs.
func filteredBundle(t *testing.T, k *Key, evs []Event, idx []int64) []byte {
	t.Helper()
	st, _ := testLog(t, evs)
	var buf bytes.Buffer
	w, err := NewBundleWriter(&buf, signAt(t, k, st, int64(len(evs))), k.VerifierKey(),
		BundleOptions{Filtered: true, Filter: "username=张三", Hashes: st})
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range idx {
		if err := w.Add(i, evs[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestFilteredBundle(t *testing.T) {
	k := testKey(t, "tapd-mirror.test")
	evs := testEvents(100)
	b := filteredBundle(t, k, evs, []int64{2, 5, 64, 99})
	sum, err := Verify(bytes.NewReader(b), k.VerifierKey(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !sum.Filtered || sum.Filter != "username=张三" || sum.Events != 4 || sum.Checkpoint.Size != 100 {
		t.Fatalf("summary %+v", sum)
	}

	// A wrong proof: one hash of event 64's proof replaced.
	badProof := editLines(t, b, func(l []string) []string {
		l[2] = regexp.MustCompile(`"proof":\["[^"]+"`).ReplaceAllString(l[2], `"proof":["`+tlog.RecordHash(nil).String()+`"`)
		return l
	})
	_, err = Verify(bytes.NewReader(badProof), k.VerifierKey(), nil)
	wantEventError(t, err, 64, ErrMismatch)

	// Altered content with an honest proof.
	altered := editLines(t, b, func(l []string) []string {
		l[1] = strings.Replace(l[1], `"action_type":"add"`, `"action_type":"delete"`, 1)
		return l
	})
	_, err = Verify(bytes.NewReader(altered), k.VerifierKey(), nil)
	wantEventError(t, err, 5, ErrMismatch)

	// An event claiming another place in the log.
	moved := editLines(t, b, func(l []string) []string {
		l[1] = indexField.ReplaceAllString(l[1], `{"index":6`)
		return l
	})
	_, err = Verify(bytes.NewReader(moved), k.VerifierKey(), nil)
	wantEventError(t, err, 6, ErrMismatch)

	// A filtered bundle cannot vouch for an earlier checkpoint.
	st, _ := testLog(t, evs)
	earlier, _ := OpenCheckpoint(signAt(t, k, st, 50), k.VerifierKey())
	if _, err := Verify(bytes.NewReader(b), k.VerifierKey(), &earlier); err == nil || !strings.Contains(err.Error(), "filtered") {
		t.Fatalf("filtered bundle with an earlier checkpoint: %v", err)
	}
}

func TestWithheldEvent(t *testing.T) {
	k := testKey(t, "tapd-mirror.test")
	evs := testEvents(20)
	b := fullBundle(t, k, evs, 0, map[int64]bool{3: true, 19: true})
	if strings.Contains(string(b), "batch_create_4\"") {
		t.Fatal("withheld content is in the bundle")
	}
	sum, err := Verify(bytes.NewReader(b), k.VerifierKey(), nil)
	if err != nil || sum.Withheld != 2 {
		t.Fatalf("withheld bundle: %v, %+v", err, sum)
	}
	// A withheld event whose leaf hash is wrong is caught like altered content.
	bad := editLines(t, b, func(l []string) []string {
		l[3] = regexp.MustCompile(`"leaf_hash":"[^"]+"`).ReplaceAllString(l[3], `"leaf_hash":"`+tlog.RecordHash(nil).String()+`"`)
		return l
	})
	_, err = Verify(bytes.NewReader(bad), k.VerifierKey(), nil)
	wantEventError(t, err, 3, ErrMismatch)
	// Content next to a leaf hash is ambiguous.
	both := editLines(t, b, func(l []string) []string {
		l[3] = strings.Replace(l[3], `"leaf_hash"`, `"token":"x","leaf_hash"`, 1)
		return l
	})
	_, err = Verify(bytes.NewReader(both), k.VerifierKey(), nil)
	wantEventError(t, err, 3, ErrMalformed)
}

func TestVerifyRejectsMalformedBundles(t *testing.T) {
	k := testKey(t, "tapd-mirror.test")
	b := fullBundle(t, k, testEvents(10), 0, nil)
	es := readTar(t, b)
	cases := map[string][]byte{
		"not a tar":       []byte("hello"),
		"missing header":  writeTar(t, es[1:]),
		"unknown format":  writeTar(t, append([]tarEntry{{"bundle.json", []byte(`{"format":"tapd-mirror-bundle/9","filtered":false}`)}}, es[1:]...)),
		"stray entry":     writeTar(t, append(append([]tarEntry(nil), es...), tarEntry{"notes.txt", []byte("hi")})),
		"unknown field":   editLines(t, b, func(l []string) []string { l[2] = strings.Replace(l[2], `{"index"`, `{"x":1,"index"`, 1); return l }),
		"no last newline": editLines(t, b, func(l []string) []string { l[9] = strings.TrimSuffix(l[9], "\n"); return l }),
	}
	for name, data := range cases {
		if _, err := Verify(bytes.NewReader(data), k.VerifierKey(), nil); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: error = %v; want ErrMalformed", name, err)
		}
	}
}

func TestBundleWriterRefusesWhatWouldNotVerify(t *testing.T) {
	k := testKey(t, "tapd-mirror.test")
	evs := testEvents(10)
	st, _ := testLog(t, evs)
	cp := signAt(t, k, st, 10)
	start := func(opts BundleOptions) *BundleWriter {
		opts.Hashes = st
		w, err := NewBundleWriter(&bytes.Buffer{}, cp, k.VerifierKey(), opts)
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	// An event that is not the one the log holds at that index.
	w := start(BundleOptions{})
	if err := w.Add(0, evs[1]); err != nil {
		t.Fatal(err) // checked when the batch is written
	}
	if err := w.Close(); err == nil || !strings.Contains(err.Error(), "not the one the log stores") {
		t.Fatalf("wrong event: %v", err)
	}
	// Out of order, and closed early.
	w = start(BundleOptions{})
	if err := w.Add(1, evs[1]); err == nil {
		t.Fatal("full bundle accepted event 1 first")
	}
	w = start(BundleOptions{})
	w.Add(0, evs[0])
	if err := w.Close(); err == nil || !strings.Contains(err.Error(), "after 1 of the checkpoint's 10") {
		t.Fatalf("early close: %v", err)
	}
	w = start(BundleOptions{Filtered: true})
	w.Add(5, evs[5])
	if err := w.Add(5, evs[5]); err == nil {
		t.Fatal("filtered bundle accepted a repeated index")
	}
	// Beyond the checkpoint.
	w = start(BundleOptions{Filtered: true})
	if err := w.Add(10, evs[0]); err == nil {
		t.Fatal("accepted an event beyond the checkpoint")
	}
	// A checkpoint that does not verify with the key.
	if _, err := NewBundleWriter(&bytes.Buffer{}, cp, testKey(t, "tapd-mirror.test").VerifierKey(), BundleOptions{Hashes: st}); !errors.Is(err, ErrSignature) {
		t.Fatalf("foreign key: %v", err)
	}
}

func TestBundleWriterCopiesEvents(t *testing.T) {
	k := testKey(t, "tapd-mirror.test")
	evs := testEvents(3)
	st, _ := testLog(t, evs)
	var buf bytes.Buffer
	w, err := NewBundleWriter(&buf, signAt(t, k, st, 3), k.VerifierKey(), BundleOptions{Hashes: st})
	if err != nil {
		t.Fatal(err)
	}
	// A caller that reuses its records (say, scanning rows into one).
	for i, e := range evs {
		if err := w.Add(int64(i), e); err != nil {
			t.Fatal(err)
		}
		e.Record.Username, e.Record.Extra["ip"] = "overwritten", "overwritten"
	}
	if err := w.Close(); err != nil {
		t.Fatalf("events changed after Add leaked into the bundle: %v", err)
	}
	if _, err := Verify(&buf, k.VerifierKey(), nil); err != nil {
		t.Fatal(err)
	}
}

func TestBundleReaderStreamsHeaderAndEvents(t *testing.T) {
	k := testKey(t, "tapd-mirror.test")
	evs := testEvents(12)
	r, err := OpenBundle(bytes.NewReader(fullBundle(t, k, evs, 600, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if r.Key != k.VerifierKey() || r.Filtered || !bytes.HasPrefix(r.Checkpoint, []byte("tapd-mirror.test\n12\n")) {
		t.Fatalf("header: key %q filtered %v checkpoint %q", r.Key, r.Filtered, r.Checkpoint)
	}
	for i := range evs {
		e, err := r.Next()
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		a, _ := EncodeEvent(e.Event)
		b, _ := EncodeEvent(evs[i])
		if e.Index != int64(i) || !bytes.Equal(a, b) {
			t.Fatalf("event %d read back as %d %+v", i, e.Index, e.Event)
		}
	}
	if _, err := r.Next(); err == nil {
		t.Fatal("no end after the last event")
	}
}
