package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// The proxy section (issue 16): what the HTTP proxy adds to a local read on
// a replica, and what forwarding a write from a replica's proxy to the
// primary's proxy adds, each next to the same application called directly
// in the same run.

const (
	proxyDB     = "proxy.db"
	proxySchema = "CREATE TABLE items (id INTEGER PRIMARY KEY, v TEXT)"
	proxySeed   = "seed" // the value of item 1, which every read fetches
	// The comparison runs proxyRounds rounds; each round runs a block of
	// requests on every path in turn, so the shared machine's noise falls
	// on every path alike.
	proxyRounds     = 10
	proxyReadBlock  = 200 // reads per path per round
	proxyWriteBlock = 60  // writes per path per round
	proxyWarmup     = 20  // untimed requests per path before the rounds
	proxyTimeout    = 3 * time.Minute
	proxyReqTimeout = 10 * time.Second
)

// reqRun is the requests of one path of a comparison: the latency of each
// (sorted) and the time spent in them.
type reqRun struct {
	lat     []time.Duration
	elapsed time.Duration
}

// rate returns requests per second of one sequential client.
func (r reqRun) rate() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(len(r.lat)) / r.elapsed.Seconds()
}

// pct returns the p-th percentile latency.
func (r reqRun) pct(p float64) time.Duration { return percentile(r.lat, p) }

// proxyResult holds the proxy section's figures.
type proxyResult struct {
	readDirect, readProxied                 reqRun // GET item 1: replica's app directly, through the replica's proxy
	writeDirect, writeLocal, writeForwarded reqRun // POST: primary's app directly, primary's proxy, replica's proxy
	base, txid, committed                   uint64 // primary's TXID of proxy.db before the writes and after; writes sent
	readYourWrite                           string // the GET on the replica with the last write's cookie
}

// proxySection runs the measurements against a primary and a replica, each
// with its proxy in front of its own benchApp.
type proxySection struct {
	primary, replica *daemon
	papp, rapp       *benchApp
	pproxy, rproxy   string // base URLs of the proxies
	client           *http.Client
	committed        uint64
}

// runProxySection runs the proxy section if it is selected.
func runProxySection(ctx context.Context, opts options, w *workDir, progress io.Writer) (*proxyResult, error) {
	if !opts.runs(sectionProxy) {
		return nil, nil
	}
	fmt.Fprintf(progress, "==> HTTP proxy: a primary and a replica, each proxy in front of an app in this process\n")
	res, err := runProxy(ctx, opts.litefs, w, progress)
	if err != nil {
		return nil, fmt.Errorf("proxy section: %w", err)
	}
	return &res, nil
}

// runProxy starts the nodes and apps, measures, checks what litefs
// recorded, and stops everything on every path out, within proxyTimeout.
func runProxy(ctx context.Context, bin string, w *workDir, progress io.Writer) (res proxyResult, err error) {
	ctx, cancel := context.WithTimeout(ctx, proxyTimeout)
	defer cancel()
	s := &proxySection{client: &http.Client{
		Transport: &http.Transport{MaxIdleConnsPerHost: 4, DisableCompression: true},
		Timeout:   proxyReqTimeout,
	}}
	defer s.client.CloseIdleConnections()
	began := time.Now()
	defer func() { err = errors.Join(err, s.stop()) }()
	if err := s.start(ctx, bin, w); err != nil {
		return res, err
	}
	stopWatchdog := watchdog(ctx, progress, s.primary, s.replica)
	defer stopWatchdog()
	fmt.Fprintf(progress, "    %-45s %s\n", "nodes, proxies and apps ready", time.Since(began).Round(time.Millisecond))
	if res.base, err = readTXID(s.primary.mnt, proxyDB); err != nil {
		return res, err
	}
	if err := s.measure(ctx, &res, progress); err != nil {
		return res, err
	}
	if res.readYourWrite, err = s.readYourWrite(ctx); err != nil {
		return res, err
	}
	if res.txid, err = readTXID(s.primary.mnt, proxyDB); err != nil {
		return res, err
	}
	res.committed = s.committed
	if res.txid-res.base != s.committed {
		return res, fmt.Errorf("%s went from TXID %d to %d on the primary, but %d writes were answered 201",
			proxyDB, res.base, res.txid, s.committed)
	}
	return res, errors.Join(s.primary.check(), s.replica.check())
}

// measure warms every path up, then runs the interleaved read and write
// comparisons and logs each figure.
func (s *proxySection) measure(ctx context.Context, res *proxyResult, progress io.Writer) error {
	reads := []func(context.Context) error{s.get(s.rapp.url()), s.get(s.rproxy)}
	writes := []func(context.Context) error{
		s.post(s.papp.url(), false), s.post(s.pproxy, true), s.post(s.rproxy, true),
	}
	if _, err := interleave(ctx, 1, proxyWarmup, slices.Concat(reads, writes)); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	runs, err := interleave(ctx, proxyRounds, proxyReadBlock, reads)
	if err != nil {
		return fmt.Errorf("reads: %w", err)
	}
	res.readDirect, res.readProxied = runs[0], runs[1]
	if runs, err = interleave(ctx, proxyRounds, proxyWriteBlock, writes); err != nil {
		return fmt.Errorf("writes: %w", err)
	}
	res.writeDirect, res.writeLocal, res.writeForwarded = runs[0], runs[1], runs[2]
	for _, l := range []struct {
		name string
		r    reqRun
	}{
		{"GET on the replica's app, direct", res.readDirect},
		{"GET through the replica's proxy", res.readProxied},
		{"POST on the primary's app, direct", res.writeDirect},
		{"POST through the primary's proxy", res.writeLocal},
		{"POST on the replica's proxy, forwarded", res.writeForwarded},
	} {
		fmt.Fprintf(progress, "    %-45s p50 %s, p99 %s, %.0f req/s (%d requests)\n",
			l.name, formatMS3(l.r.pct(50)), formatMS3(l.r.pct(99)), l.r.rate(), len(l.r.lat))
	}
	return nil
}

