package config

import (
	"fmt"
	"slices"
	"strings"
)

// Scope is what an API token may do. The scopes are not one line but a
// small lattice: admin ⊇ write ⊇ read and admin ⊇ auditor ⊇ read, while
// write and auditor are apart (an auditor changes nothing; a writer does
// not read the access trail). The empty scope is "no token needed".
type Scope string

// The API token scopes.
const (
	ScopeRead    Scope = "read"    // reads beyond the contract's plain shapes: detail, export
	ScopeWrite   Scope = "write"   // the contract's mutations of local records
	ScopeAuditor Scope = "auditor" // read, plus the access trail, reports, sync status and runs, holds: changes nothing
	ScopeAdmin   Scope = "admin"   // everything: sync, acknowledgements, holds, deleting mirrored evidence
)

// includes lists, for each scope, every scope it includes besides itself.
var includes = map[Scope][]Scope{
	ScopeRead:    nil,
	ScopeWrite:   {ScopeRead},
	ScopeAuditor: {ScopeRead},
	ScopeAdmin:   {ScopeRead, ScopeWrite, ScopeAuditor},
}

// Includes reports whether a token of scope s may do what needs scope need.
func (s Scope) Includes(need Scope) bool {
	if need == "" {
		return true
	}
	if !s.Valid() {
		return false
	}
	return s == need || slices.Contains(includes[s], need)
}

// Valid reports whether s is one of read, write, auditor, admin.
func (s Scope) Valid() bool {
	_, ok := includes[s]
	return ok
}

// Token is one API bearer token. Name identifies it in logs; the token itself
// is never logged.
type Token struct {
	Name  string `yaml:"name"`
	Token string `yaml:"token"`
	Scope Scope  `yaml:"scope"`
}

// MinPublicTokenLength is the shortest token accepted when the API listens on
// a non-loopback address.
const MinPublicTokenLength = 32

// singleTokens is how many of tokenSources are the single-token settings.
const singleTokens = 4

// tokenSource is a token with the key it was configured under.
type tokenSource struct {
	key string
	Token
}

// tokenSources lists every token setting, set or not: the single tokens
// (named after their key) and the auth.tokens list.
func (c Config) tokenSources() []tokenSource {
	out := []tokenSource{
		{"admin_token", Token{Name: "admin_token", Token: c.AdminToken, Scope: ScopeAdmin}},
		{"auth.write_token", Token{Name: "auth.write_token", Token: c.Auth.WriteToken, Scope: ScopeWrite}},
		{"auth.read_token", Token{Name: "auth.read_token", Token: c.Auth.ReadToken, Scope: ScopeRead}},
		{"auth.auditor_token", Token{Name: "auth.auditor_token", Token: c.Auth.AuditorToken, Scope: ScopeAuditor}},
	}
	for i, t := range c.Auth.Tokens {
		out = append(out, tokenSource{fmt.Sprintf("auth.tokens[%d].token", i), t})
	}
	return out
}

// APITokens returns every configured API token; empty settings are left out.
func (c Config) APITokens() []Token {
	var out []Token
	for _, s := range c.tokenSources() {
		if s.Token.Token != "" {
			out = append(out, s.Token)
		}
	}
	return out
}

// validateAuth checks the tokens; public means listen is reachable from
// other machines.
func (c Config) validateAuth(bad func(key, format string, args ...any), public bool) {
	names := map[string]bool{}
	for _, s := range c.tokenSources()[:singleTokens] {
		names[s.Name] = true
	}
	for i, t := range c.Auth.Tokens {
		key := fmt.Sprintf("auth.tokens[%d]", i)
		switch {
		case t.Name == "":
			bad(key+".name", "is empty; name each token (the name is logged, the token never is)")
		case names[t.Name]:
			bad(key+".name", "%q is used twice; token names must be unique", t.Name)
		}
		names[t.Name] = true
		if t.Token == "" {
			bad(key+".token", "is empty")
		}
		if !t.Scope.Valid() {
			bad(key+".scope", "%q is not read, write, auditor or admin", t.Scope)
		}
	}
	seen := map[string]string{} // token → key
	for _, s := range c.tokenSources() {
		tok := s.Token.Token
		if tok == "" {
			continue
		}
		if strings.IndexFunc(tok, func(r rune) bool { return r <= ' ' || r > '~' }) >= 0 {
			bad(s.key, "must be printable ASCII without spaces (it is sent as 'Authorization: Bearer <token>')")
		}
		if other, dup := seen[tok]; dup {
			bad(s.key, "is the same token as %s; give every token its own value", other)
		}
		seen[tok] = s.key
		if public && len(tok) < MinPublicTokenLength {
			bad(s.key, "is %d characters; listen %q is reachable from other machines, which needs tokens of at least %d characters (e.g. openssl rand -hex 32)",
				len(tok), c.Listen, MinPublicTokenLength)
		}
	}
	if public && len(seen) == 0 {
		bad("listen", "%q is reachable from other machines but no API token is configured; set TAPD_MIRROR_ADMIN_TOKEN (or auth.tokens) or listen on 127.0.0.1", c.Listen)
	}
	if c.Auth.RequireReadToken && len(seen) == 0 {
		bad("auth.require_read_token", "is true but no API token is configured, so nobody could read; set TAPD_MIRROR_READ_TOKEN or auth.tokens")
	}
}
