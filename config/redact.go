package config

import (
	"encoding/base64"
	"net/url"
	"slices"
	"strings"
)

// HiddenURL stands in for a URL that cannot be shown safely: one that does
// not parse may hold a password anywhere in it.
const HiddenURL = "(hidden: not a valid URL, and it may hold a password)"

// RedactDatabaseURL returns database_url fit for logs and errors: the
// password is masked whether it is URL userinfo, a ?password= parameter or a
// keyword DSN's password=…; anything else that is not a sqlite: path is
// replaced by HiddenURL, never shown raw.
func RedactDatabaseURL(raw string) string {
	switch {
	case strings.HasPrefix(raw, "sqlite:"):
		return raw // a file path holds no password
	case isHostList(raw):
		return redactHostList(raw)
	case strings.Contains(raw, "://"):
		return RedactURL(raw)
	}
	if red, ok := redactKeywordDSN(raw); ok {
		return red
	}
	return HiddenURL
}

// RedactURL masks the userinfo password and every password-like query
// parameter of a URL, and drops its fragment; a URL that does not parse is
// HiddenURL.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return HiddenURL
	}
	u.Fragment, u.RawFragment = "", ""
	if u.RawQuery != "" {
		q := u.Query() // pairs that do not parse are dropped, never echoed
		for k := range q {
			if isPasswordKey(k) {
				q[k] = []string{"xxxxx"}
			}
		}
		u.RawQuery = q.Encode()
	}
	if u.Opaque != "" {
		u.Opaque = "xxxxx" // "scheme:user:pw@host": no structure to trust
	}
	return u.Redacted()
}

func isPasswordKey(k string) bool {
	k = strings.ToLower(k)
	return strings.Contains(k, "password") || strings.Contains(k, "passwd") || k == "pwd"
}

// redactKeywordDSN masks the password of a libpq keyword DSN such as
// "host=db user=me password='p w'". It reports false when raw is not one.
func redactKeywordDSN(raw string) (string, bool) {
	var out []string
	for _, kv := range splitKeywordDSN(raw) {
		if kv.key == "" {
			return "", false
		}
		v := kv.raw
		if isPasswordKey(kv.key) {
			v = "xxxxx"
		}
		out = append(out, kv.key+"="+v)
	}
	return strings.Join(out, " "), len(out) > 0
}

type keyword struct{ key, raw, value string }