// interleave runs rounds rounds of block requests on each call in turn and
// returns each call's latencies (sorted) and the time spent in its blocks.
// It stops at the first error, naming the call and the request.
func interleave(ctx context.Context, rounds, block int, calls []func(context.Context) error) ([]reqRun, error) {
	runs := make([]reqRun, len(calls))
	for round := range rounds {
		for i, call := range calls {
			blockStart := time.Now()
			for j := range block {
				t0 := time.Now()
				if err := call(ctx); err != nil {
					return nil, fmt.Errorf("path %d, round %d, request %d: %w", i, round, j, err)
				}
				runs[i].lat = append(runs[i].lat, time.Since(t0))
			}
			runs[i].elapsed += time.Since(blockStart)
		}
	}
	for i := range runs {
		slices.Sort(runs[i].lat)
	}
	return runs, nil
}

// get returns a call that reads item 1 at base and checks the answer.
func (s *proxySection) get(base string) func(context.Context) error {
	url := base + "/items/1"
	return func(ctx context.Context) error {
		code, body, _, err := s.do(ctx, http.MethodGet, url, "", nil)
		if err != nil {
			return err
		}
		if code != http.StatusOK || !strings.HasPrefix(body, proxySeed+" node=replica") {
			return fmt.Errorf("GET %s: %d %q, want 200 %q from the replica", url, code, body, proxySeed)
		}
		return nil
	}
}

// post returns a call that inserts a row through base and checks that the
// primary's app stored it and, through a proxy, that the TXID cookie came
// back.
func (s *proxySection) post(base string, proxied bool) func(context.Context) error {
	url := base + "/items"
	return func(ctx context.Context) error {
		code, body, cookies, err := s.do(ctx, http.MethodPost, url, "bench", nil)
		if err != nil {
			return err
		}
		if code != http.StatusCreated || !strings.HasSuffix(body, " node=primary") {
			return fmt.Errorf("POST %s: %d %q, want 201 from the primary", url, code, body)
		}
		s.committed++
		if proxied && !hasCookie(cookies, "__txid") {
			return fmt.Errorf("POST %s: no __txid cookie in the answer", url)
		}
		return nil
	}
}

// readYourWrite POSTs once more on the replica's proxy and GETs the new row
// there with the answer's cookies: it must be served by the replica, with
// the value, whatever replication's pace.
func (s *proxySection) readYourWrite(ctx context.Context) (string, error) {
	code, body, cookies, err := s.do(ctx, http.MethodPost, s.rproxy+"/items", "read-your-write", nil)
	if err != nil {
		return "", err
	}
	var id int
	if _, scanErr := fmt.Sscanf(body, "id=%d node=primary", &id); code != http.StatusCreated || scanErr != nil {
		return "", fmt.Errorf("POST on the replica's proxy: %d %q, want 201 id=<n> node=primary", code, body)
	}
	s.committed++
	url := fmt.Sprintf("%s/items/%d", s.rproxy, id)
	code, got, _, err := s.do(ctx, http.MethodGet, url, "", cookies)
	if err != nil {
		return "", err
	}
	if want := "read-your-write node=replica"; code != http.StatusOK || got != want {
		return "", fmt.Errorf("GET %s with the write's cookie: %d %q, want 200 %q (a stale read)", url, code, got, want)
	}
	return fmt.Sprintf("POST on the replica's proxy -> %q; GET %s with its cookie -> %q", body, "/items/"+fmt.Sprint(id), got), nil
}

// do sends one request and returns the status, body and cookies set.
func (s *proxySection) do(ctx context.Context, method, url, body string, cookies []*http.Cookie) (int, string, []*http.Cookie, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, "", nil, fmt.Errorf("%s %s: %w", method, url, err)
	}
	for _, c := range cookies {
		req.AddCookie(c)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, "", nil, fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, "", nil, fmt.Errorf("%s %s: read body: %w", method, url, err)
	}
	return resp.StatusCode, string(data), resp.Cookies(), nil
}

// hasCookie reports whether cookies holds one called name.
func hasCookie(cookies []*http.Cookie, name string) bool {
	return slices.ContainsFunc(cookies, func(c *http.Cookie) bool { return c.Name == name })
}

// openReplicaDB opens proxy.db on the replica's mount for its app.
func openReplicaDB(mnt string) (*sql.DB, error) {
	path := filepath.Join(mnt, proxyDB)
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=5000")
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return db, nil
}
