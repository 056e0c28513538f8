package forward

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tapd-mirror/tapd-mirror/storage"
)

// ErrUnknownDestination: a replay named no configured destination.
var ErrUnknownDestination = errors.New("no forward destination of that name is configured")

// ReplayError is a replay index that cannot be replayed from.
type ReplayError struct{ Msg string }

func (e *ReplayError) Error() string { return e.Msg }

// Replay is what a replay did: the destination's cursor went from
// Previous back to From.
type Replay struct {
	Name     string `json:"name"`
	From     int64  `json:"from"`
	Previous int64  `json:"previous_cursor"`
}

// ReplayFrom moves destination name's cursor back to index from (or, with
// since set and from < 0, to the first event at or after since), so that
// everything from there is delivered again; the forwarder running it, in
// this or another process, takes the request before its next batch.
// names are the configured destinations.
func ReplayFrom(ctx context.Context, st *storage.Store, names []string, name string, from int64, since time.Time) (Replay, error) {
	if !slices.Contains(names, name) {
		known := "none is"
		if len(names) > 0 {
			known = strings.Join(names, ", ") + " are"
		}
		return Replay{}, fmt.Errorf("%w: %q (%s configured under forward:)", ErrUnknownDestination, name, known)
	}
	cur, err := st.ForwardCursor(ctx, name)
	if err != nil {
		return Replay{}, err
	}
	if from < 0 {
		if from, err = st.FirstIndexSince(ctx, since); err != nil {
			return Replay{}, fmt.Errorf("finding the first event since %s: %w", since.Format(time.RFC3339), err)
		}
		from = min(from, cur.Next) // nothing since then was delivered yet
	}
	if from > cur.Next {
		return Replay{}, &ReplayError{fmt.Sprintf("index %d is past destination %s's cursor %d: a replay only moves back (moving forward would skip events never delivered)", from, name, cur.Next)}
	}
	if err := st.ReplayForward(ctx, name, from); err != nil {
		return Replay{}, err
	}
	return Replay{Name: name, From: from, Previous: cur.Next}, nil
}
