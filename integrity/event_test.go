package integrity

import (
	"bytes"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"
)

// vectorRecord is the record of the test vectors in SPEC.md.
func vectorRecord() Record {
	return Record{
		ID: 1, Platform: "tapd", Serial: "10074561", ActionType: "add", ActionDetail: "迭代: v1",
		Username: "alice", Timestamp: time.Unix(1707725000, 0), Source: "tapd", SourceID: "1100000001",
		WorkspaceID: "10074561", Extra: map[string]string{"title": "v1", "ip": "10.0.0.1"},
		IngestedAt: time.Unix(1707725060, 0),
	}
}

// vectorEvents are the events of SPEC.md's test vectors, one per kind.
func vectorEvents() []Event {
	v2 := vectorRecord()
	v2.ActionDetail = "迭代: v2"
	v2.IngestedAt = v2.IngestedAt.Add(time.Hour)
	at := time.Unix(1707800000, 0)
	h := Hold{ID: 1, Name: "case-1", Reason: "litigation", Filter: `{"username":"alice"}`}
	return []Event{
		RecordEvent(vectorRecord()),
		UpdateEvent(0, v2),
		DeleteEvent(1, 1, "admin", at),
		PurgeEvent(2, 3, "older-than-5y", at),
		HoldEvent(h, "compliance", at),
		ReleaseEvent(Hold{ID: 1, Name: "case-1", Reason: "settled", Filter: h.Filter}, "compliance", at),
		AccessEvent(Access{ID: 7, Principal: "auditor-1", SourceIP: "10.0.0.9", Action: "export",
			Params: map[string]string{"format": "csv", "username": "alice"}, Rows: 42, Outcome: "ok"}, at),
	}
}

// The encoding is a published format: these bytes must never change, and
// SPEC.md must show the same vectors.
var vectors = []struct{ encoding, leaf string }{
	{"00000014746170642d6d6972726f722f6576656e742f7631000000067265636f726400000000000000010000000474617064000000083130303734353631000000036164640000000ae8bfade4bba33a20763100000005616c6963650000000065c9d0c800000004746170640000000a31313030303030303031000000083130303734353631000000020000000269700000000831302e302e302e31000000057469746c650000000276310000000065c9d104",
		"528a97942fc1e45228821a1aa58c99a35f742feaee5c0e923ad73ff4682d9063"},
	{"00000014746170642d6d6972726f722f6576656e742f763100000006757064617465000000000000000000000000000000010000000474617064000000083130303734353631000000036164640000000ae8bfade4bba33a20763200000005616c6963650000000065c9d0c800000004746170640000000a31313030303030303031000000083130303734353631000000020000000269700000000831302e302e302e31000000057469746c650000000276310000000065c9df14",
		"edf8982eb66a04e5f40ec3316b95c6c7253d91e787a73d82bc4d5901b75de4e7"},
	{"00000014746170642d6d6972726f722f6576656e742f76310000000664656c657465000000000000000100000000000000010000000561646d696e0000000065caf5c0",
		"9e7d99a2250a3c634b9cb839103a03cdc17a4ea4f67435ef65b4168a6e985384"},
	{"00000014746170642d6d6972726f722f6576656e742f7631000000057075726765000000000000000200000000000000030000000d6f6c6465722d7468616e2d35790000000065caf5c0",
		"b690c587c2300b12bdb8e075f62289a0720b516a97404dd3f0372e01b56962d0"},
	{"00000014746170642d6d6972726f722f6576656e742f763100000004686f6c64000000000000000100000006636173652d310000000a6c697469676174696f6e000000147b22757365726e616d65223a22616c696365227d0000000a636f6d706c69616e63650000000065caf5c0",
		"47f551c4f94da25f1ec5d6e021731a1a452505971b4b122b3abfc6543b10eac6"},
	{"00000014746170642d6d6972726f722f6576656e742f76310000000772656c65617365000000000000000100000006636173652d3100000007736574746c6564000000147b22757365726e616d65223a22616c696365227d0000000a636f6d706c69616e63650000000065caf5c0",
		"4233d0f3bbee9621f12e4ae45166f368b754e5755f5c5515eb1163bb6818fea4"},
	{"00000014746170642d6d6972726f722f6576656e742f76310000000661636365737300000000000000070000000961756469746f722d310000000831302e302e302e3900000000000000066578706f72740000000200000006666f726d61740000000363737600000008757365726e616d6500000005616c696365000000000000002a000000026f6b0000000065caf5c0",
		"a5647b9e2a7e845494155314590425cc19b06846bc1da547ebc64a2f2163e1f5"},
}

