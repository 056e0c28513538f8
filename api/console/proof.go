package console

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/tapd-mirror/tapd-mirror/storage"
)

// proofView is a record's place in the integrity log: its events' inclusion
// proofs in the latest signed checkpoint (issue 12).
type proofView struct {
	// State: "proved", "no-checkpoint" (none signed yet) or "pending" (the
	// record's events came after the latest checkpoint).
	State    string
	Size     int64
	SignedAt string
	Root     string
	Note     string // the signed checkpoint, as tapd-mirror verify reads it
	Events   []proofEvent
}

type proofEvent struct {
	Index      int64
	Kind, Leaf string
	Path       []string
	// Checks: the audit path leads from the leaf to the checkpoint's root.
	// The console recomputes it as a courtesy; the evidence is the signed
	// checkpoint, which auditors verify offline with the log's public key.
	Checks bool
}

// proof reads the inclusion proofs of record id in the latest checkpoint.
func (c *Console) proof(ctx context.Context, v *view, id int64) (proofView, error) {
	cp, err := c.o.Store.LatestCheckpoint(ctx)
	if errors.Is(err, storage.ErrNotFound) {
		return proofView{State: "no-checkpoint"}, nil
	}
	if err != nil {
		return proofView{}, err
	}
	pv := proofView{State: "proved", Size: cp.Size, SignedAt: v.Time(cp.SignedAt), Root: cp.Root.String(), Note: string(cp.Signed)}
	proofs, err := c.o.Store.RecordProofs(ctx, id, cp.Size)
	if errors.Is(err, storage.ErrNotFound) {
		pv.State = "pending"
		return pv, nil
	}
	if err != nil {
		return proofView{}, fmt.Errorf("inclusion proofs of record %d: %w", id, err)
	}
	for _, p := range proofs {
		e := proofEvent{Index: p.Index, Kind: p.Kind, Leaf: p.Leaf.String(),
			Checks: tlog.CheckRecord(p.Path, cp.Size, cp.Root, p.Index, p.Leaf) == nil}
		for _, h := range p.Path {
			e.Path = append(e.Path, h.String())
		}
		pv.Events = append(pv.Events, e)
	}
	return pv, nil
}
