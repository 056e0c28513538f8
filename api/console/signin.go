package console

import (
	"errors"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"

	"github.com/tapd-mirror/tapd-mirror/storage"
)

type signinPage struct {
	*view
	Next    string
	Message string
}

// localPath keeps a redirect target on this site, or falls back to the
// console's home. Browsers read "//host", "/\host" (also once cleaned:
// "/./\host"), tabs and newlines dropped from "/\t/host", and more as
// another host, so only a plain path is kept: no backslash in any
// encoding, printable ASCII once decoded (no controls, spaces or look-alike
// Unicode slashes), no scheme or host. What is returned is that path
// cleaned and re-encoded, with its query re-encoded, so that nothing
// http.Redirect or the browser does to it later can change its meaning.
func localPath(next string) string {
	const home = "/"
	u, err := url.Parse(next) // refuses ASCII control characters
	if err != nil || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") ||
		u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return home
	}
	for p := u.EscapedPath(); ; { // "%5C", "%255C", …: every decoding of the path
		if strings.Contains(p, `\`) {
			return home
		}
		dec, err := url.PathUnescape(p)
		if err != nil {
			return home
		}
		if dec == p {
			break
		}
		p = dec
	}
	for _, r := range u.Path {
		if r <= ' ' || r > '~' {
			return home
		}
	}
	clean := path.Clean(u.Path)
	if strings.HasSuffix(u.Path, "/") && clean != "/" {
		clean += "/"
	}
	out := (&url.URL{Path: clean, RawQuery: u.Query().Encode()}).String()
	if strings.HasPrefix(out, "//") { // Clean leaves none; kept as the rule itself
		return home
	}
	return out
}

func (c *Console) signinForm(w http.ResponseWriter, r *http.Request, v *view) {
	p := signinPage{view: v, Next: localPath(r.URL.Query().Get("next"))}
	if v.Open {
		p.Message = v.T("s.open")
	}
	c.render(w, r, http.StatusOK, "signin", p)
}

// signin trades a token for a session cookie. The token is checked like
// an API bearer token (throttled per address, failures logged and
// counted) and never stored: the session keeps its name and scope.
func (c *Console) signin(w http.ResponseWriter, r *http.Request, v *view) {
	next := localPath(r.PostForm.Get("next"))
	token := strings.TrimSpace(r.PostForm.Get("token"))
	name, scope, err := c.o.Auth.SignIn(r, token)
	e := storage.AccessOf(r.Context())
	if err != nil {
		status, msg := http.StatusUnauthorized, err.Error()
		var ae *AuthError
		if e != nil {
			e.Action, e.Outcome = "signin.failed", storage.AccessDenied
		}
		if errors.As(err, &ae) {
			if ae.Status == http.StatusTooManyRequests && e != nil {
				e.Action = "" // throttled: counted, not recorded, as the API does
			}
			status = ae.Status
			if ae.RetryAfter > 0 {
				w.Header().Set("Retry-After", strconv.Itoa(ae.RetryAfter))
			}
		}
		if v.Open {
			msg = v.T("s.open")
		}
		c.render(w, r, status, "signin", signinPage{view: v, Next: next, Message: msg})
		return
	}
	if v.sid != "" {
		c.sessions.delete(v.sid) // a new identity gets a new session id
	}
	if e != nil {
		e.Principal = name
		e.Params["scope"] = string(scope)
	}
	sess := c.sessions.create(name, scope)
	http.SetCookie(w, cookie(r, sessionCookie, sess.id, 0))
	c.o.Logger.InfoContext(r.Context(), "console: signed in", "token", name, "scope", scope)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (c *Console) signout(w http.ResponseWriter, r *http.Request, v *view) {
	if v.sid != "" {
		c.sessions.delete(v.sid)
		c.o.Logger.InfoContext(r.Context(), "console: signed out", "token", v.User)
	}
	http.SetCookie(w, cookie(r, sessionCookie, "", -1))
	http.Redirect(w, r, "/signin", http.StatusSeeOther)
}
