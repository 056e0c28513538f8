package forward

import (
	"context"
	"sync"
	"time"

	"github.com/tapd-mirror/tapd-mirror/storage"
)

// sharedKept is how many recent reads destinations share, for at most
// sharedFor: long enough for destinations keeping up together, short
// enough that a replay later reads again (and sees what a purge withheld
// meanwhile as withheld).
const (
	sharedKept = 16
	sharedFor  = 10 * time.Second
)

// sharedReads lets destinations at the same place in the log read each
// batch once: batches end on multiples of batch_size, so destinations
// keeping up with the log ask for the same ranges, and the first read of
// a range serves the others.
type sharedReads struct {
	mu    sync.Mutex
	reads map[int64]*sharedRead // by first index
	order []int64               // oldest first
}

type sharedRead struct {
	*readAhead
	at time.Time
}

// read returns events [from, to), or fewer when a shared read of a
// shorter range (the log was shorter then) holds them.
func (s *sharedReads) read(ctx context.Context, st *storage.Store, from, to int64) ([]storage.LoggedEvent, error) {
	s.mu.Lock()
	if s.reads == nil {
		s.reads = map[int64]*sharedRead{}
	}
	if a, ok := s.reads[from]; ok && time.Since(a.at) < sharedFor {
		s.mu.Unlock()
		<-a.done
		if a.err == nil {
			return upTo(a.logged, to), nil
		}
		return st.ReadEvents(ctx, from, to) // that read failed (its reader stopping): read again
	}
	a := &sharedRead{readAhead: &readAhead{from: from, to: to, done: make(chan struct{})}, at: time.Now()}
	if _, ok := s.reads[from]; !ok {
		s.order = append(s.order, from)
	}
	s.reads[from] = a
	if len(s.order) > sharedKept {
		delete(s.reads, s.order[0])
		s.order = s.order[1:]
	}
	s.mu.Unlock()
	a.logged, a.err = st.ReadEvents(ctx, from, to)
	close(a.done)
	return a.logged, a.err
}

// upTo is the events of logged before index to.
func upTo(logged []storage.LoggedEvent, to int64) []storage.LoggedEvent {
	for i, le := range logged {
		if le.Index >= to {
			return logged[:i]
		}
	}
	return logged
}

// linesKept bounds the encoded events destinations share.
const linesKept = 4096

// lineKey names an event's encoding: the same event, format and covering
// checkpoint encode to the same bytes — unless a purge withheld the
// content since (a replay then reads it withheld).
type lineKey struct {
	index, checkpoint int64
	format            string
	withheld          bool
}

// sharedLines lets destinations with the same format encode each event
// once (the most recent linesKept encodings are kept, oldest out first).
type sharedLines struct {
	mu    sync.Mutex
	lines map[lineKey][]byte
	order []lineKey
}

func (s *sharedLines) encode(format string, e Event) ([]byte, error) {
	k := lineKey{index: e.Index, format: format, withheld: e.Withheld}
	if e.Checkpoint != nil {
		k.checkpoint = e.Checkpoint.Size
	}
	s.mu.Lock()
	line, ok := s.lines[k]
	s.mu.Unlock()
	if ok {
		return line, nil
	}
	line, err := encodeJSON(format, e)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lines == nil {
		s.lines = map[lineKey][]byte{}
	}
	if _, ok := s.lines[k]; !ok {
		s.lines[k] = line
		s.order = append(s.order, k)
		if len(s.order) > linesKept {
			delete(s.lines, s.order[0])
			s.order = s.order[1:]
		}
	}
	return line, nil
}
