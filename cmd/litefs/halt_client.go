package main

// The client side of the HALT lock (SPEC section 8.1), shared by "litefs
// run -with-lock", "litefs lock" and "litefs mount -with-lock": the HALT lock
// on database NAME is an exclusive open-file-description lock on byte 72 of
// <mountDir>/NAME-lock. These commands only take that file lock; the FUSE
// daemon turns it into the remote HALT, so they work the same on the primary
// and on replicas.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/litefs/litefs"
	"golang.org/x/sys/unix"
)

// haltLockByte is the byte of NAME-lock whose lock is the HALT lock.
const haltLockByte = 72

// maxEINTRRetries bounds how often a wait for a HALT lock is restarted after
// EINTR before the error is reported.
const maxEINTRRetries = 5

// haltFlock describes byte 72 of a lock file with lock type typ.
func haltFlock(typ int16) *unix.Flock_t {
	return &unix.Flock_t{Type: typ, Whence: io.SeekStart, Start: haltLockByte, Len: 1}
}

// holdHaltLocks takes the HALT lock on every database in names, through the
// mount at mountDir, and returns a function that releases them all. Names
// are validated with litefs.ValidateName, deduplicated and taken in sorted
// order, so that two callers locking overlapping sets cannot deadlock. If
// one lock cannot be taken, the ones already taken are released and the
// error names the database and what the errno means.
//
// Each lock waits (F_OFD_SETLKW) as long as the daemon lets it. ctx bounds
// only that wait; once holdHaltLocks has returned, cancelling ctx changes
// nothing and the locks are held until release is called or the process
// exits (the descriptors are close-on-exec: child processes do not hold
// them).
//
// Cancellation: a blocked fcntl cannot take a context, and neither closing
// the descriptor from another thread nor a Go-handled signal interrupts it
// (the kernel holds its own reference to the file during the call and
// restarts the call after signals). So each wait runs in its own goroutine
// that owns the descriptor; when ctx is done, holdHaltLocks returns at once
// with ctx's error and that goroutine stays behind: if the kernel ever
// grants the lock, the goroutine releases it at once by closing the
// descriptor. The pending request itself disappears when the process exits.
// For short-lived commands (run, lock) that is immediately after; a
// long-lived caller should know that an abandoned request may be granted and
// dropped again later.
//
// release is safe to call more than once; only the first call does work.
func holdHaltLocks(ctx context.Context, mountDir string, names []string) (release func() error, err error) {
	names, err = normalizeLockNames(names)
	if err != nil {
		return nil, err
	}
	if st, err := os.Stat(mountDir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("mount directory %s is not available (is litefs mount running?): %w", mountDir, statErr(err))
	}
	var held []*haltLock
	releaseAll := func() error {
		var errs []error
		for i := len(held) - 1; i >= 0; i-- {
			errs = append(errs, held[i].release())
		}
		return errors.Join(errs...)
	}
	for _, name := range names {
		l, err := takeHaltLock(ctx, mountDir, name)
		if err != nil {
			if rerr := releaseAll(); rerr != nil {
				err = fmt.Errorf("%w (releasing the locks already taken also failed: %v)", err, rerr)
			}
			return nil, err
		}
		held = append(held, l)
	}
	var once sync.Once
	var rerr error
	return func() error {
		once.Do(func() { rerr = releaseAll() })
		return rerr
	}, nil
}

// statErr is err, or a "not a directory" error when Stat succeeded.
func statErr(err error) error {
	if err == nil {
		return unix.ENOTDIR
	}
	return err
}

// normalizeLockNames validates names and returns them sorted, without
// duplicates.
func normalizeLockNames(names []string) ([]string, error) {
	if len(names) == 0 {
		return nil, errors.New("no database named to take the HALT lock on")
	}
	out := make([]string, 0, len(names))
	for _, name := range names {
		if err := litefs.ValidateName(name); err != nil {
			return nil, fmt.Errorf("bad database name %q: %w", name, err)
		}
		out = append(out, name)
	}
	sort.Strings(out)
	uniq := out[:1]
	for _, name := range out[1:] {
		if name != uniq[len(uniq)-1] {
			uniq = append(uniq, name)
		}
	}
	return uniq, nil
}

// haltLock is one HALT lock held through an open NAME-lock file.
type haltLock struct {
	name string
	fd   int
}

