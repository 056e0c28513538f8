package integrity_test

import (
	"fmt"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/tapd-mirror/tapd-mirror/integrity"
)

// How storage appends to the log inside the transaction that stores a page
// of records. The MemoryStore stands in for a tlog.HashReader over the
// integrity_hash table read through the same transaction.
func ExampleAppend() {
	hashes := &integrity.MemoryStore{}
	size := int64(0) // SELECT tree_size FROM integrity_state FOR UPDATE

	at := time.Unix(1707725000, 0)
	var leaves []tlog.Hash
	for id := int64(1); id <= 3; id++ { // the ids the INSERTs returned
		body, err := integrity.EncodeEvent(integrity.RecordEvent(integrity.Record{
			ID: id, Platform: "tapd", ActionType: "add", Timestamp: at, Source: "tapd",
			SourceID: fmt.Sprint(1100000000 + id), IngestedAt: at,
		}))
		if err != nil {
			panic(err) // storage: roll back
		}
		leaves = append(leaves, integrity.LeafHash(body))
		// INSERT INTO integrity_event (idx, kind, record_id, body, leaf_hash)
		// VALUES (size+id-1, 'record', id, body, leaf)
	}
	a, err := integrity.Append(size, leaves, hashes)
	if err != nil {
		panic(err)
	}
	// INSERT INTO integrity_hash (idx, hash) VALUES each of a.Hashes;
	// UPDATE integrity_state SET tree_size = a.Size
	if err := hashes.WriteHashes(a.Hashes); err != nil {
		panic(err)
	}
	fmt.Println("tree size", a.Size, "with", len(a.Hashes), "stored hashes")
	proof, _ := integrity.InclusionProof(a.Size, 1, hashes)
	fmt.Println("event 1 proven with", len(proof), "hashes:", integrity.CheckInclusion(proof, a.Size, a.Root, 1, leaves[1]) == nil)
	// Output:
	// tree size 3 with 4 stored hashes
	// event 1 proven with 2 hashes: true
}
