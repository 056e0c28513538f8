package api

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
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

// decodeCursor accepts exactly the cursors CursorAt makes, with a time
// within the API's bounds.
func decodeCursor(raw string) (*storage.Position, error) {
	if raw == "" {
		return nil, nil // the first page
	}
	var sec, id int64
	b, err := base64.RawURLEncoding.DecodeString(raw)
	parts := strings.Split(string(b), ":")
	if err == nil && len(parts) == 3 && parts[0] == "v1" {
		sec, err = strconv.ParseInt(parts[1], 10, 64)
		if err == nil {
			id, err = strconv.ParseInt(parts[2], 10, 64)
		}
	} else if err == nil {
		err = errors.New("not v1:SECONDS:ID")
	}
	if err != nil || id <= 0 || !validUnix(sec) || CursorAt(time.Unix(sec, 0), id) != raw {
		return nil, errorf(http.StatusBadRequest, "cursor %q is not one this server issued; start again with cursor= (empty)", clip(raw))
	}
	return &storage.Position{Timestamp: time.Unix(sec, 0).UTC(), ID: id}, nil
}
