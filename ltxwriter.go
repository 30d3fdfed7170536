package litefs

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/superfly/ltx"
	"golang.org/x/sys/unix"
)

// How an LTX file reaches the disk (the durability rule of SPEC section 6:
// an LTX file is durable no later than SQLite's own data for that commit).
type writeMode int

const (
	// writeAsync queues the file for a background writer. Used for WAL
	// commits: until the WAL is fsynced, checkpointed or reset, the WAL
	// itself still holds the transaction, and recovery rebuilds a missing
	// LTX file from it.
	writeAsync writeMode = iota
	// writeNow writes the file before returning, without fsync. Used at a
	// rollback journal's commit point, which deletes SQLite's only other
	// copy of the old state.
	writeNow
	// writeDurable writes and fsyncs the file before returning.
	writeDurable
)

// largeTx is the page count above which a transaction's LTX file is encoded
// straight to disk instead of into memory.
const largeTx = 1024

// ltxWriter writes queued LTX files in order in a background goroutine.
// The goroutine starts once kickBatch files wait or kickDelay after the
// first one, not for every commit: starting it per commit put a goroutine
// start and a thread wake-up (about 7 µs in a CPU profile of single-row
// inserts) on the path of every commit. Until written, a queued file is
// served from memory (lookup), and the WAL still holds its transaction.
type ltxWriter struct {
	mu       sync.Mutex
	cond     *sync.Cond
	queue    []queuedLTX
	inflight []queuedLTX // the batch being written; gone once on disk
	running  bool
	timer    *time.Timer // starts the writer kickDelay after the first queued file
	err      error       // the last attempt's failure; its file is still queued
	failed   atomic.Bool // err != nil, read without w.mu
}

const (
	kickBatch = 32                   // queued files that start the writer at once
	kickDelay = 5 * time.Millisecond // longest a queued file waits for the writer
)

type queuedLTX struct {
	dir, name string
	data      []byte
}

func newLTXWriter() *ltxWriter {
	w := &ltxWriter{}
	w.cond = sync.NewCond(&w.mu)
	return w
}

// enqueue adds a file to write; files are written in enqueue order.
func (w *ltxWriter) enqueue(q queuedLTX) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.queue = append(w.queue, q)
	switch {
	case w.running:
	case len(w.queue) >= kickBatch:
		w.startLocked()
	case w.timer == nil:
		w.timer = time.AfterFunc(kickDelay, w.kick)
	}
}

// kick starts the writer for the files the timer waited for.
func (w *ltxWriter) kick() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.timer = nil
	if !w.running && len(w.queue) > 0 {
		w.startLocked()
	}
}

// startLocked starts the writer goroutine; each start is a fresh attempt
// at the files still queued after a failure. w.mu is held.
func (w *ltxWriter) startLocked() {
	if w.timer != nil {
		w.timer.Stop()
		w.timer = nil
	}
	w.running = true
	w.setErr(nil)
	go w.run()
}

// run writes the queued files in order. At the first failure (a full disk)
// it stops: the file that failed and every later one stay queued, ahead of
// newer ones, and are tried again by the next drain or start. A queued file
// belongs to a transaction SQLite already committed, which the WAL still
// holds; dropping it would leave the position without its LTX file.
func (w *ltxWriter) run() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(w.queue) > 0 && w.err == nil {
		batch := w.queue
		w.queue, w.inflight = nil, batch
		w.mu.Unlock()
		var err error
		done := 0
		for _, q := range batch {
			if err = writeFileDirect(q.dir, q.name, q.data); err != nil {
				break
			}
			done++
		}
		w.mu.Lock()
		w.inflight = nil
		if err != nil {
			rest := batch[done:len(batch):len(batch)]
			w.queue = append(rest, w.queue...)
			w.setErr(err)
		}
	}
	w.running = false
	w.cond.Broadcast()
}

// setErr records the outcome of the last attempt. w.mu is held.
func (w *ltxWriter) setErr(err error) {
	w.err = err
	w.failed.Store(err != nil)
}

// failing reports whether the last attempt to write a queued file failed
// and that file is still waiting. It takes no lock (every WAL write asks).
func (w *ltxWriter) failing() bool { return w.failed.Load() }

// lookup returns the contents of a file that is queued or being written,
// or nil: a file not returned here is either complete on disk or absent.
func (w *ltxWriter) lookup(name string) []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, list := range [][]queuedLTX{w.inflight, w.queue} {
		for _, q := range list {
			if q.name == name {
				return q.data
			}
		}
	}
	return nil
}

