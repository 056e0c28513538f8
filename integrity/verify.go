package integrity

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/tlog"
)

// Reasons a verification fails, besides ErrMalformed and ErrSignature.
var (
	// ErrMismatch: an event (or its proof) does not match the signed log.
	ErrMismatch = errors.New("event does not match the signed log")
	// ErrTruncated: a full bundle ends before the checkpoint's last event.
	ErrTruncated = errors.New("bundle is missing events")
	// ErrNotPrefix: the earlier checkpoint is not a prefix of the bundle's
	// log: the log was rewritten (or forked) since it was signed.
	ErrNotPrefix = errors.New("earlier checkpoint is not a prefix of the log")
)

// EventError names the first bad event of a bundle.
type EventError struct {
	Index  int64 // the event's index in the log
	Err    error // ErrMismatch, ErrTruncated or ErrMalformed
	Detail string
}

func (e *EventError) Error() string { return fmt.Sprintf("event %d: %v: %s", e.Index, e.Err, e.Detail) }

func (e *EventError) Unwrap() error { return e.Err }

// Summary describes a verified bundle (or what was read before a failure).
type Summary struct {
	Filtered   bool
	Filter     string
	Checkpoint Checkpoint // the bundle's signed checkpoint
	Earlier    *Checkpoint

	Events    int64 // events read
	Records   int64
	Updates   int64
	Deletions int64
	Purges    int64
	Holds     int64
	Releases  int64
	Accesses  int64 // access trail entries
	Withheld  int64 // events whose content was purged: only their leaf hash
	// First and Last span the events' times (When), withheld ones aside.
	First, Last time.Time
}

func (s *Summary) count(e BundleEntry) {
	s.Events++
	if e.Withheld {
		s.Withheld++
		return
	}
	switch e.Event.Kind {
	case KindRecord:
		s.Records++
	case KindUpdate:
		s.Updates++
	case KindDelete:
		s.Deletions++
	case KindPurge:
		s.Purges++
	case KindHold:
		s.Holds++
	case KindRelease:
		s.Releases++
	case KindAccess:
		s.Accesses++
	}
	t := e.Event.When()
	if s.First.IsZero() || t.Before(s.First) {
		s.First = t
	}
	if t.After(s.Last) {
		s.Last = t
	}
}

// span is a subtree of the checkpoint's tree whose hash is known to be
// authentic: leaves [lo, hi).
type span struct {
	lo, hi int64
	hash   tlog.Hash
}

// Verify checks a bundle offline against the log's verifier key, reading it
// once from start to end and holding O(log n) hashes whatever its size.
//
// It checks that the checkpoint is signed by the key; for a full bundle,
// that its events are exactly the log's events 0 to size-1, each checked as
// it is read against the subtree hashes its hints prove, so that the first
// bad event is named; for a filtered bundle, each event's inclusion proof.
// With earlier (a checkpoint the auditor kept, already verified with
// OpenCheckpoint) it checks that the bundle's log extends it: its first
// earlier.Size events must hash to earlier.Root.
//
// On failure it returns what was read so far and an error: an *EventError
// for a bad event, or one wrapping ErrMalformed, ErrSignature or
// ErrNotPrefix.
func Verify(bundle io.Reader, verifierKey string, earlier *Checkpoint) (Summary, error) {
	var sum Summary
	b, err := OpenBundle(bundle)
	if err != nil {
		return sum, err
	}
	sum.Filtered, sum.Filter, sum.Earlier = b.Filtered, b.Filter, earlier
	cp, err := OpenCheckpoint(b.Checkpoint, verifierKey)
	if err != nil {
		if errors.Is(err, ErrSignature) && b.Key != strings.TrimSpace(verifierKey) {
			err = fmt.Errorf("%w; the bundle names the key %s", err, b.Key)
		}
		return sum, err
	}
	sum.Checkpoint = cp
	if earlier != nil {
		if err := checkEarlier(*earlier, cp, b.Filtered); err != nil {
			return sum, err
		}
	}

	// Full bundles: the authentic subtrees still ahead, leftmost on top,
	// starting from the signed root; and the tree so far, for earlier.
	var ahead []span
	if cp.Size > 0 {
		ahead = []span{{0, cp.Size, cp.Root}}
	}
	sofar := &Frontier{}
	next := int64(0) // full: the index expected; filtered: the least allowed

	for {
		e, err := b.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return sum, &EventError{Index: next, Err: ErrMalformed, Detail: err.Error()}
		}
		// Where the event stands, before what it says.
		switch {
		case !b.Filtered && next >= cp.Size:
			return sum, &EventError{Index: next, Err: ErrMismatch, Detail: fmt.Sprintf("the bundle goes on past the checkpoint's %d events", cp.Size)}
		case !b.Filtered && e.Index != next:
			return sum, &EventError{Index: next, Err: ErrMismatch, Detail: fmt.Sprintf("the bundle has event %d in its place", e.Index)}
		case b.Filtered && e.Index < next:
			return sum, &EventError{Index: e.Index, Err: ErrMalformed, Detail: fmt.Sprintf("comes after event %d: indexes must increase", next-1)}
		case b.Filtered && e.Index >= cp.Size:
			return sum, &EventError{Index: e.Index, Err: ErrMismatch, Detail: fmt.Sprintf("the checkpoint covers only %d events", cp.Size)}
		case b.Filtered && e.Withheld:
			return sum, &EventError{Index: e.Index, Err: ErrMalformed, Detail: "a filtered bundle cannot withhold content"}
		}
		leaf := e.LeafHash
		if !e.Withheld {
			enc, err := EncodeEvent(e.Event)
			if err != nil {
				return sum, &EventError{Index: e.Index, Err: ErrMalformed, Detail: err.Error()}
			}
			leaf = LeafHash(enc)
		}
		if b.Filtered {
			if err := tlog.CheckRecord(e.Proof, cp.Size, cp.Root, e.Index, leaf); err != nil {
				return sum, &EventError{Index: e.Index, Err: ErrMismatch, Detail: "its inclusion proof does not lead to the signed root: the event or its proof was altered"}
			}
		} else {
			if ahead, err = checkHinted(ahead, e, leaf); err != nil {
				return sum, &EventError{Index: e.Index, Err: ErrMismatch, Detail: err.Error()}
			}
			if _, err := sofar.Append(leaf); err != nil {
				return sum, err
			}
			if earlier != nil && sofar.Size() == earlier.Size {
				if root, err := sofar.Root(); err != nil || root != earlier.Root {
					return sum, fmt.Errorf("%w: the first %d events hash to %s, the earlier checkpoint says %s", ErrNotPrefix, earlier.Size, root, earlier.Root)
				}
			}
		}
		next = e.Index + 1
		sum.count(e)
	}
	if !b.Filtered {
		if next != cp.Size {
			return sum, &EventError{Index: next, Err: ErrTruncated, Detail: fmt.Sprintf("the bundle ends after %d of the checkpoint's %d events", next, cp.Size)}
		}
		// The hints already proved every leaf; the root over the leaves is
		// checked as well, by plain tlog, so that no bug there can pass.
		if root, err := sofar.Root(); err != nil || root != cp.Root {
			return sum, fmt.Errorf("%w: the events hash to %s, the checkpoint says %s", ErrMismatch, root, cp.Root)
		}
	}
	return sum, nil
}

