package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

const (
	catchUpTimeout = 60 * time.Second // a replica's first catch-up, or one database reaching a position
	notSyncedLag   = 2147483647       // what .lag reads before a replica's first catch-up
)

// replicaYAML returns a litefs.yml for a replica of the static primary at
// primaryURL, serving its own HTTP API on port. A non-empty dbs limits
// replication to those databases (lease.databases).
func replicaYAML(dataDir, mntDir string, port int, primaryURL string, dbs []string) string {
	return nodeYAML(dataDir, mntDir, port, primaryURL, dbs)
}

// launchReplica starts a replica of primary on dirs, replicating only dbs if
// any are given, without waiting for its mount.
func launchReplica(bin string, dirs mountDirs, primary *daemon, dbs []string) (*daemon, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	d, err := launch(bin, dirs, replicaYAML(dirs.data, dirs.mnt, port, primary.url, dbs), nil)
	if err != nil {
		return nil, fmt.Errorf("replica: %w", err)
	}
	return d, nil
}

// startReplica starts a replica of primary on dirs and waits until it has
// completed its first catch-up. On failure the replica is already stopped.
func startReplica(ctx context.Context, bin string, dirs mountDirs, primary *daemon) (*daemon, error) {
	d, err := launchReplica(bin, dirs, primary, nil)
	if err != nil {
		return nil, err
	}
	if err := d.waitReady(ctx); err != nil {
		return nil, errors.Join(fmt.Errorf("replica: %w", err), d.stop())
	}
	if err := d.waitSynced(ctx); err != nil {
		return nil, errors.Join(err, d.stop())
	}
	return d, nil
}

// waitSynced polls the replica's .lag until it no longer reads the
// not-yet-caught-up value.
func (d *daemon) waitSynced(ctx context.Context) error {
	path := filepath.Join(d.mnt, ".lag")
	return d.poll(ctx, catchUpTimeout, pollInterval, func() (bool, error) {
		data, err := os.ReadFile(path)
		if err != nil {
			return false, fmt.Errorf("read replica lag: %w", err)
		}
		lag, err := parseLag(string(data))
		if err != nil {
			return false, fmt.Errorf("parse %s: %w", path, err)
		}
		return lag < notSyncedLag, nil
	})
}

// waitSamePos polls until database db on this daemon is at the same
// position (TXID and checksum) as on primary. A missing -pos file on this
// daemon counts as "not yet".
func (d *daemon) waitSamePos(ctx context.Context, primary *daemon, db string, every time.Duration) error {
	want, err := readPos(primary.mnt, db)
	if err != nil {
		return fmt.Errorf("primary position of %s: %w", db, err)
	}
	return d.poll(ctx, catchUpTimeout, every, func() (bool, error) {
		got, err := readPos(d.mnt, db)
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		return got == want, err
	})
}

// poll calls done every interval until it reports true or fails, the
// daemon exits, timeout passes or ctx is canceled.
func (d *daemon) poll(ctx context.Context, timeout, every time.Duration, done func() (bool, error)) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		ok, err := done()
		if err != nil || ok {
			return err
		}
		select {
		case <-d.done:
			return fmt.Errorf("litefs (%s) exited (%v)", d.mnt, d.exitErr)
		case <-deadline.C:
			return fmt.Errorf("%s: gave up after %s", d.mnt, timeout)
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w", d.mnt, ctx.Err())
		case <-tick.C:
		}
	}
}

// readPos returns the trimmed text of <mnt>/<db>-pos ("TXID/CHECKSUM").
// An empty file (the database has no position yet) is an os.ErrNotExist.
func readPos(mnt, db string) (string, error) {
	data, err := os.ReadFile(filepath.Join(mnt, db+"-pos"))
	if err != nil {
		return "", fmt.Errorf("read position: %w", err)
	}
	text := strings.TrimSpace(string(data))
	if text == "" {
		return "", fmt.Errorf("read position of %s: %w", db, os.ErrNotExist)
	}
	return text, nil
}

// parseLag parses the .lag text ("+0000000012\n": milliseconds behind the
// primary).
func parseLag(text string) (int64, error) {
	v, err := strconv.ParseInt(strings.TrimSpace(text), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bad lag %q: %w", text, err)
	}
	return v, nil
}
