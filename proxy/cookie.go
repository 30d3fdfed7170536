package proxy

import (
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/superfly/ltx"
)

// Cookies of read-your-writes (docs/proxy.md).
const (
	// TXIDCookie holds the TXID of proxy.db (16 hex digits), as LiteFS
	// wrote it.
	TXIDCookie = "__txid"
	// TXIDsCookie holds the TXIDs of the other databases a client wrote, as
	// URL query pairs: name=<16 hex>&name2=<16 hex> (names query-escaped).
	TXIDsCookie = "__txids"
	// maxCookieDBs bounds the databases one __txids cookie names.
	maxCookieDBs = 32
	// DefaultCookieTTL is how long a TXID cookie lives.
	DefaultCookieTTL = 5 * time.Minute
)

// Targets maps a database name to the TXID a read must wait for.
type Targets map[string]ltx.TXID

// ParseTargets reads the TXID cookies of r: __txid names defaultDB and
// __txids the others. A malformed cookie is an error naming it.
func ParseTargets(r *http.Request, defaultDB string) (Targets, error) {
	t := Targets{}
	if c, err := r.Cookie(TXIDCookie); err == nil {
		id, err := ltx.ParseTXID(c.Value)
		if err != nil {
			return nil, fmt.Errorf("cookie %s=%q: want 16 hex digits", TXIDCookie, c.Value)
		}
		t[defaultDB] = id
	}
	c, err := r.Cookie(TXIDsCookie)
	if err != nil {
		return t, nil
	}
	vals, err := url.ParseQuery(c.Value)
	if err != nil || len(vals) > maxCookieDBs {
		return nil, fmt.Errorf("cookie %s=%q: want at most %d name=<16 hex> pairs joined by &", TXIDsCookie, c.Value, maxCookieDBs)
	}
	for name, v := range vals {
		id, err := ltx.ParseTXID(v[len(v)-1])
		if err != nil || name == "" {
			return nil, fmt.Errorf("cookie %s: database %q: want 16 hex digits", TXIDsCookie, name)
		}
		if id > t[name] {
			t[name] = id
		}
	}
	return t, nil
}

// clearCookies adds Set-Cookie headers deleting both TXID cookies: after a
// 504 the TXIDs may never arrive (a write lost in a failover), and every
// read would wait again until the cookies expired.
func clearCookies(h http.Header) {
	for _, name := range []string{TXIDCookie, TXIDsCookie} {
		c := &http.Cookie{Name: name, Value: "", Path: "/", HttpOnly: true, MaxAge: -1, SameSite: http.SameSiteLaxMode}
		h.Add("Set-Cookie", c.String())
	}
}

// merge raises t to the TXIDs of u.
func (t Targets) merge(u Targets) {
	for name, id := range u {
		if id > t[name] {
			t[name] = id
		}
	}
}

// setCookies adds the Set-Cookie headers carrying t to h: __txid for
// defaultDB and __txids for the others (at most maxCookieDBs, the highest
// names dropped first).
func (t Targets) setCookies(h http.Header, defaultDB string, ttl time.Duration) {
	mk := func(name, value string) {
		c := &http.Cookie{Name: name, Value: value, Path: "/", HttpOnly: true,
			MaxAge: int(ttl.Seconds()), SameSite: http.SameSiteLaxMode}
		h.Add("Set-Cookie", c.String())
	}
	if id, ok := t[defaultDB]; ok {
		mk(TXIDCookie, id.String())
	}
	var names []string
	for name := range t {
		if name != defaultDB {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return
	}
	sort.Strings(names)
	if len(names) > maxCookieDBs {
		names = names[:maxCookieDBs]
	}
	pairs := make([]string, 0, len(names))
	for _, name := range names {
		pairs = append(pairs, url.QueryEscape(name)+"="+t[name].String())
	}
	mk(TXIDsCookie, strings.Join(pairs, "&"))
}