// checkEarlier checks what can be checked of an earlier checkpoint before
// reading events.
func checkEarlier(earlier, cp Checkpoint, filtered bool) error {
	switch {
	case earlier.Origin != cp.Origin:
		return fmt.Errorf("%w: the earlier checkpoint is of log %q, the bundle of log %q", ErrNotPrefix, earlier.Origin, cp.Origin)
	case earlier.Size > cp.Size:
		return fmt.Errorf("%w: the earlier checkpoint has %d events, the bundle's only %d", ErrNotPrefix, earlier.Size, cp.Size)
	case earlier.Size == cp.Size && earlier.Root != cp.Root:
		return fmt.Errorf("%w: both checkpoints have %d events but different roots", ErrNotPrefix, cp.Size)
	case earlier.Size == 0:
		if empty, _ := tlog.TreeHash(0, nil); earlier.Root != empty {
			return fmt.Errorf("%w: the earlier checkpoint of 0 events has a root other than the empty tree's", ErrNotPrefix)
		}
	case filtered:
		return errors.New("a filtered bundle cannot prove consistency with an earlier checkpoint: verify a full bundle")
	}
	return nil
}

// checkHinted checks event e of a full bundle (leaf hash leaf) against the
// authentic subtree on top of ahead, which starts at e: its hints must be
// the proof that leaf is the subtree's first leaf. That proves the hints
// too, and they are the hashes of the subtrees that follow, pushed on ahead.
func checkHinted(ahead []span, e BundleEntry, leaf tlog.Hash) ([]span, error) {
	if len(ahead) == 0 || ahead[len(ahead)-1].lo != e.Index {
		return ahead, errors.New("no subtree of the checkpoint starts here")
	}
	top := ahead[len(ahead)-1]
	ahead = ahead[:len(ahead)-1]
	size := top.hi - top.lo
	if want := depth(size); len(e.Hints) != want {
		return ahead, fmt.Errorf("it has %d hints, its place in the tree needs %d", len(e.Hints), want)
	}
	if err := tlog.CheckRecord(e.Hints, size, top.hash, 0, leaf); err != nil {
		return ahead, errors.New("it does not hash to the signed tree: its content was altered, or it was moved")
	}
	// Hint j is the subtree right of leaves [lo, lo+2^j): [lo+2^j, lo+2^(j+1)),
	// the last one running to hi.
	for j := len(e.Hints) - 1; j >= 0; j-- {
		lo, hi := top.lo+1<<j, top.lo+2<<j
		if j == len(e.Hints)-1 {
			hi = top.hi
		}
		ahead = append(ahead, span{lo, hi, e.Hints[j]})
	}
	return ahead, nil
}
