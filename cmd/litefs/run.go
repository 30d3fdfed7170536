package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/litefs/litefs"
)

const runSynopsis = "litefs run [-url URL] [-with-lock] [-db NAME]... [-with-halt-lock-on PATH] [-promote] [-if-candidate] -- CMD ARGS..."

// promoteTimeout bounds how long run -promote waits for the node to become
// primary after POST /promote.
const promoteTimeout = 30 * time.Second

// runFlags are the command-line options of "litefs run".
type runFlags struct {
	url         string
	withLock    bool
	dbs         dbList
	haltPath    string // -with-halt-lock-on
	promote     bool
	ifCandidate bool
	cmd         []string // after "--"
}

// parseRunFlags parses "litefs run" arguments. Flags come first; the command
// must follow "--". help is true when -h printed the usage.
func parseRunFlags(args []string, stdout io.Writer) (rf *runFlags, help bool, err error) {
	rf = &runFlags{}
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&rf.url, "url", defaultURL, "URL of the local litefs daemon's HTTP API")
	fs.BoolVar(&rf.withLock, "with-lock", false, "hold the HALT lock on the databases (all, or each -db) while CMD runs")
	fs.Var(&rf.dbs, "db", "database to lock with -with-lock (repeatable; default: every database)")
	fs.StringVar(&rf.haltPath, "with-halt-lock-on", "", "hold the HALT lock on the database at PATH in the mount while CMD runs")
	fs.BoolVar(&rf.promote, "promote", false, "make this node the primary before running CMD")
	fs.BoolVar(&rf.ifCandidate, "if-candidate", false, "skip CMD (exit 0) on a node that can never be primary")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printCommandHelp(fs, runSynopsis, stdout)
			return nil, true, nil
		}
		return nil, false, &usageError{msg: "run: " + err.Error()}
	}
	rest := fs.Args()
	consumed := len(args) - len(rest)
	switch {
	case len(rest) > 0 && (consumed == 0 || args[consumed-1] != "--"):
		return nil, false, &usageError{msg: fmt.Sprintf("run: put -- before the command: litefs run [flags] -- %s", strings.Join(rest, " "))}
	case len(rest) == 0:
		return nil, false, &usageError{msg: "run: missing command: litefs run [flags] -- CMD ARGS..."}
	case len(rf.dbs) > 0 && !rf.withLock:
		return nil, false, &usageError{msg: "run: -db names a database to lock: add -with-lock"}
	}
	rf.cmd = rest
	return rf, false, nil
}

// runRun implements "litefs run": optionally skip on non-candidates,
// promote, and take HALT locks, then run CMD and exit with its exit code.
func runRun(ctx context.Context, args []string, stdout io.Writer) error {
	rf, help, err := parseRunFlags(args, stdout)
	if help || err != nil {
		return err
	}
	c, err := newAPIClient("run", rf.url)
	if err != nil {
		return err
	}
	info, err := fetchDaemonInfo(ctx, c, "run")
	if err != nil {
		return err
	}
	if rf.ifCandidate && info.Candidate != nil && !*info.Candidate {
		fmt.Fprintf(os.Stderr, "litefs run: this node can never be primary (candidate: false): skipping %s\n", rf.cmd[0])
		return nil
	}
	if rf.promote {
		if err := promoteNode(ctx, c, info); err != nil {
			return err
		}
	}
	names, err := runLockNames(rf, c, info)
	if err != nil {
		return err
	}
	// Catch SIGINT/SIGTERM from here on: while waiting for the locks they
	// abort the wait; once CMD runs they are forwarded to it.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	var release func() error
	if len(names) > 0 {
		if release, err = waitForLocks(ctx, sigs, info.MountDir, names); err != nil {
			return err
		}
	}
	cmdErr := runChild(rf.cmd, stdout, sigs)
	if release != nil {
		if err := release(); err != nil {
			if cmdErr != nil {
				fmt.Fprintf(os.Stderr, "litefs: run: %v\n", err)
				return cmdErr
			}
			return fmt.Errorf("run: %w", err)
		}
	}
	return cmdErr
}

