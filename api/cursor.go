package api

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"time"

	"github.com/tapd-mirror/tapd-mirror/storage"
)

// Cursors are opaque to clients: base64url of "v1:<unix seconds>:<id>", the
// last row's place in the newest-first order. A cursor stays valid under
// concurrent inserts, because it names a position, not an offset.
func encodeCursor(a storage.Activity) string { return CursorAt(a.Timestamp, a.ID) }

// CursorAt is the cursor that pages on from the row (timestamp, id).
func CursorAt(ts time.Time, id int64) string {
	return base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "v1:%d:%d", ts.Unix(), id))
}

func decodeCursor(raw string) (*storage.Position, error) {
	if raw == "" {
		return nil, nil // the first page
	}
	b, err := base64.RawURLEncoding.DecodeString(raw)
	var sec, id int64
	if err == nil {
		_, err = fmt.Sscanf(string(b), "v1:%d:%d", &sec, &id)
	}
	if err != nil || id <= 0 {
		return nil, errorf(http.StatusBadRequest, "cursor %q is not one this server issued; start again with cursor= (empty)", raw)
	}
	return &storage.Position{Timestamp: time.Unix(sec, 0).UTC(), ID: id}, nil
}
