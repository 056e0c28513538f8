package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
)

// postgresDSN is the driver DSN for a PostgreSQL database_url: a postgres://
// URL with one host as it is, a URL with a host list converted to the
// keyword form (hostListDSN), or a libpq keyword DSN as it is. ok is false
// when raw is none of these.
func postgresDSN(raw string) (dsn string, ok bool, err error) {
	if strings.HasPrefix(raw, "postgres://") || strings.HasPrefix(raw, "postgresql://") {
		if dsn, isList, err := hostListDSN(raw); isList {
			return dsn, true, err
		}
		// Checked here so the driver never reports a parse error: its
		// message would quote the whole URL, password included.
		if _, err := url.Parse(raw); err != nil {
			return "", true, errNoParse
		}
		return raw, true, nil
	}
	if strings.Contains(raw, "://") || strings.HasPrefix(raw, "sqlite:") {
		return "", false, nil
	}
	kws := splitKeywordDSN(raw)
	if len(kws) == 0 || slices.ContainsFunc(kws, func(kv keyword) bool { return kv.key == "" }) {
		return "", false, nil
	}
	return raw, true, nil
}

var errNoParse = errors.New("the postgres URL does not parse (it is not shown: it may hold a password); percent-encode special characters in the user and password, e.g. @ as %40")

// hostListDSN converts a postgres:// URL naming several hosts
// ("postgres://u@h1:6001,h2:6002/db?target_session_attrs=read-write") to
// the keyword DSN "host=h1,h2 port=6001,6002 …". lib/pq parses such a URL
// wrong: it keeps each host's ":port" in the host name and adds the default
// port ("h1:6001:5432"), while its keyword form takes host and port lists.
// isList is false when raw names one host (or none); such URLs go to the
// driver unchanged.
func hostListDSN(raw string) (dsn string, isList bool, err error) {
	a := splitAuthority(raw)
	if (a.scheme != "postgres" && a.scheme != "postgresql") || !strings.Contains(a.hosts, ",") {
		return "", false, nil
	}
	// The rest of the URL is parsed with a stand-in host, so userinfo, path
	// and query are decoded as in any URL.
	u, err := url.Parse(a.scheme + "://" + a.userinfo + "@host" + a.tail)
	if a.userinfo == "" {
		u, err = url.Parse(a.scheme + "://host" + a.tail)
	}
	if err != nil {
		return "", true, errNoParse
	}
	var names, ports []string
	for _, h := range strings.Split(a.hosts, ",") {
		name, port := h, ""
		if strings.ContainsAny(h, "[:") {
			if name, port, err = net.SplitHostPort(h); err != nil {
				if !strings.HasPrefix(h, "[") || !strings.HasSuffix(h, "]") {
					return "", true, fmt.Errorf("the postgres URL's host %q is neither host nor host:port", h)
				}
				name, port = strings.Trim(h, "[]"), ""
			}
		}
		if name == "" {
			return "", true, errors.New("the postgres URL's host list has an empty host")
		}
		names, ports = append(names, name), append(ports, port)
	}
	var kv []string
	add := func(k, v string) {
		if v != "" {
			kv = append(kv, k+"="+quoteKeyword(v))
		}
	}
	add("host", strings.Join(names, ","))
	if slices.ContainsFunc(ports, func(p string) bool { return p != "" }) {
		add("port", strings.Join(ports, ",")) // an empty item is the default port
	}
	if u.User != nil {
		add("user", u.User.Username())
		pw, _ := u.User.Password()
		add("password", pw)
	}
	add("dbname", strings.TrimPrefix(u.Path, "/"))
	q := u.Query()
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if strings.Trim(k, "_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") != "" {
			return "", true, fmt.Errorf("the postgres URL's parameter %q is not a connection keyword", k)
		}
		add(k, q.Get(k))
	}
	return strings.Join(kv, " "), true, nil
}

// authority is a URL split around its hosts, without parsing them.
type authority struct{ scheme, userinfo, hosts, tail string }

func splitAuthority(raw string) authority {
	scheme, rest, _ := strings.Cut(raw, "://")
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	a := authority{scheme: scheme, hosts: rest[:end], tail: rest[end:]}
	if at := strings.LastIndex(a.hosts, "@"); at >= 0 {
		a.userinfo, a.hosts = a.hosts[:at], a.hosts[at+1:]
	}
	return a
}

// quoteKeyword quotes a keyword DSN value when it needs it.
func quoteKeyword(v string) string {
	if !strings.ContainsAny(v, ` '\`+"\t\n\r") {
		return v
	}
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}
