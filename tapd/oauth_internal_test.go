package tapd

import (
	"context"
	"testing"
	"time"
)

func TestInvalidateLeavesANewerTokenAlone(t *testing.T) {
	// A base URL nothing listens on: any token request would fail.
	c, err := New(Options{BaseURL: "http://127.0.0.1:1", ClientID: "c", ClientSecret: "s", MaxRetries: -1, RequestsPerMinute: -1})
	if err != nil {
		t.Fatal(err)
	}
	c.oauth.token, c.oauth.renewAt = "new", time.Now().Add(time.Hour)
	c.oauth.invalidate("old") // a caller refused with the token before the renewal
	if tok, err := c.oauth.get(context.Background()); tok != "new" || err != nil {
		t.Fatalf("get = %q, %v; want the newer token kept", tok, err)
	}
	c.oauth.invalidate("new")
	if _, err := c.oauth.get(context.Background()); err == nil {
		t.Fatal("the refused current token was not dropped")
	}
}
