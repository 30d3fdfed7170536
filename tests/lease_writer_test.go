package tests

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// writer inserts rows without pause into whichever node accepts them,
// recording each acknowledged insert with the node and the time. A node
// that refuses is skipped for the next one. It models an application that
// follows the primary.
type writer struct {
	name string
	dsn  string // extra DSN parameters, e.g. "&_journal_mode=WAL"

	nodes []*Node

	mu     sync.Mutex
	dbs    map[*Node]*sql.DB
	events []ackEvent
	next   atomic.Int64

	stop chan struct{}
	done chan struct{}
}

// ackEvent is one acknowledged insert.
type ackEvent struct {
	id   int64
	node *Node
	at   time.Time
}

// startWriter starts inserting into table t of database name on nodes.
func startWriter(t *testing.T, name string, nodes []*Node) *writer {
	return startWriterDSN(t, name, "", nodes)
}

// startWriterDSN is startWriter with extra DSN parameters (dsn starts with &).
func startWriterDSN(t *testing.T, name, dsn string, nodes []*Node) *writer {
	w := &writer{name: name, dsn: dsn, nodes: nodes, dbs: map[*Node]*sql.DB{}, stop: make(chan struct{}), done: make(chan struct{})}
	go w.loop()
	t.Cleanup(w.close)
	return w
}

func (w *writer) db(n *Node) (*sql.DB, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if db := w.dbs[n]; db != nil {
		return db, nil
	}
	db, err := sql.Open("sqlite3", "file:"+n.DBPath(w.name)+"?_busy_timeout=20"+w.dsn)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	w.dbs[n] = db
	return db, nil
}

// forget drops the pool of n (after its daemon went away).
func (w *writer) forget(n *Node) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if db := w.dbs[n]; db != nil {
		go db.Close() // may block on a dead mount: never wait for it
		delete(w.dbs, n)
	}
}

func (w *writer) loop() {
	defer close(w.done)
	cur := 0
	for {
		select {
		case <-w.stop:
			return
		default:
		}
		n := w.nodes[cur]
		id := w.next.Add(1)
		if err := w.insert(n, id); err != nil {
			cur = (cur + 1) % len(w.nodes)
			time.Sleep(time.Millisecond)
			continue
		}
		w.mu.Lock()
		w.events = append(w.events, ackEvent{id: id, node: n, at: time.Now()})
		w.mu.Unlock()
	}
}

func (w *writer) insert(n *Node, id int64) error {
	if !n.Running() {
		return context.Canceled
	}
	db, err := w.db(n)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, "INSERT INTO t(id, v) VALUES(?, 'x')", id); err != nil {
		if ctx.Err() != nil {
			w.forget(n)
		}
		return err
	}
	return nil
}

// close stops the writer and waits for it.
func (w *writer) close() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	for n, db := range w.dbs {
		go db.Close()
		delete(w.dbs, n)
	}
}

// snapshot returns the acknowledged inserts so far.
func (w *writer) snapshot() []ackEvent {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]ackEvent(nil), w.events...)
}

// acked returns every acknowledged insert so far, for requireRows.
func (w *writer) acked() *ackLog {
	a := &ackLog{}
	for _, e := range w.snapshot() {
		a.add(e.id, e.node.Name)
	}
	return a
}

// waitAcks waits until at least k more inserts were acknowledged.
func (w *writer) waitAcks(t testing.TB, k int, limit time.Duration) {
	t.Helper()
	start := len(w.snapshot())
	deadline := time.Now().Add(limit)
	for len(w.snapshot()) < start+k {
		if time.Now().After(deadline) {
			t.Fatalf("writer: fewer than %d inserts acknowledged within %s", k, limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// switchGap returns the longest time between consecutive acknowledged
// inserts where the node changes, and the node after it.
func switchGap(events []ackEvent) (gap time.Duration, to *Node) {
	for i := 1; i < len(events); i++ {
		if events[i].node != events[i-1].node {
			if d := events[i].at.Sub(events[i-1].at); d > gap {
				gap, to = d, events[i].node
			}
		}
	}
	return gap, to
}
