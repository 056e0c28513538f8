package integrity

import (
	"errors"
	"fmt"
	"slices"
	"sync"

	"golang.org/x/mod/sumdb/tlog"
)

// StoredHash is one hash of the tree at its storage index, in the dense
// order of tlog.StoredHashIndex: one row of the hash table.
type StoredHash struct {
	Index int64
	Hash  tlog.Hash
}

// HashStore is storage for the tree's hashes: what was appended can be read
// back by index. Storage implements it over its hash table, inside the
// transaction that appends.
type HashStore interface {
	tlog.HashReader
	// WriteHashes stores hashes that continue the stored sequence: the first
	// one's index is the number of hashes stored so far.
	WriteHashes(hashes []StoredHash) error
}

// MemoryStore is a HashStore in memory, for tests and for building bundles
// from events at hand. It is safe for concurrent use.
type MemoryStore struct {
	mu     sync.RWMutex
	hashes []tlog.Hash
}

// ReadHashes implements tlog.HashReader.
func (m *MemoryStore) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x < 0 || x >= int64(len(m.hashes)) {
			return nil, fmt.Errorf("reading hash %d: only %d stored", x, len(m.hashes))
		}
		out[i] = m.hashes[x]
	}
	return out, nil
}

// WriteHashes implements HashStore.
func (m *MemoryStore) WriteHashes(hashes []StoredHash) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, h := range hashes {
		if h.Index != int64(len(m.hashes)) {
			return fmt.Errorf("writing hash %d: the next index is %d", h.Index, len(m.hashes))
		}
		m.hashes = append(m.hashes, h.Hash)
	}
	return nil
}

// Appended is the outcome of an Append.
type Appended struct {
	Hashes []StoredHash // the new hashes to store, in index order
	Size   int64        // the tree size after the append
	Root   tlog.Hash    // the tree hash at that size
}

// Append computes what appending leaves (leaf hashes, see LeafHash) to the
// tree of the given size adds to its hash storage, and the new root. It
// makes one ReadHashes call on r, for at most 1+log2(size) hashes, and
// writes nothing: the caller stores Hashes in the same transaction as the
// events, so a whole batch of changes costs one read and one insert.
func Append(size int64, leaves []tlog.Hash, r tlog.HashReader) (Appended, error) {
	f, err := NewFrontier(size, r)
	if err != nil {
		return Appended{}, err
	}
	out := Appended{Hashes: make([]StoredHash, 0, 2*len(leaves)+1)}
	for _, leaf := range leaves {
		base, hs, err := f.add(leaf)
		if err != nil {
			return Appended{}, err
		}
		for i, h := range hs {
			out.Hashes = append(out.Hashes, StoredHash{Index: base + int64(i), Hash: h})
		}
	}
	out.Size = f.Size()
	if out.Root, err = f.Root(); err != nil {
		return Appended{}, err
	}
	return out, nil
}

// AppendTo appends leaves to the tree of the given size kept in s and
// returns the new root: Append followed by WriteHashes.
func AppendTo(s HashStore, size int64, leaves []tlog.Hash) (tlog.Hash, error) {
	a, err := Append(size, leaves, s)
	if err != nil {
		return tlog.Hash{}, err
	}
	if err := s.WriteHashes(a.Hashes); err != nil {
		return tlog.Hash{}, fmt.Errorf("storing the hashes of %d new leaves: %w", len(leaves), err)
	}
	return a.Root, nil
}

// Frontier is the right edge of a tree: the hashes of its complete subtrees
// (the largest power-of-two prefix, then the largest of the rest, …), at most
// 1+log2(size) of them. That is all it takes to append leaves and compute the
// root, so a tree of any size is grown or recomputed in O(log n) memory. It
// is a tlog.HashReader that holds only those hashes.
type Frontier struct {
	size  int64
	index []int64 // storage indexes of the complete subtrees, left to right
	hash  []tlog.Hash
}

// NewFrontier reads the right edge of the tree of the given size from r.
func NewFrontier(size int64, r tlog.HashReader) (*Frontier, error) {
	if size < 0 {
		return nil, fmt.Errorf("tree size %d is negative", size)
	}
	f := &Frontier{size: size}
	if size == 0 {
		return f, nil
	}
	// tlog.TreeHash reads exactly the complete subtrees' hashes, left to
	// right: keep what it read.
	_, err := tlog.TreeHash(size, tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		hs, err := r.ReadHashes(indexes)
		if err == nil && len(hs) == len(indexes) {
			f.index, f.hash = slices.Clone(indexes), slices.Clone(hs)
		}
		return hs, err
	}))
	if err != nil {
		return nil, fmt.Errorf("reading the right edge of the tree of size %d: %w", size, err)
	}
	return f, nil
}

