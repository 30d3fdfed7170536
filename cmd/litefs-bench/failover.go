package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// The failover section (issue 4): three candidate nodes share a Consul
// lease; a writer inserts into whichever node accepts. It measures how long
// the cluster stays unwritable when the primary is SIGKILLed, and the write
// gap of a clean handoff (SIGTERM) and of POST /promote.

const (
	failoverDB     = "failover.db"
	failoverNodes  = 3
	failoverRounds = 5
	consulNodeName = "litefs-bench"
	consulKey      = "litefs/primary"
	// The lease settings written to litefs.yml (the defaults, spelled out
	// so that the report shows what was measured).
	failoverSessionTTL = 10 * time.Second
	failoverLockDelay  = time.Second
	// failoverTimeout bounds the whole section.
	failoverTimeout = 5 * time.Minute
	// settleTimeout bounds the wait for one primary and caught-up replicas.
	settleTimeout = 30 * time.Second
	// roundTimeout bounds the wait for writes on the new primary.
	roundTimeout = 30 * time.Second
	// warmAcks is how many inserts the primary acknowledges before a round
	// disrupts it, and how many the new primary must acknowledge after.
	warmAcks = 20
)

// failNode is one candidate of the failover cluster. Its directories, port
// and name stay the same across restarts; each run logs to its own file.
type failNode struct {
	name string
	dirs mountDirs
	port int
	runs int
	d    *daemon // the current run
}

// url returns the node's HTTP API address (its advertise-url).
func (n *failNode) url() string { return fmt.Sprintf("http://127.0.0.1:%d", n.port) }

// yaml returns the node's litefs.yml: a candidate of the Consul lease.
func (n *failNode) yaml(consulURL string) string {
	return fmt.Sprintf(`# written by litefs-bench
exit-on-error: false
data:
  dir: %q
fuse:
  dir: %q
http:
  addr: "127.0.0.1:%d"
lease:
  type: consul
  hostname: %q
  advertise-url: %q
  candidate: true
  consul:
    url: %q
    key: %q
    ttl: %q
    lock-delay: %q
log:
  timestamp: true
`, n.dirs.data, n.dirs.mnt, n.port, n.name, n.url(), consulURL, consulKey, failoverSessionTTL, failoverLockDelay)
}

// failCluster is the section's Consul agent and candidate nodes.
type failCluster struct {
	bin     string
	dir     string
	consul  *consulAgent
	nodes   []*failNode
	primary int   // index of the primary at the last settle
	nextID  int64 // last row id handed to a writer
}

// newCluster creates the nodes' directories under dir and picks their ports.
func newCluster(bin, dir string, agent *consulAgent) (*failCluster, error) {
	c := &failCluster{bin: bin, dir: dir, consul: agent}
	for i := 1; i <= failoverNodes; i++ {
		n := &failNode{name: fmt.Sprintf("n%d", i), dirs: namedDirs(dir, fmt.Sprintf("n%d", i))}
		for _, d := range []string{n.dirs.data, n.dirs.mnt} {
			if err := os.Mkdir(d, 0o755); err != nil {
				return nil, fmt.Errorf("create %s: %w", d, err)
			}
		}
		var err error
		if n.port, err = freePort(); err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, n)
	}
	return c, nil
}

// start launches node n (again) on its directories and waits for its
// mount. On failure the daemon is already stopped.
func (c *failCluster) start(ctx context.Context, n *failNode) error {
	n.runs++
	n.dirs.log = filepath.Join(c.dir, fmt.Sprintf("%s-%d.log", n.name, n.runs))
	d, err := launch(c.bin, n.dirs, n.yaml(c.consul.URL), nil)
	if err != nil {
		return fmt.Errorf("%s: %w", n.name, err)
	}
	d.url = n.url()
	n.d = d
	if err := d.waitReady(ctx); err != nil {
		return errors.Join(fmt.Errorf("%s: %w", n.name, err), d.stop())
	}
	return nil
}

