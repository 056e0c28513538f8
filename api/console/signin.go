package console

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
)

type signinPage struct {
	*view
	Next    string
	Message string
}

// localPath keeps a redirect target on this site: an absolute path, not
// "//host" nor "/\host" (which browsers read as another host).
func localPath(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, `/\`) ||
		strings.ContainsAny(next, "\r\n\t") {
		return "/"
	}
	return next
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
	if err != nil {
		status, msg := http.StatusUnauthorized, err.Error()
		var ae *AuthError
		if errors.As(err, &ae) {
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