func TestEncodingVectors(t *testing.T) {
	spec, err := os.ReadFile("SPEC.md")
	if err != nil {
		t.Fatal(err)
	}
	evs := vectorEvents()
	if len(vectors) != len(evs) {
		t.Fatalf("%d vectors for %d events", len(vectors), len(evs))
	}
	for i, e := range evs {
		enc, err := EncodeEvent(e)
		if err != nil {
			t.Fatalf("%s: %v", e.Kind, err)
		}
		leaf := LeafHash(enc)
		if got := hex.EncodeToString(enc); got != vectors[i].encoding {
			t.Errorf("%s encodes as\n%s\nwant\n%s", e.Kind, got, vectors[i].encoding)
		}
		if got := hex.EncodeToString(leaf[:]); got != vectors[i].leaf {
			t.Errorf("%s leaf hash %s, want %s", e.Kind, got, vectors[i].leaf)
		}
		for _, v := range []string{vectors[i].encoding, vectors[i].leaf} {
			if !strings.Contains(strings.Join(strings.Fields(string(spec)), ""), v) {
				t.Errorf("SPEC.md lacks the %s vector %s", e.Kind, v)
			}
		}
	}
}

func TestEncodingCoversEveryField(t *testing.T) {
	base, _ := EncodeEvent(RecordEvent(vectorRecord()))
	muts := map[string]func(r *Record){
		"id":            func(r *Record) { r.ID = 2 },
		"platform":      func(r *Record) { r.Platform = "tiktok" },
		"serial":        func(r *Record) { r.Serial = "x" },
		"action_type":   func(r *Record) { r.ActionType = "delete" },
		"action_detail": func(r *Record) { r.ActionDetail = "迭代: v9" },
		"username":      func(r *Record) { r.Username = "bob" },
		"timestamp":     func(r *Record) { r.Timestamp = r.Timestamp.Add(time.Second) },
		"source":        func(r *Record) { r.Source = "local" },
		"source_id":     func(r *Record) { r.SourceID = "" },
		"workspace_id":  func(r *Record) { r.WorkspaceID = "1" },
		"extra value":   func(r *Record) { r.Extra["ip"] = "10.0.0.2" },
		"extra key":     func(r *Record) { r.Extra["ua"] = "" },
		"ingested_at":   func(r *Record) { r.IngestedAt = r.IngestedAt.Add(time.Second) },
		// Length prefixes keep field boundaries: moving a byte across changes the encoding.
		"boundary": func(r *Record) { r.Platform, r.Serial = "tapd1", "0074561" },
	}
	for name, mut := range muts {
		r := vectorRecord()
		mut(&r)
		enc, err := EncodeEvent(RecordEvent(r))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if bytes.Equal(enc, base) {
			t.Errorf("changing %s does not change the encoding", name)
		}
	}
	// Every non-record field of every kind matters too.
	at := time.Unix(1707800000, 0)
	pairs := map[string][2]Event{
		"update prev":   {UpdateEvent(0, vectorRecord()), UpdateEvent(1, vectorRecord())},
		"delete id":     {DeleteEvent(1, 1, "a", at), DeleteEvent(2, 1, "a", at)},
		"delete prev":   {DeleteEvent(1, 1, "a", at), DeleteEvent(1, 2, "a", at)},
		"delete token":  {DeleteEvent(1, 1, "a", at), DeleteEvent(1, 1, "b", at)},
		"delete time":   {DeleteEvent(1, 1, "a", at), DeleteEvent(1, 1, "a", at.Add(time.Second))},
		"purge policy":  {PurgeEvent(1, 1, "a", at), PurgeEvent(1, 1, "b", at)},
		"delete/purge":  {DeleteEvent(1, 1, "a", at), PurgeEvent(1, 1, "a", at)},
		"record/update": {RecordEvent(vectorRecord()), UpdateEvent(0, vectorRecord())},
		"hold/release":  {HoldEvent(Hold{ID: 1}, "a", at), ReleaseEvent(Hold{ID: 1}, "a", at)},
		"hold id":       {HoldEvent(Hold{ID: 1}, "a", at), HoldEvent(Hold{ID: 2}, "a", at)},
		"hold name":     {HoldEvent(Hold{ID: 1, Name: "x"}, "a", at), HoldEvent(Hold{ID: 1}, "a", at)},
		"hold reason":   {HoldEvent(Hold{ID: 1, Reason: "x"}, "a", at), HoldEvent(Hold{ID: 1}, "a", at)},
		"hold filter":   {HoldEvent(Hold{ID: 1, Filter: "x"}, "a", at), HoldEvent(Hold{ID: 1}, "a", at)},
		"hold token":    {HoldEvent(Hold{ID: 1}, "a", at), HoldEvent(Hold{ID: 1}, "b", at)},
	}
	for name, p := range pairs {
		a, err1 := EncodeEvent(p[0])
		b, err2 := EncodeEvent(p[1])
		if err1 != nil || err2 != nil {
			t.Fatalf("%s: %v %v", name, err1, err2)
		}
		if bytes.Equal(a, b) {
			t.Errorf("%s: both encode the same", name)
		}
	}
}

