package tapd

import (
	"context"
	"encoding/json"
	"net/url"
	"time"
)

// Auth methods, as AuthCheck reports them.
const (
	AuthBasic    = "basic"     // api_user / api_password
	AuthToken    = "token"     // a personal access token (Bearer)
	AuthOAuthApp = "oauth_app" // client credentials, renewed Bearer tokens
	AuthNone     = "none"
)

// AuthCheck is what CheckAuth learned of the configured credentials.
type AuthCheck struct {
	Method string `json:"method"`
	// TokenLifetime is an OAuth app's token lifetime as TAPD announced it.
	TokenLifetime time.Duration `json:"token_lifetime,omitempty"`
	// APIUser is who TAPD says the credentials belong to, when it says.
	APIUser string `json:"api_user,omitempty"`
}

// AuthMethod names the configured way to authenticate.
func (c *Client) AuthMethod() string {
	switch {
	case c.oauth != nil:
		return AuthOAuthApp
	case c.opts.AccessToken != "":
		return AuthToken
	case c.opts.APIUser != "":
		return AuthBasic
	}
	return AuthNone
}

// CheckAuth asks TAPD whether the credentials are good (GET
// /quickstart/testauth; an OAuth app first obtains a token). TAPD's
// greeting instead (ErrBaseURL) means tapd.base_url is not the API root:
// TAPD greets an unknown path, even without credentials.
func (c *Client) CheckAuth(ctx context.Context) (AuthCheck, error) {
	const op = "testauth"
	out := AuthCheck{Method: c.AuthMethod()}
	data, _, err := c.get(ctx, op, "/quickstart/testauth", url.Values{}, nil)
	if c.oauth != nil {
		c.oauth.mu.Lock()
		out.TokenLifetime = c.oauth.lifetime
		c.oauth.mu.Unlock()
	}
	if err != nil {
		return out, err // TAPD's greeting is ErrBaseURL
	}
	var who struct {
		APIUser string `json:"api_user"`
	}
	if json.Unmarshal(data, &who) == nil {
		out.APIUser = who.APIUser
	}
	return out, nil
}