// splitKeywordDSN parses "k=v k2='quoted \' value'"; a pair with an empty
// key marks text that is not a keyword DSN.
func splitKeywordDSN(s string) []keyword {
	var out []keyword
	i := 0
	for {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i == len(s) {
			return out
		}
		start := i
		for i < len(s) && (s[i] == '_' || s[i] >= 'a' && s[i] <= 'z' || s[i] >= 'A' && s[i] <= 'Z') {
			i++
		}
		key := s[start:i]
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if key == "" || i == len(s) || s[i] != '=' {
			return append(out, keyword{})
		}
		i++
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		vstart := i
		var val strings.Builder
		quoted := i < len(s) && s[i] == '\''
		if quoted {
			i++
		}
		closed := !quoted
		for i < len(s) {
			c := s[i]
			if c == '\\' && i+1 < len(s) {
				val.WriteByte(s[i+1])
				i += 2
				continue
			}
			if quoted && c == '\'' {
				i++
				closed = true
				break
			}
			if !quoted && isSpace(c) {
				break
			}
			val.WriteByte(c)
			i++
		}
		if !closed {
			return append(out, keyword{})
		}
		out = append(out, keyword{key: key, raw: s[vstart:i], value: val.String()})
	}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// destinationURLKeys are the settings holding a URL we send to — a witness
// now; forwarding and alert destinations to come: list each here. Such a URL
// carries its credentials in its query (access_token=, key=, sig=…) or its
// userinfo, so every query value and the userinfo are secrets.
var destinationURLKeys = []string{"integrity.publish_url", "forward[].url", "alerts.notifiers[].url"}

// RedactDestinationURL is the one helper for a URL we send to: shown is raw
// fit for output (every query value and the userinfo masked, the fragment
// dropped; HiddenURL when it does not parse), and secrets are what logs and
// errors must be scrubbed of (each of those values as written and decoded;
// the whole text when it does not parse).
func RedactDestinationURL(raw string) (shown string, secrets []string) {
	if raw == "" {
		return "", nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return HiddenURL, []string{raw}
	}
	add := func(vs ...string) {
		for _, v := range vs {
			secrets = append(secrets, v)
			if dec, err := url.QueryUnescape(v); err == nil && dec != v {
				secrets = append(secrets, dec)
			}
		}
	}
	if u.Opaque != "" { // "scheme:user:pw@host": no structure to trust
		add(u.Opaque)
		u.Opaque = "xxxxx"
	}
	if u.User != nil {
		pw, hasPw := u.User.Password()
		add(u.User.String(), u.User.Username(), pw)
		u.User = url.User("xxxxx")
		if hasPw {
			u.User = url.UserPassword("xxxxx", "xxxxx")
		}
	}
	if u.RawQuery != "" {
		pairs := strings.Split(u.RawQuery, "&")
		for i, pair := range pairs {
			k, v, ok := strings.Cut(pair, "=")
			if ok {
				pairs[i] = k + "=xxxxx"
			} else { // "?token": a bare value
				v, pairs[i] = pair, "xxxxx"
			}
			add(v)
		}
		u.RawQuery = strings.Join(pairs, "&")
	}
	u.Fragment, u.RawFragment = "", ""
	return u.String(), secrets
}

// RedactURLPath masks the path of a URL after its first segment, for a
// destination that carries its secret there (generic webhooks: Slack's
// /services/T…/B…/TOKEN, Discord's /api/webhooks/ID/TOKEN, Teams'
// /webhookb2/…): shown keeps the scheme, userinfo, host, first segment
// and query of shown and puts "…" for the rest; secrets are that rest as
// written and decoded. Apply it to RedactDestinationURL's shown.
func RedactURLPath(shown string) (string, []string) {
	u, err := url.Parse(shown)
	if err != nil || u.Opaque != "" || u.Host == "" {
		return shown, nil
	}
	first, rest, _ := strings.Cut(strings.TrimPrefix(u.EscapedPath(), "/"), "/")
	if rest == "" {
		return shown, nil
	}
	secrets := []string{rest}
	if dec, err := url.PathUnescape(rest); err == nil && dec != rest {
		secrets = append(secrets, dec)
	}
	out := u.Scheme + "://"
	if u.User != nil {
		out += u.User.String() + "@"
	}
	out += u.Host + "/" + first + "/…"
	if u.RawQuery != "" {
		out += "?" + u.RawQuery
	}
	return out, secrets
}

// basicCredentials are the forms a user:secret pair takes once sent as
// HTTP Basic auth (base64, padded or not, and with "/" escaped as a PHP
// JSON error that echoes the header writes it), for scrubbing.
func basicCredentials(user, secret string) []string {
	if secret == "" {
		return nil
	}
	pair := []byte(user + ":" + secret)
	std := base64.StdEncoding.EncodeToString(pair)
	return []string{std, base64.RawStdEncoding.EncodeToString(pair), strings.ReplaceAll(std, "/", `\/`)}
}

// Secrets returns every secret value of c — API tokens, TAPD credentials
// (also as the base64 of each user:secret pair sent as Basic auth), the
// passwords in database_url and tapd.base_url, and the query values and
// userinfo of destination URLs, in the forms they were written and decoded
// — so that log output can be scrubbed of them.
func (c Config) Secrets() []string {
	out := []string{c.TAPD.APIPassword, c.TAPD.AccessToken, c.TAPD.ClientSecret}
	out = append(out, basicCredentials(c.TAPD.APIUser, c.TAPD.APIPassword)...)
	out = append(out, basicCredentials(c.TAPD.ClientID, c.TAPD.ClientSecret)...)
	for _, t := range c.tokenSources() {
		out = append(out, t.Token.Token)
	}
	for _, raw := range []string{c.DatabaseURL, c.DatabaseReadURL, c.TAPD.BaseURL} {
		out = append(out, URLSecrets(raw)...)
	}
	for _, f := range Fields {
		if slices.Contains(destinationURLKeys, f.Key) {
			_, secrets := RedactDestinationURL(f.get(&c))
			out = append(out, secrets...)
		}
	}
	out = append(out, c.forwardSecrets()...) // forward[].url, secret, token
	out = append(out, c.alertSecrets()...)   // alerts.notifiers[].url (query and path token), secret
	kept := out[:0]
	for _, s := range out {
		if s != "" {
			kept = append(kept, s)
		}
	}
	return kept
}

// URLSecrets are the passwords of a URL or keyword DSN, and the whole raw
// text whenever showing it would be unsafe.
func URLSecrets(raw string) []string {
	if raw == "" || strings.HasPrefix(raw, "sqlite:") {
		return nil
	}
	if isHostList(raw) {
		return hostListSecrets(raw)
	}
	var out []string
	if strings.Contains(raw, "://") {
		u, err := url.Parse(raw)
		if err != nil {
			return []string{raw}
		}
		if pw, ok := u.User.Password(); ok {
			out = append(out, pw, u.User.String())
		}
		for k, vs := range u.Query() {
			if isPasswordKey(k) {
				out = append(out, vs...)
			}
		}
	} else {
		kws := splitKeywordDSN(raw)
		for _, kv := range kws {
			if kv.key == "" {
				return []string{raw}
			}
			if isPasswordKey(kv.key) {
				out = append(out, kv.value, kv.raw)
			}
		}
	}
	if len(out) > 0 || RedactURL(raw) == HiddenURL {
		out = append(out, raw)
	}
	return out
}

// MinScrubLength is the shortest secret Scrub masks: shorter ones would mask
// ordinary words, and are too weak to be worth hiding anyway.
const MinScrubLength = 4

// Scrub replaces every occurrence of each secret in text with "****",
// longest secrets first.
func Scrub(text string, secrets ...string) string {
	secrets = slices.Clone(secrets)
	slices.SortFunc(secrets, func(a, b string) int { return len(b) - len(a) })
	for _, s := range secrets {
		if len(s) >= MinScrubLength {
			text = strings.ReplaceAll(text, s, "****")
		}
	}
	return text
}

// isHostList reports whether raw is a postgres:// URL naming several hosts.
func isHostList(raw string) bool {
	_, isList, _ := hostListDSN(raw)
	return isList
}

// redactHostList shows a host-list URL as the keyword DSN it is converted
// to, password masked; HiddenURL when it does not convert.
func redactHostList(raw string) string {
	dsn, _, err := hostListDSN(raw)
	if err != nil {
		return HiddenURL
	}
	red, _ := redactKeywordDSN(dsn)
	return red
}

// hostListSecrets are the secrets of a host-list URL: its password as
// written and decoded, its userinfo, the forms of the converted DSN, and the
// URL itself whenever it holds one or does not convert.
func hostListSecrets(raw string) []string {
	dsn, _, err := hostListDSN(raw)
	var out []string
	if err == nil {
		out = URLSecrets(dsn)
	}
	userinfo := splitAuthority(raw).userinfo
	if _, pw, ok := strings.Cut(userinfo, ":"); ok {
		out = append(out, pw, userinfo)
		if dec, err := url.PathUnescape(pw); err == nil {
			out = append(out, dec)
		}
	}
	if len(out) > 0 || err != nil {
		out = append(out, raw)
	}
	return out
}