func TestEncodingIsCanonical(t *testing.T) {
	a := vectorRecord()
	b := vectorRecord()
	// Map insertion order, zone and sub-second precision do not matter;
	// nil and empty extra are the same.
	b.Extra = map[string]string{}
	b.Extra["ip"], b.Extra["title"] = "10.0.0.1", "v1"
	b.Timestamp = b.Timestamp.In(time.FixedZone("CST", 8*3600)).Add(999 * time.Millisecond)
	ea, _ := EncodeEvent(RecordEvent(a))
	eb, _ := EncodeEvent(RecordEvent(b))
	if !bytes.Equal(ea, eb) {
		t.Fatal("equal records encode differently")
	}
	a.Extra, b.Extra = nil, map[string]string{}
	ea, _ = EncodeEvent(RecordEvent(a))
	eb, _ = EncodeEvent(RecordEvent(b))
	if !bytes.Equal(ea, eb) {
		t.Fatal("nil and empty extra encode differently")
	}
}

func TestEncodeEventRejects(t *testing.T) {
	at := time.Unix(1707800000, 0)
	bad := func(mut func(r *Record)) Event {
		r := vectorRecord()
		mut(&r)
		return RecordEvent(r)
	}
	cases := map[string]struct {
		e    Event
		want string
	}{
		"unknown kind":      {Event{Kind: "rename"}, "unknown event kind"},
		"invalid UTF-8":     {bad(func(r *Record) { r.Username = "a\xffb" }), "not valid UTF-8"},
		"invalid UTF-8 key": {bad(func(r *Record) { r.Extra["\xfe"] = "" }), "not valid UTF-8"},
		"zero id":           {bad(func(r *Record) { r.ID = 0 }), "not a record id"},
		"no timestamp":      {bad(func(r *Record) { r.Timestamp = time.Time{} }), "timestamp is not set"},
		"no ingested_at":    {bad(func(r *Record) { r.IngestedAt = time.Time{} }), "ingested_at is not set"},
		"record without":    {Event{Kind: KindRecord}, "record is missing"},
		"stray prev":        {Event{Kind: KindRecord, Record: &Record{}, Prev: 3}, "prev does not belong"},
		"stray time":        {func() Event { e := RecordEvent(vectorRecord()); e.Time = at; return e }(), "time does not belong"},
		"stray token":       {PurgeEvent(1, 1, "p", at).with(func(e *Event) { e.Token = "admin" }), "token does not belong"},
		"stray policy":      {DeleteEvent(1, 1, "a", at).with(func(e *Event) { e.Policy = "p" }), "policy does not belong"},
		"stray record":      {DeleteEvent(1, 1, "a", at).with(func(e *Event) { e.Record = &Record{} }), "record does not belong"},
		"stray hold":        {DeleteEvent(1, 1, "a", at).with(func(e *Event) { e.Hold = &Hold{} }), "hold does not belong"},
		"stray record_id":   {HoldEvent(Hold{ID: 1}, "a", at).with(func(e *Event) { e.RecordID = 1 }), "record_id does not belong"},
		"negative prev":     {DeleteEvent(1, -1, "a", at), "not an event index"},
		"zero record_id":    {DeleteEvent(0, 1, "a", at), "not a record id"},
		"no time":           {DeleteEvent(1, 1, "a", time.Time{}), "time is not set"},
		"zero hold id":      {HoldEvent(Hold{}, "a", at), "not a hold id"},
		"invalid in hold":   {HoldEvent(Hold{ID: 1, Reason: "\xc3"}, "a", at), "not valid UTF-8"},
	}
	for name, c := range cases {
		if _, err := EncodeEvent(c.e); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error = %v; want %q", name, err, c.want)
		}
	}
}