// takeHaltLock opens <mountDir>/<name>-lock and waits for the lock on byte
// 72 until it is granted, fails, or ctx is done (see holdHaltLocks).
func takeHaltLock(ctx context.Context, mountDir, name string) (*haltLock, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("HALT lock on %s: not waiting: %w", name, err)
	}
	path := filepath.Join(mountDir, name+"-lock")
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("no database %s in mount %s (check the name with litefs status): %w", name, mountDir, err)
		}
		return nil, fmt.Errorf("HALT lock on %s: open %s: %w", name, path, err)
	}
	done := make(chan error, 1)
	go func() {
		var err error
		for i := 0; i <= maxEINTRRetries; i++ {
			if err = unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLKW, haltFlock(unix.F_WRLCK)); err != unix.EINTR {
				break
			}
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			unix.Close(fd)
			return nil, haltLockError(name, err)
		}
		return &haltLock{name: name, fd: fd}, nil
	case <-ctx.Done():
		// The waiting goroutine owns fd from now on: closing it here would
		// not stop the wait, and its number could be reused meanwhile.
		go func() {
			<-done
			unix.Close(fd) // releases the lock if it was granted
		}()
		return nil, fmt.Errorf("stopped waiting for the HALT lock on %s: %w", name, context.Cause(ctx))
	}
}

// haltLockError explains a failed F_OFD_SETLKW on the HALT byte of name.
func haltLockError(name string, err error) error {
	var what string
	switch {
	case errors.Is(err, unix.EAGAIN):
		what = fmt.Sprintf("HALT lock on %s is busy or timed out, retry later", name)
	case errors.Is(err, unix.EINTR):
		what = fmt.Sprintf("waiting for the HALT lock on %s was interrupted (EINTR), retry", name)
	case errors.Is(err, unix.ENOLCK):
		what = fmt.Sprintf("HALT lock on %s refused (ENOLCK): this descriptor already holds or waits for it, or no lock is available", name)
	case errors.Is(err, unix.EDEADLK):
		what = fmt.Sprintf("HALT lock on %s would deadlock (EDEADLK), retry later", name)
	case errors.Is(err, unix.EINVAL):
		what = fmt.Sprintf("HALT lock on %s refused (EINVAL): the mount does not support HALT locks", name)
	default:
		what = fmt.Sprintf("HALT lock on %s failed", name)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// release gives the lock back: F_UNLCK on the byte, then close.
func (l *haltLock) release() error {
	uerr := unix.FcntlFlock(uintptr(l.fd), unix.F_OFD_SETLK, haltFlock(unix.F_UNLCK))
	cerr := unix.Close(l.fd)
	if uerr != nil {
		return fmt.Errorf("release HALT lock on %s: %w", l.name, uerr)
	}
	if cerr != nil {
		return fmt.Errorf("release HALT lock on %s: close: %w", l.name, cerr)
	}
	return nil
}

// daemonInfo is the part of GET /info that run and lock need.
type daemonInfo struct {
	Role      string                     `json:"role"`
	Candidate *bool                      `json:"candidate"`
	DBs       map[string]json.RawMessage `json:"dbs"`
	MountDir  string                     `json:"mountDir"`
}

// fetchDaemonInfo asks the local daemon for GET /info; cmd prefixes errors.
func fetchDaemonInfo(ctx context.Context, c *apiClient, cmd string) (*daemonInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	req, err := c.newRequest(ctx, http.MethodGet, "/info", nil, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cmd, err)
	}
	resp, err := c.do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cmd, err)
	}
	defer resp.Body.Close()
	var info daemonInfo
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxInfoBody)).Decode(&info); err != nil {
		return nil, fmt.Errorf("%s: %s/info answered with invalid JSON: %w", cmd, c.base, err)
	}
	return &info, nil
}

// lockTargets returns the databases to lock: dbs, or every database of the
// node when dbs is empty. It checks that the daemon reports its mount
// directory and knows each named database.
func lockTargets(cmd string, c *apiClient, info *daemonInfo, dbs []string) ([]string, error) {
	if info.MountDir == "" {
		return nil, fmt.Errorf("%s: the daemon at %s does not report its mount directory (mountDir in GET /info): upgrade litefs", cmd, c.base)
	}
	known := make([]string, 0, len(info.DBs))
	for name := range info.DBs {
		known = append(known, name)
	}
	sort.Strings(known)
	if len(dbs) == 0 {
		if len(known) == 0 {
			return nil, fmt.Errorf("%s: the node has no databases to lock: create one first, or name it with -db", cmd)
		}
		return known, nil
	}
	for _, name := range dbs {
		if _, ok := info.DBs[name]; !ok {
			return nil, fmt.Errorf("%s: no database %q on this node (it has: %s)", cmd, name, orNone(known))
		}
	}
	return dbs, nil
}

// orNone joins names with commas, or says "none".
func orNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// dbList is a repeatable -db flag.
type dbList []string

func (l *dbList) String() string { return strings.Join(*l, ",") }

// Set validates and records one -db value.
func (l *dbList) Set(name string) error {
	if err := litefs.ValidateName(name); err != nil {
		return fmt.Errorf("bad database name %q: %w", name, err)
	}
	*l = append(*l, name)
	return nil
}

// isNotFound reports whether err is a 404 (or 405) answer from the daemon:
// the endpoint does not exist in that version.
func isNotFound(err error) bool {
	var ae *apiError
	return errors.As(err, &ae) && (ae.status == http.StatusNotFound || ae.status == http.StatusMethodNotAllowed)
}
