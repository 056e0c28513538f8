package storage

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/tapd-mirror/tapd-mirror/integrity"
)

// SignedCheckpoint is a checkpoint of the integrity log as stored.
type SignedCheckpoint struct {
	Size     int64
	Root     tlog.Hash
	Signed   []byte // the signed note (integrity/SPEC.md §3)
	SignedAt time.Time
}

type checkpointRow struct {
	Size     int64  `db:"tree_size"`
	Root     []byte `db:"root"`
	Signed   string `db:"signed"`
	SignedAt dbTime `db:"signed_at"`
}

func (r checkpointRow) checkpoint() SignedCheckpoint {
	c := SignedCheckpoint{Size: r.Size, Signed: []byte(r.Signed), SignedAt: r.SignedAt.Time}
	copy(c.Root[:], r.Root)
	return c
}

const checkpointColumns = `tree_size, root, signed, signed_at`

// LatestCheckpoint returns the checkpoint of the largest tree, or ErrNotFound.
func (s *Store) LatestCheckpoint(ctx context.Context) (SignedCheckpoint, error) {
	var r checkpointRow
	err := s.db.GetContext(ctx, &r, `SELECT `+checkpointColumns+` FROM integrity_checkpoint ORDER BY tree_size DESC LIMIT 1`)
	if isNoRows(err) {
		return SignedCheckpoint{}, ErrNotFound
	}
	if err != nil {
		return SignedCheckpoint{}, fmt.Errorf("reading the latest checkpoint: %w", err)
	}
	return r.checkpoint(), nil
}

// CheckpointAt returns the checkpoint of the tree of the given size, or ErrNotFound.
func (s *Store) CheckpointAt(ctx context.Context, size int64) (SignedCheckpoint, error) {
	var r checkpointRow
	err := s.db.GetContext(ctx, &r, s.rebind(`SELECT `+checkpointColumns+` FROM integrity_checkpoint WHERE tree_size = ?`), size)
	if isNoRows(err) {
		return SignedCheckpoint{}, ErrNotFound
	}
	if err != nil {
		return SignedCheckpoint{}, fmt.Errorf("reading the checkpoint of size %d: %w", size, err)
	}
	return r.checkpoint(), nil
}

// Checkpoints returns at most limit checkpoints of trees larger than since,
// smallest first.
func (s *Store) Checkpoints(ctx context.Context, since int64, limit int) ([]SignedCheckpoint, error) {
	var rows []checkpointRow
	if err := s.db.SelectContext(ctx, &rows, s.rebind(`SELECT `+checkpointColumns+` FROM integrity_checkpoint
		WHERE tree_size > ? ORDER BY tree_size LIMIT ?`), since, limit); err != nil {
		return nil, fmt.Errorf("listing checkpoints: %w", err)
	}
	out := make([]SignedCheckpoint, len(rows))
	for i, r := range rows {
		out[i] = r.checkpoint()
	}
	return out, nil
}

// SignCheckpoint signs the log's current head with key and stores it, unless
// the latest checkpoint already covers it; created reports a new one. It
// never signs a tree that does not extend its latest checkpoint: before
// signing it recomputes, from the stored hashes, the root at the head (which
// must be the head's) and at the latest checkpoint's size (which must be the
// one signed then). A log rewritten behind the service's back is therefore
// refused, not signed.
func (s *Store) SignCheckpoint(ctx context.Context, key *integrity.Key, now time.Time) (c SignedCheckpoint, created bool, err error) {
	head, err := s.Head(ctx)
	if err != nil {
		return c, false, err
	}
	latest, err := s.LatestCheckpoint(ctx)
	switch {
	case err == nil && latest.Size >= head.Size:
		return latest, false, nil
	case err != nil && !errors.Is(err, ErrNotFound):
		return c, false, err
	}
	hr := s.newHashReader(ctx, s.db)
	root, err := integrity.TreeHash(head.Size, hr)
	if err != nil {
		return c, false, fmt.Errorf("signing a checkpoint: %w", err)
	}
	if root != head.Root {
		return c, false, fmt.Errorf("refusing to sign a checkpoint: the stored hashes give root %s at size %d, the log's head says %s", root, head.Size, head.Root)
	}
	if latest.Size > 0 {
		if _, err := integrity.OpenCheckpoint(latest.Signed, key.VerifierKey()); err != nil {
			return c, false, fmt.Errorf("refusing to sign a checkpoint: the latest stored one (size %d): %w", latest.Size, err)
		}
		prefix, err := integrity.TreeHash(latest.Size, hr)
		if err != nil {
			return c, false, fmt.Errorf("signing a checkpoint: %w", err)
		}
		if prefix != latest.Root {
			return c, false, fmt.Errorf("refusing to sign a checkpoint: the log no longer extends the checkpoint of size %d (its first %d events hash to %s, signed %s)",
				latest.Size, latest.Size, prefix, latest.Root)
		}
	}
	at := time.Unix(now.Unix(), 0).UTC()
	signed, err := key.Sign(integrity.Checkpoint{Size: head.Size, Root: head.Root, Time: at})
	if err != nil {
		return c, false, err
	}
	c = SignedCheckpoint{Size: head.Size, Root: head.Root, Signed: signed, SignedAt: at}
	res, err := s.db.ExecContext(ctx, s.rebind(`INSERT INTO integrity_checkpoint (tree_size, root, signed, signed_at)
		VALUES (?, ?, ?, ?) ON CONFLICT (tree_size) DO NOTHING`), c.Size, c.Root[:], string(c.Signed), s.timeArg(at))
	if err != nil {
		return c, false, fmt.Errorf("storing the checkpoint of size %d: %w", c.Size, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		// Another replica signed this size first: its checkpoint is the one.
		c, err = s.CheckpointAt(ctx, head.Size)
		return c, false, err
	}
	return c, true, nil
}