// Size is the number of leaves.
func (f *Frontier) Size() int64 { return f.size }

// Root is the tree hash (RFC 6962 MTH) of the leaves so far.
func (f *Frontier) Root() (tlog.Hash, error) {
	h, err := tlog.TreeHash(f.size, f)
	if err != nil {
		return tlog.Hash{}, fmt.Errorf("computing the tree hash at size %d: %w", f.size, err)
	}
	return h, nil
}

// Append adds a leaf hash and returns the hashes the tree stores for it.
func (f *Frontier) Append(leaf tlog.Hash) ([]StoredHash, error) {
	base, hs, err := f.add(leaf)
	if err != nil {
		return nil, err
	}
	out := make([]StoredHash, len(hs))
	for i, h := range hs {
		out[i] = StoredHash{Index: base + int64(i), Hash: h}
	}
	return out, nil
}

// add appends leaf; the stored hashes start at index base.
func (f *Frontier) add(leaf tlog.Hash) (base int64, hs []tlog.Hash, err error) {
	hs, err = tlog.StoredHashesForRecordHash(f.size, leaf, f)
	if err != nil {
		return 0, nil, fmt.Errorf("appending leaf %d: %w", f.size, err)
	}
	// The leaf completed len(hs)-1 subtrees, each consuming the smallest
	// remaining one on the edge; the largest completed is now on the edge.
	done := len(hs) - 1
	base = tlog.StoredHashIndex(0, f.size)
	f.index = append(f.index[:len(f.index)-done], base+int64(done))
	f.hash = append(f.hash[:len(f.hash)-done], hs[done])
	f.size++
	return base, hs, nil
}

// ReadHashes implements tlog.HashReader for the hashes on the edge.
func (f *Frontier) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		j := slices.Index(f.index, x)
		if j < 0 {
			return nil, fmt.Errorf("hash %d is not on the right edge of the tree of size %d", x, f.size)
		}
		out[i] = f.hash[j]
	}
	return out, nil
}

// TreeHash is the tree hash at size, over the hashes in r.
func TreeHash(size int64, r tlog.HashReader) (tlog.Hash, error) {
	h, err := tlog.TreeHash(size, r)
	if err != nil {
		return tlog.Hash{}, fmt.Errorf("computing the tree hash at size %d: %w", size, err)
	}
	return h, nil
}

// InclusionProof proves that the tree of the given size holds event index
// (an RFC 6962 audit path, at most log2(size)+1 hashes).
func InclusionProof(size, index int64, r tlog.HashReader) (tlog.RecordProof, error) {
	p, err := tlog.ProveRecord(size, index, r)
	if err != nil {
		return nil, fmt.Errorf("proving event %d in the tree of size %d: %w", index, size, err)
	}
	return p, nil
}

// CheckInclusion checks that p proves that the tree of the given size and
// root holds leaf at index.
func CheckInclusion(p tlog.RecordProof, size int64, root tlog.Hash, index int64, leaf tlog.Hash) error {
	if err := tlog.CheckRecord(p, size, root, index, leaf); err != nil {
		return fmt.Errorf("checking the proof of event %d in the tree of size %d: %w", index, size, err)
	}
	return nil
}

// ConsistencyProof proves that the tree of the given size extends the tree
// of the earlier size (an RFC 6962 consistency proof). Every tree extends
// the empty one, with an empty proof.
func ConsistencyProof(size, earlier int64, r tlog.HashReader) (tlog.TreeProof, error) {
	if earlier == 0 && size >= 0 {
		return tlog.TreeProof{}, nil
	}
	p, err := tlog.ProveTree(size, earlier, r)
	if err != nil {
		return nil, fmt.Errorf("proving that the tree of size %d extends size %d: %w", size, earlier, err)
	}
	return p, nil
}

// CheckConsistency checks that p proves that the tree (size, root) extends
// the tree (earlier, earlierRoot).
func CheckConsistency(p tlog.TreeProof, size int64, root tlog.Hash, earlier int64, earlierRoot tlog.Hash) error {
	if earlier == 0 {
		empty, _ := tlog.TreeHash(0, nil)
		if len(p) != 0 || earlierRoot != empty || size < 0 {
			return errors.New("checking consistency with the empty tree: bad proof or root")
		}
		return nil
	}
	if err := tlog.CheckTree(p, size, root, earlier, earlierRoot); err != nil {
		return fmt.Errorf("checking that the tree of size %d extends size %d: %w", size, earlier, err)
	}
	return nil
}
