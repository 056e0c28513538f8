package console_test

import (
	"testing"

	"github.com/tapd-mirror/tapd-mirror/api"
)

// newAPI is api.New whose trail writer is closed when the test ends,
// before its store (registered earlier, so cleaned up later).
func newAPI(t testing.TB, o api.Options) *api.Server {
	t.Helper()
	srv := api.New(o)
	t.Cleanup(srv.Close)
	return srv
}
