package integrity

import (
	"errors"
	"fmt"
	"math/bits"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
)

func leaves(n int) []tlog.Hash {
	out := make([]tlog.Hash, n)
	for i := range out {
		out[i] = LeafHash([]byte(fmt.Sprint("leaf ", i)))
	}
	return out
}

// reference stores leaves one at a time the way tlog documents it.
func reference(t *testing.T, ls []tlog.Hash) *MemoryStore {
	t.Helper()
	st := &MemoryStore{}
	for i, l := range ls {
		hs, err := tlog.StoredHashesForRecordHash(int64(i), l, st)
		if err != nil {
			t.Fatal(err)
		}
		var sh []StoredHash
		for j, h := range hs {
			sh = append(sh, StoredHash{tlog.StoredHashIndex(0, int64(i)) + int64(j), h})
		}
		if err := st.WriteHashes(sh); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

// countingReader counts ReadHashes calls and the hashes asked for.
type countingReader struct {
	r            tlog.HashReader
	calls, asked int
}

func (c *countingReader) ReadHashes(x []int64) ([]tlog.Hash, error) {
	c.calls++
	c.asked += len(x)
	return c.r.ReadHashes(x)
}

func TestAppendBatchesMatchOneAtATime(t *testing.T) {
	ls := leaves(300)
	ref := reference(t, ls)
	for _, batch := range []int{1, 2, 3, 7, 64, 100, 300} {
		st := &MemoryStore{}
		for size := 0; size < len(ls); size += batch {
			end := min(size+batch, len(ls))
			cr := &countingReader{r: st}
			a, err := Append(int64(size), ls[size:end], cr)
			if err != nil {
				t.Fatal(err)
			}
			// One read of the right edge, never more than 1+log2 n hashes.
			if size > 0 && (cr.calls != 1 || cr.asked > 1+bits.Len(uint(size))) {
				t.Fatalf("batch %d at %d: %d calls for %d hashes", batch, size, cr.calls, cr.asked)
			}
			want, _ := tlog.TreeHash(int64(end), ref)
			if a.Size != int64(end) || a.Root != want {
				t.Fatalf("batch %d at %d: size %d root %v, want %d %v", batch, size, a.Size, a.Root, end, want)
			}
			if err := st.WriteHashes(a.Hashes); err != nil {
				t.Fatalf("batch %d at %d: %v", batch, size, err)
			}
		}
		if len(st.hashes) != len(ref.hashes) || int64(len(st.hashes)) != tlog.StoredHashCount(int64(len(ls))) {
			t.Fatalf("batch %d: %d hashes stored, want %d", batch, len(st.hashes), len(ref.hashes))
		}
		for i := range ref.hashes {
			if st.hashes[i] != ref.hashes[i] {
				t.Fatalf("batch %d: stored hash %d differs", batch, i)
			}
		}
	}
}

func TestFrontierHoldsOnlyTheRightEdge(t *testing.T) {
	ls := leaves(200)
	ref := reference(t, ls)
	f := &Frontier{}
	for i, l := range ls {
		if _, err := f.Append(l); err != nil {
			t.Fatal(err)
		}
		n := int64(i + 1)
		if len(f.hash) != bits.OnesCount64(uint64(n)) {
			t.Fatalf("size %d: frontier holds %d hashes", n, len(f.hash))
		}
		root, err := f.Root()
		want, _ := tlog.TreeHash(n, ref)
		if err != nil || root != want {
			t.Fatalf("size %d: root %v %v", n, root, err)
		}
		// Resuming from storage gives the same edge.
		g, err := NewFrontier(n, ref)
		if err != nil || fmt.Sprint(g.index, g.hash) != fmt.Sprint(f.index, f.hash) {
			t.Fatalf("size %d: resumed frontier differs (%v)", n, err)
		}
	}
	if _, err := f.ReadHashes([]int64{0}); err == nil {
		t.Fatal("frontier served a hash that is not on the edge")
	}
}

func TestAppendReportsReadFailures(t *testing.T) {
	boom := tlog.HashReaderFunc(func([]int64) ([]tlog.Hash, error) { return nil, errors.New("connection reset") })
	_, err := Append(5, leaves(1), boom)
	if err == nil || !strings.Contains(err.Error(), "connection reset") || !strings.Contains(err.Error(), "size 5") {
		t.Fatalf("error = %v", err)
	}
	short := tlog.HashReaderFunc(func([]int64) ([]tlog.Hash, error) { return nil, nil })
	if _, err := Append(5, leaves(1), short); err == nil {
		t.Fatal("a reader returning too few hashes went unnoticed")
	}
	if _, err := Append(-1, leaves(1), &MemoryStore{}); err == nil {
		t.Fatal("negative size accepted")
	}
	if _, err := AppendTo(&MemoryStore{}, 3, leaves(1)); err == nil {
		t.Fatal("appending at a size the store does not have went unnoticed")
	}
}

func TestMemoryStoreWritesInOrder(t *testing.T) {
	st := &MemoryStore{}
	if err := st.WriteHashes([]StoredHash{{Index: 1}}); err == nil {
		t.Fatal("gap accepted")
	}
	if _, err := st.ReadHashes([]int64{0}); err == nil {
		t.Fatal("read past the end")
	}
}

func TestProofs(t *testing.T) {
	ls := leaves(40)
	st := &MemoryStore{}
	if _, err := AppendTo(st, 0, ls); err != nil {
		t.Fatal(err)
	}
	for size := int64(1); size <= 40; size++ {
		root, _ := TreeHash(size, st)
		for i := int64(0); i < size; i++ {
			p, err := InclusionProof(size, i, st)
			if err != nil {
				t.Fatal(err)
			}
			if len(p) > bits.Len64(uint64(size)) {
				t.Fatalf("proof of %d in %d has %d hashes", i, size, len(p))
			}
			if err := CheckInclusion(p, size, root, i, ls[i]); err != nil {
				t.Fatalf("proof of %d in %d: %v", i, size, err)
			}
			if err := CheckInclusion(p, size, root, i, ls[(i+1)%40]); size > 1 && err == nil {
				t.Fatalf("proof of %d in %d accepts another leaf", i, size)
			}
		}
		for earlier := int64(0); earlier <= size; earlier++ {
			eroot, _ := TreeHash(earlier, st)
			p, err := ConsistencyProof(size, earlier, st)
			if err != nil {
				t.Fatal(err)
			}
			if err := CheckConsistency(p, size, root, earlier, eroot); err != nil {
				t.Fatalf("%d extends %d: %v", size, earlier, err)
			}
			if earlier > 0 && earlier < size {
				if err := CheckConsistency(p, size, root, earlier, tlog.Hash{0xff}); err == nil {
					t.Fatalf("%d extends %d with a wrong earlier root", size, earlier)
				}
			}
		}
	}
	if _, err := InclusionProof(3, 3, st); err == nil || !strings.Contains(err.Error(), "event 3") {
		t.Fatalf("proof beyond the tree: %v", err)
	}
	if err := CheckConsistency(nil, 3, tlog.Hash{}, 0, tlog.Hash{1}); err == nil {
		t.Fatal("a non-empty root accepted for the empty tree")
	}
}