// stopAll stops every node, replicas first (a stopping primary then has no
// one to hand off to and releases the lease), then the agent.
func (c *failCluster) stopAll() error {
	var errs []error
	order := make([]*failNode, 0, len(c.nodes))
	for i, n := range c.nodes {
		if i != c.primary {
			order = append(order, n)
		}
	}
	order = append(order, c.nodes[c.primary])
	for _, n := range order {
		if n.d != nil {
			if err := n.d.stop(); err != nil {
				errs = append(errs, fmt.Errorf("stop %s: %w", n.name, err))
			}
		}
	}
	if err := c.consul.stop(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// nodeInfo is the part of GET /info the section reads.
type nodeInfo struct {
	Role      string `json:"role"`
	Connected bool   `json:"connected"`
	LagMillis int64  `json:"lagMillis"`
}

// info reads GET /info of n within one second.
func (n *failNode) info(ctx context.Context) (nodeInfo, error) {
	var info nodeInfo
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.url()+"/info", nil)
	if err != nil {
		return info, fmt.Errorf("GET /info of %s: %w", n.name, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return info, fmt.Errorf("GET /info of %s: %w", n.name, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
		return info, fmt.Errorf("decode /info of %s: %w", n.name, err)
	}
	return info, nil
}

// roles returns the index of the only primary when every node answers,
// exactly one is primary and the others are connected, caught-up replicas;
// otherwise -1 and what is not so yet.
func (c *failCluster) roles(ctx context.Context) (int, error) {
	primary := -1
	for i, n := range c.nodes {
		info, err := n.info(ctx)
		switch {
		case err != nil:
			return -1, err
		case info.Role == "primary" && primary >= 0:
			return -1, fmt.Errorf("%s and %s both report role primary", c.nodes[primary].name, n.name)
		case info.Role == "primary":
			primary = i
		case info.Role != "replica" || !info.Connected || info.LagMillis >= notSyncedLag:
			return -1, fmt.Errorf("%s: role %q, connected %t, lag %d ms", n.name, info.Role, info.Connected, info.LagMillis)
		}
	}
	if primary < 0 {
		return -1, errors.New("no node reports role primary")
	}
	return primary, nil
}

// settle waits until the cluster is quiet: one primary, the others
// connected replicas and, with db set, at the primary's position of it.
func (c *failCluster) settle(ctx context.Context, db bool) error {
	ctx, cancel := context.WithTimeout(ctx, settleTimeout)
	defer cancel()
	for {
		p, err := c.roles(ctx)
		if err == nil {
			c.primary = p
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster not settled within %s: %w", settleTimeout, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	if !db {
		return nil
	}
	p := c.nodes[c.primary]
	for i, n := range c.nodes {
		if i == c.primary {
			continue
		}
		if err := n.d.waitSamePos(ctx, p.d, failoverDB, 5*time.Millisecond); err != nil {
			return fmt.Errorf("%s catching up with %s: %w", n.name, p.name, err)
		}
	}
	return nil
}

// startCluster starts the first node, waits until it is primary, starts
// the others as its replicas and creates table t of failoverDB.
func (c *failCluster) startCluster(ctx context.Context) error {
	for i, n := range c.nodes {
		if err := c.start(ctx, n); err != nil {
			return err
		}
		if i == 0 {
			if err := c.waitRole(ctx, n, "primary"); err != nil {
				return err
			}
		}
	}
	if err := c.settle(ctx, false); err != nil {
		return err
	}
	path := filepath.Join(c.nodes[c.primary].dirs.mnt, failoverDB)
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=5000&_journal_mode=DELETE")
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	_, err = db.ExecContext(ctx, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
	if err = errors.Join(err, db.Close()); err != nil {
		return fmt.Errorf("create table in %s: %w", path, err)
	}
	return c.settle(ctx, true)
}

// waitRole waits until n reports role.
func (c *failCluster) waitRole(ctx context.Context, n *failNode, role string) error {
	return n.d.poll(ctx, settleTimeout, 20*time.Millisecond, func() (bool, error) {
		info, err := n.info(ctx)
		return err == nil && info.Role == role, nil
	})
}

// failoverSection runs the failover section, if selected, in w's failover/
// directory; it returns nil, nil when it is not. A missing consul binary
// does not stop the other sections: it is returned in the result's err,
// which the table reports and the benchmark fails on at the end.
func failoverSection(ctx context.Context, opts options, w *workDir, progress io.Writer) (*failoverResult, error) {
	if !opts.runs(sectionFailover) {
		return nil, nil
	}
	fmt.Fprintf(progress, "==> failover: Consul lease, %d candidates, %d rounds each\n", failoverNodes, failoverRounds)
	res, err := runFailover(ctx, opts, filepath.Join(w.root, "failover"), progress)
	if err != nil && !errors.Is(err, errNoConsul) {
		return nil, err
	}
	res.err = err
	return &res, nil
}

// runFailover measures crash failover, clean handoff and POST /promote,
// failoverRounds each, on a cluster in dir. It stops every node and the
// agent on every path out; on failure it shows the end of their logs.
func runFailover(ctx context.Context, opts options, dir string, progress io.Writer) (res failoverResult, err error) {
	ctx, cancel := context.WithTimeout(ctx, failoverTimeout)
	defer cancel()
	if err := os.Mkdir(dir, 0o755); err != nil {
		return res, fmt.Errorf("create %s: %w", dir, err)
	}
	began := time.Now()
	agent, err := startConsul(dir)
	if err != nil {
		return res, err
	}
	c, err := newCluster(opts.litefs, dir, agent)
	if err != nil {
		return res, errors.Join(err, agent.stop())
	}
	defer func() {
		if err != nil {
			c.showLogs(progress)
		}
		err = errors.Join(err, c.stopAll())
	}()
	if err := c.startCluster(ctx); err != nil {
		return res, err
	}
	fmt.Fprintf(progress, "    %-45s %s (Consul agent %s, nodes in %s)\n", "cluster started",
		time.Since(began).Round(time.Millisecond), agent.URL, dir)
	for _, k := range failoverKinds {
		for i := range failoverRounds {
			if err := c.round(ctx, k, i, &res, progress); err != nil {
				return res, fmt.Errorf("failover %s, round %d: %w", k, i+1, err)
			}
		}
	}
	return res, c.countMissing(ctx, &res)
}

// showLogs writes the end of each node's latest log and of the agent's
// output to progress.
func (c *failCluster) showLogs(progress io.Writer) {
	for _, n := range c.nodes {
		if tail := logTail(n.dirs.log, 30); tail != "" {
			fmt.Fprintf(progress, "--- last lines of the litefs log (%s) ---\n%s\n---\n", n.dirs.log, tail)
		}
	}
	if tail := logTail(c.consul.log, 30); tail != "" {
		fmt.Fprintf(progress, "--- last lines of the consul agent output (%s) ---\n%s\n---\n", c.consul.log, tail)
	}
}

// round moves the primary role away once by kind while the writer runs,
// records the figure, and brings the cluster back to quiet: a stopped node
// is restarted on its directories and rejoins as a replica.
func (c *failCluster) round(ctx context.Context, k failoverKind, i int, res *failoverResult, progress io.Writer) error {
	old := c.primary
	p := c.nodes[old]
	w := c.startWriter(old)
	t0, note, err := c.disrupt(ctx, k, w, old, res)
	acks, werr := w.close()
	if err = errors.Join(err, werr); err != nil {
		return err
	}
	fig, to, err := k.figure(acks, old, t0)
	if err != nil {
		return fmt.Errorf("after %s: %w", note, err)
	}
	res.rounds[k] = append(res.rounds[k], fig)
	for _, a := range acks {
		res.acked[k] = append(res.acked[k], ackedRow{id: a.id, round: i + 1, node: c.nodes[a.node].name, after: a.at.Sub(t0), note: note})
	}
	line := fmt.Sprintf("%s %d/%d: %s; writes moved %s -> %s, %s %s", k, i+1, failoverRounds, note,
		p.name, c.nodes[to].name, k.measure(), k.format(fig))
	began := time.Now()
	if k != kindPromote {
		if err := p.d.stop(); err != nil {
			return fmt.Errorf("stop %s: %w", p.name, err)
		}
		if err := c.start(ctx, p); err != nil {
			return err
		}
		line += fmt.Sprintf("; %s restarted", p.name)
	}
	if err := c.settle(ctx, true); err != nil {
		return err
	}
	fmt.Fprintf(progress, "    %s, settled in %s\n", line, time.Since(began).Round(time.Millisecond))
	return nil
}

// disrupt waits until the primary acknowledged warmAcks inserts, moves the
// role away from it by kind and waits until other nodes acknowledged
// warmAcks inserts. It returns when the disruption began and what it was.
func (c *failCluster) disrupt(ctx context.Context, k failoverKind, w *failWriter, old int, res *failoverResult) (time.Time, string, error) {
	p := c.nodes[old]
	if err := w.waitAcks(ctx, func(a failAck) bool { return a.node == old }); err != nil {
		return time.Time{}, "", fmt.Errorf("writes on the primary %s: %w", p.name, err)
	}
	t0 := time.Now()
	var note string
	switch k {
	case kindCrash:
		p.d.kill()
		note = "SIGKILL " + p.name
	case kindHandoff:
		_ = syscall.Kill(-p.d.cmd.Process.Pid, syscall.SIGTERM)
		note = "SIGTERM " + p.name
	case kindPromote:
		target := c.nodes[(old+1)%len(c.nodes)]
		if err := target.promote(ctx); err != nil {
			return t0, "", err
		}
		took := time.Since(t0)
		res.promoteCalls = append(res.promoteCalls, took)
		note = fmt.Sprintf("POST /promote to %s: 200 after %s", target.name, formatMS(took))
	}
	err := w.waitAcks(ctx, func(a failAck) bool { return a.node != old && a.at.After(t0) })
	if err != nil {
		return t0, note, fmt.Errorf("writes after %s: %w", note, err)
	}
	return t0, note, nil
}

// promote sends POST /promote to n and fails unless it answers 200.
func (n *failNode) promote(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, roundTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.url()+"/promote", nil)
	if err != nil {
		return fmt.Errorf("POST /promote to %s: %w", n.name, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("POST /promote to %s: %w", n.name, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST /promote to %s: %s: %s", n.name, resp.Status, body)
	}
	return nil
}

// failAck is one acknowledged insert: the node that took it, the row id and
// when the INSERT returned.
type failAck struct {
	node int
	id   int64
	at   time.Time
}

// failWriter inserts rows one at a time into whichever node accepts them, as
// an application that follows the primary would: after a refusal it pauses
// 1 ms and tries the next node; a node whose daemon exited is skipped. It
// uses one connection per node (busy_timeout 20 ms, journal mode DELETE).
type failWriter struct {
	daemons []*daemon // the nodes' daemons when the writer started
	paths   []string
	next    *int64 // last row id used; owned by the loop while it runs

	mu      sync.Mutex
	acks    []failAck
	closing sync.WaitGroup // connections being closed
	stop    chan struct{}
	done    chan struct{}
}

// startWriter starts a writer on the cluster's nodes, beginning with first.
func (c *failCluster) startWriter(first int) *failWriter {
	w := &failWriter{next: &c.nextID, stop: make(chan struct{}), done: make(chan struct{})}
	for _, n := range c.nodes {
		w.daemons = append(w.daemons, n.d)
		w.paths = append(w.paths, filepath.Join(n.dirs.mnt, failoverDB))
	}
	go w.loop(first)
	return w
}

// loop inserts until stop is closed, then closes its connections.
func (w *failWriter) loop(cur int) {
	defer close(w.done)
	dbs := make([]*sql.DB, len(w.daemons))
	defer func() {
		for i := range dbs {
			w.drop(dbs, i)
		}
	}()
	for {
		select {
		case <-w.stop:
			return
		default:
		}
		select {
		case <-w.daemons[cur].done:
			w.drop(dbs, cur) // its mount is dead: release it for the unmount
			cur = (cur + 1) % len(dbs)
			continue
		default:
		}
		*w.next++
		id := *w.next
		err := w.insert(dbs, cur, id)
		if err != nil {
			cur = (cur + 1) % len(dbs)
			time.Sleep(time.Millisecond)
			continue
		}
		w.mu.Lock()
		w.acks = append(w.acks, failAck{node: cur, id: id, at: time.Now()})
		w.mu.Unlock()
	}
}

// insert inserts row id through node i's connection, opening it first.
func (w *failWriter) insert(dbs []*sql.DB, i int, id int64) error {
	if dbs[i] == nil {
		db, err := sql.Open("sqlite3", "file:"+w.paths[i]+"?_busy_timeout=20&_journal_mode=DELETE")
		if err != nil {
			return fmt.Errorf("open %s: %w", w.paths[i], err)
		}
		db.SetMaxOpenConns(1)
		dbs[i] = db
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := dbs[i].ExecContext(ctx, "INSERT INTO t (id, v) VALUES (?, 'x')", id); err != nil {
		return fmt.Errorf("insert: %w", err)
	}
	return nil
}

// drop closes node i's connection, if open, without waiting for it: a
// close on a dead mount must not stall the loop. close waits for it.
func (w *failWriter) drop(dbs []*sql.DB, i int) {
	if db := dbs[i]; db != nil {
		dbs[i] = nil
		w.closing.Go(func() { _ = db.Close() })
	}
}

// waitAcks waits until warmAcks acknowledged inserts match.
func (w *failWriter) waitAcks(ctx context.Context, match func(failAck) bool) error {
	ctx, cancel := context.WithTimeout(ctx, roundTimeout)
	defer cancel()
	for {
		n := 0
		w.mu.Lock()
		for _, a := range w.acks {
			if match(a) {
				n++
			}
		}
		w.mu.Unlock()
		if n >= warmAcks {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d inserts acknowledged: %w", n, warmAcks, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// close stops the writer, waits (bounded) until its connections are
// closed and returns the acknowledged inserts.
func (w *failWriter) close() ([]failAck, error) {
	close(w.stop)
	closed := make(chan struct{})
	go func() {
		<-w.done
		w.closing.Wait()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(stopTimeout):
		return nil, fmt.Errorf("writer still blocked in a mount %s after it was stopped", stopTimeout)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]failAck(nil), w.acks...), nil
}
