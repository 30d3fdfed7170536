package litefs

import (
	"context"
	"fmt"
	"io"

	"github.com/superfly/ltx"
)

// Incoming is a received LTX file, spooled to disk and verified on its own,
// waiting to be applied with ApplySpooled.
type Incoming struct{ in *incomingLTX }

// SpoolLTX reads and verifies one LTX file (structure, file checksum, page
// checksums) into a temporary file. Nothing of the database changes.
func (db *DB) SpoolLTX(r io.Reader) (*Incoming, error) {
	in, err := db.spoolLTX(r)
	if err != nil {
		return nil, err
	}
	return &Incoming{in: in}, nil
}

// Header returns the file's header.
func (i *Incoming) Header() ltx.Header { return i.in.hdr }

// Discard removes the spooled file if it was not applied.
func (i *Incoming) Discard() { i.in.remove() }

// ApplySpooled applies spooled files in order while every connection is
// locked out once for all of them: a replica that fell behind catches up in
// batches instead of paying the lock-out, the WAL-index reset and the kernel
// cache invalidation for every transaction (at the primary's full rate those
// per-file costs made the replica fall further and further behind). Each file
// is checked against the database as the files before it left it, exactly
// as ApplyLTX checks one; at the first refused file the ones before it stay
// applied and its error is returned. The spooled files are removed.
func (db *DB) ApplySpooled(ctx context.Context, files []*Incoming) (ltx.Pos, error) {
	ins := make([]*incomingLTX, len(files))
	for i, f := range files {
		ins[i] = f.in
		defer f.Discard() // a no-op for files moved into place
	}
	if len(ins) == 0 {
		return db.Pos(), nil
	}
	// Refuse a bad first file before locking anyone out. (checkApplicable
	// waits for a commit in progress, so a transaction this replica
	// forwarded under a HALT is recorded by now.)
	firstChecked := true
	if err := db.checkApplicable(ins[0]); err != nil {
		p, ok := db.alreadyForwarded(ins[0])
		if !ok {
			return ltx.Pos{}, err
		}
		if ins = ins[1:]; len(ins) == 0 {
			return p, nil
		}
		firstChecked = false
	}
	return db.applyAll(ctx, daemonOwner, ins, firstChecked)
}

// applyAll applies verified files in order under one lock-out by owner.
// Each file is checked against the state the ones before it left, except
// the first when firstChecked (the caller checked it before the lock-out).
func (db *DB) applyAll(ctx context.Context, owner uint64, ins []*incomingLTX, firstChecked bool) (ltx.Pos, error) {
	release, err := db.exclusive(ctx, owner)
	if err != nil {
		return ltx.Pos{}, fmt.Errorf("apply to %s: wait for readers: %w", db.name, err)
	}
	defer release()
	pos, applied, err := db.applyInOrder(ins, firstChecked)
	if applied > 0 {
		if ierr := db.invalidateAfterApply(); ierr != nil {
			db.log.Warn("kernel cache invalidation failed", "error", ierr)
		}
		db.store.notify()
	}
	if err != nil {
		return ltx.Pos{}, err
	}
	return pos, nil
}

// applyInOrder applies the files under db.mu, consecutive small ones as one
// merged history file (mergeRun), and returns the position and how many
// files it applied. At the first refused file the ones before it stay
// applied; one that this replica forwarded itself is skipped.
func (db *DB) applyInOrder(ins []*incomingLTX, firstChecked bool) (pos ltx.Pos, applied int, err error) {
	run := &mergeRun{db: db}
	db.mu.Lock()
	defer db.mu.Unlock()
	for i, in := range ins {
		if i > 0 || !firstChecked {
			if err = db.checkApplicableLocked(in); err != nil {
				if ferr := run.flush(); ferr != nil {
					return ltx.Pos{}, applied, ferr
				}
				db.mu.Unlock() // alreadyForwarded takes db.mu itself
				p, ok := db.alreadyForwarded(in)
				db.mu.Lock()
				if ok {
					pos, err = p, nil
					continue
				}
				return ltx.Pos{}, applied, err
			}
		}
		if run.accepts(in) {
			pos, err = run.add(in)
		} else if err = run.flush(); err == nil {
			pos, err = db.applyLocked(in)
		}
		if err != nil {
			return ltx.Pos{}, applied, err
		}
		applied++
	}
	if err := run.flush(); err != nil {
		return ltx.Pos{}, applied, err
	}
	return pos, applied, nil
}