func (e Event) with(f func(*Event)) Event {
	f(&e)
	return e
}

func TestSubjectAndWhen(t *testing.T) {
	evs := vectorEvents()
	wantSubject := []int64{1, 1, 1, 2, 0, 0, 0}
	wantWhen := []int64{1707725060, 1707728660, 1707800000, 1707800000, 1707800000, 1707800000, 1707800000}
	for i, e := range evs {
		if e.Subject() != wantSubject[i] || e.When().Unix() != wantWhen[i] {
			t.Errorf("%s: subject %d when %v", e.Kind, e.Subject(), e.When())
		}
	}
}

func TestDecodeEventRoundTrip(t *testing.T) {
	for i, e := range append(vectorEvents(), testEvents(60)...) {
		enc, err := EncodeEvent(e)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeEvent(enc)
		if err != nil {
			t.Fatalf("event %d (%s): %v", i, e.Kind, err)
		}
		again, _ := EncodeEvent(got)
		if !bytes.Equal(again, enc) || got.Kind != e.Kind || got.Subject() != e.Subject() || !got.When().Equal(e.When()) {
			t.Fatalf("event %d (%s) decoded as %+v", i, e.Kind, got)
		}
	}
}

func TestDecodeEventRejectsNonCanonical(t *testing.T) {
	enc, _ := EncodeEvent(RecordEvent(vectorRecord()))
	// The extra entries are ip then title; swapping them breaks the order.
	ip := []byte("\x00\x00\x00\x02ip\x00\x00\x00\x0810.0.0.1")
	title := []byte("\x00\x00\x00\x05title\x00\x00\x00\x02v1")
	swapped := bytes.Replace(enc, append(append([]byte{}, ip...), title...), append(append([]byte{}, title...), ip...), 1)
	dup := bytes.Replace(enc, append(append([]byte{}, ip...), title...), append(append([]byte{}, ip...), ip...), 1)
	if bytes.Equal(swapped, enc) || bytes.Equal(dup, enc) {
		t.Fatal("test edits changed nothing")
	}
	other := bytes.Replace(enc, []byte("event/v1"), []byte("event/v2"), 1)
	cases := map[string][]byte{
		"empty":          nil,
		"truncated":      enc[:len(enc)-3],
		"trailing bytes": append(append([]byte{}, enc...), 0),
		"unsorted extra": swapped,
		"repeated key":   dup,
		"other version":  other,
		"unknown kind":   bytes.Replace(enc, []byte("\x00\x00\x00\x06record"), []byte("\x00\x00\x00\x06rename"), 1),
		"huge length":    append(append([]byte{}, enc[:24]...), 0xff, 0xff, 0xff, 0xff),
	}
	for name, b := range cases {
		if _, err := DecodeEvent(b); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

// TestAppendLeafIsEncodeEventAndLeafHash: the allocation-free path ingest
// uses gives the same bytes and leaf as the reference one, also after the
// buffer has held a longer event.
func TestAppendLeafIsEncodeEventAndLeafHash(t *testing.T) {
	long := RecordEvent(Record{ID: 1, Platform: "tapd", ActionDetail: strings.Repeat("长", 300), Timestamp: time.Unix(1767225600, 0),
		Source: "tapd", SourceID: "1", Extra: map[string]string{"ip": "1.1.1.1"}, IngestedAt: time.Unix(1767225601, 0)})
	short := DeleteEvent(7, 3, "ops", time.Unix(1767225602, 0))
	var scratch []byte
	for _, e := range []Event{long, short, long} {
		want, err := EncodeEvent(e)
		if err != nil {
			t.Fatal(err)
		}
		var got []byte
		var leaf tlog.Hash
		scratch, got, leaf, err = AppendLeaf(scratch[:0], e)
		if err != nil || !bytes.Equal(got, want) || leaf != LeafHash(want) {
			t.Fatalf("AppendLeaf(%s) = %x, %s, %v; want %x, %s", e.Kind, got, leaf, err, want, LeafHash(want))
		}
	}
	if _, _, _, err := AppendLeaf(nil, Event{Kind: KindRecord}); err == nil {
		t.Fatal("AppendLeaf encoded an event without its record")
	}
}