// drain waits until every queued file is written and returns the error of
// the last attempt: files that failed stay queued and are tried again here.
func (w *ltxWriter) drain() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.running {
		w.cond.Wait()
	}
	if len(w.queue) > 0 {
		w.startLocked()
	}
	for w.running {
		w.cond.Wait()
	}
	return w.err
}

// ltxOut is where one LTX file is encoded: memory for an ordinary
// transaction, a temporary file for a large one.
type ltxOut struct {
	buf *bytes.Buffer
	f   *os.File
	w   *bufio.Writer
	tmp string
}

// newLTXOut prepares the output for transaction txid.
func (db *DB) newLTXOut(txid ltx.TXID, t *tx) (*ltxOut, error) {
	if !t.full && len(t.pgnos) <= largeTx {
		return &ltxOut{buf: bytes.NewBuffer(make([]byte, 0, 8192))}, nil
	}
	tmp := filepath.Join(db.LTXDir(), ltxFileName(txid, txid)+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create ltx for %s: %w", db.name, err)
	}
	return &ltxOut{f: f, w: bufio.NewWriterSize(f, 256<<10), tmp: tmp}, nil
}

// writer returns the io.Writer the encoder writes to.
func (o *ltxOut) writer() interface{ Write([]byte) (int, error) } {
	if o.buf != nil {
		return o.buf
	}
	return o.w
}

// abort discards a file that was not stored.
func (o *ltxOut) abort() {
	if o.f != nil {
		_ = o.f.Close()
		_ = os.Remove(o.tmp)
		o.f = nil
	}
}

// storeLTX puts the encoded file for txid in place according to mode.
func (db *DB) storeLTX(o *ltxOut, txid ltx.TXID, mode writeMode) error {
	name := ltxFileName(txid, txid)
	path := filepath.Join(db.LTXDir(), name)
	if o.buf != nil && mode == writeAsync {
		db.ltxw.enqueue(queuedLTX{dir: db.LTXDir(), name: name, data: o.buf.Bytes()})
		db.unsynced = true
		return nil
	}
	if err := db.ltxw.drain(); err != nil {
		return fmt.Errorf("write ltx for %s: %w", db.name, err)
	}
	durable := mode == writeDurable && !db.opts.SkipSync
	if o.buf != nil {
		write := writeFileDirect
		if durable {
			write = func(dir, name string, data []byte) error { return writeFileAtomic(dir, name, data, true) }
		}
		if err := write(db.LTXDir(), name, o.buf.Bytes()); err != nil {
			return fmt.Errorf("write ltx for %s: %w", db.name, err)
		}
	} else {
		if err := o.w.Flush(); err != nil {
			return fmt.Errorf("write ltx for %s: %w", db.name, err)
		}
		if durable {
			if err := o.f.Sync(); err != nil {
				return fmt.Errorf("fsync ltx for %s: %w", db.name, err)
			}
		}
		f := o.f
		o.f = nil
		if err := f.Close(); err != nil {
			return fmt.Errorf("close ltx for %s: %w", db.name, err)
		}
		if err := os.Rename(o.tmp, path); err != nil {
			return fmt.Errorf("rename ltx for %s: %w", db.name, err)
		}
		if durable {
			if err := syncDir(db.LTXDir()); err != nil {
				return err
			}
		}
	}
	if !durable {
		db.unsynced = true
	}
	return nil
}

// syncLTX makes every LTX file written so far durable. It reports whether
// it flushed the whole file system (syncfs), which also makes the database's
// own files durable, so the caller can skip their fsync.
func (db *DB) syncLTX() (bool, error) {
	if err := db.ltxw.drain(); err != nil {
		return false, fmt.Errorf("write ltx for %s: %w", db.name, err)
	}
	if !db.unsynced || db.opts.SkipSync {
		db.unsynced = false
		return false, nil
	}
	dir, err := os.Open(db.LTXDir())
	if err != nil {
		return false, fmt.Errorf("open ltx dir of %s: %w", db.name, err)
	}
	defer dir.Close()
	// One syncfs costs about one fsync and covers every LTX file written
	// since the last one, their directory, and the SQLite file being synced.
	if err := unix.Syncfs(int(dir.Fd())); err != nil {
		return false, fmt.Errorf("syncfs for %s: %w", db.name, err)
	}
	db.unsynced = false
	return true, nil
}

// writeFileDirect writes data to dir/name without a temporary file: creating
// a file is the dominant cost of a small commit, and a rename doubles the
// directory work. A file cut short by a crash can only be the newest one and
// fails verification at recovery, which removes it; the transaction is then
// recovered from the WAL or undone by the hot journal, whichever holds it.
func writeFileDirect(dir, name string, data []byte) error {
	return writeFile(filepath.Join(dir, name), data, false)
}