// runLockNames returns the databases run must lock: none without
// -with-lock or -with-halt-lock-on.
func runLockNames(rf *runFlags, c *apiClient, info *daemonInfo) ([]string, error) {
	if !rf.withLock && rf.haltPath == "" {
		return nil, nil
	}
	dbs := rf.dbs
	if rf.haltPath != "" {
		if info.MountDir == "" {
			return nil, fmt.Errorf("run: the daemon at %s does not report its mount directory (mountDir in GET /info): upgrade litefs", c.base)
		}
		name, err := dbNameFromPath(rf.haltPath, info)
		if err != nil {
			return nil, fmt.Errorf("run: -with-halt-lock-on: %w", err)
		}
		dbs = append(dbs[:len(dbs):len(dbs)], name)
	}
	return lockTargets("run", c, info, dbs)
}

// dbNameFromPath maps a path in the mount (the database, or its -lock file)
// to the database name.
func dbNameFromPath(path string, info *daemonInfo) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", path, err)
	}
	if !sameDir(filepath.Dir(abs), info.MountDir) {
		return "", fmt.Errorf("%s is not in the mount directory %s", path, info.MountDir)
	}
	name := filepath.Base(abs)
	if _, known := info.DBs[name]; !known {
		name = strings.TrimSuffix(name, "-lock")
	}
	if err := litefs.ValidateName(name); err != nil {
		return "", fmt.Errorf("%s: bad database name: %w", path, err)
	}
	return name, nil
}

// sameDir reports whether a and b name the same directory, directly or
// through symbolic links.
func sameDir(a, b string) bool {
	if filepath.Clean(a) == filepath.Clean(b) {
		return true
	}
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(sa, sb)
}

// promoteNode makes the node primary: POST /promote unless it already is,
// then wait until GET /info says so.
func promoteNode(ctx context.Context, c *apiClient, info *daemonInfo) error {
	if info.Role == "primary" {
		return nil
	}
	pctx, cancel := context.WithTimeout(ctx, promoteTimeout)
	defer cancel()
	req, err := c.newRequest(pctx, http.MethodPost, "/promote", nil, nil)
	if err != nil {
		return fmt.Errorf("run: -promote: %w", err)
	}
	resp, err := c.do(req)
	if isNotFound(err) {
		return fmt.Errorf("run: -promote: this daemon does not support -promote yet (POST %s/promote: %v): drop -promote, or upgrade litefs", c.base, err)
	} else if err != nil {
		return fmt.Errorf("run: -promote: %w", err)
	}
	resp.Body.Close()
	for {
		now, err := fetchDaemonInfo(pctx, c, "run: -promote")
		if err != nil {
			return err
		}
		if now.Role == "primary" {
			return nil
		}
		select {
		case <-pctx.Done():
			return fmt.Errorf("run: -promote: the node is still %s %s after POST /promote: check litefs status", orDash(now.Role), promoteTimeout)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitForLocks takes the HALT locks, giving up on SIGINT/SIGTERM.
func waitForLocks(ctx context.Context, sigs <-chan os.Signal, mountDir string, names []string) (func() error, error) {
	type result struct {
		release func() error
		err     error
	}
	lctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	ch := make(chan result, 1)
	go func() {
		release, err := holdHaltLocks(lctx, mountDir, names)
		ch <- result{release, err}
	}()
	var r result
	select {
	case r = <-ch:
	case sig := <-sigs:
		cancel(fmt.Errorf("interrupted by %v", sig))
		r = <-ch // holdHaltLocks returns at once once cancelled
	}
	if r.err != nil {
		return nil, fmt.Errorf("run: %w", r.err)
	}
	return r.release, nil
}

// runChild runs cmd with inherited stdin and stderr and stdout on stdout,
// forwarding signals from sigs. A non-zero exit becomes an *exitError with
// the same code (128+N when killed by signal N).
func runChild(argv []string, stdout io.Writer, sigs <-chan os.Signal) error {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run: start %s: %w", argv[0], err)
	}
	err := waitForwardingSignals(cmd, sigs)
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return &exitError{code: 128 + int(ws.Signal())}
		}
		return &exitError{code: ee.ExitCode()}
	} else if err != nil {
		return fmt.Errorf("run: %s: %w", argv[0], err)
	}
	return nil
}
