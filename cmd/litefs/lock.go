package main

// "litefs lock" and "litefs unlock": HALT locks held on behalf of a shell.
//
// litefs lock starts a detached holder process (the same binary, run as
// "litefs __hold-lock", in a new session, stdio on /dev/null). The holder
// takes the locks with holdHaltLocks, reports the outcome to litefs lock
// through a pipe (so that lock's exit code and message are the real ones),
// then waits until the calling shell (litefs lock's parent) exits - watched
// through a pidfd, or by polling /proc/PID every 100 ms where pidfds are not
// available - or until it receives SIGTERM (from litefs unlock). Then it
// releases the locks and exits.
//
// The holder records itself in a state file keyed by the shell's pid and
// the daemon's URL:
//
//	DIR/lock-<shellpid>-<fnv32a(URL) in hex>.pid
//
// DIR is $XDG_RUNTIME_DIR/litefs when XDG_RUNTIME_DIR is set, else
// /run/litefs for root, else $TMPDIR/litefs-<uid> (os.TempDir); the first
// of these that can be used, created with mode 0700. Process ids in state
// files are paired with the process start time from /proc, so that a
// reused pid is never mistaken for a holder.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	lockSynopsis   = "litefs lock [-url URL] [-db NAME]..."
	unlockSynopsis = "litefs unlock [-url URL]"

	// holdLockCommand is the hidden subcommand run by the holder process.
	holdLockCommand = "__hold-lock"
)

// unlockTimeout bounds how long litefs unlock waits for a holder to exit.
const unlockTimeout = 10 * time.Second

// runLockCommand dispatches "lock", "unlock" and the hidden holder command.
func runLockCommand(ctx context.Context, cmd string, args []string, stdout io.Writer) error {
	switch cmd {
	case "lock":
		return runLock(ctx, args, stdout)
	case "unlock":
		return runUnlock(args, stdout)
	}
	return runHoldLock(ctx, args)
}

// runLock implements "litefs lock": it returns once a detached holder holds
// the HALT locks for the calling shell.
func runLock(ctx context.Context, args []string, stdout io.Writer) error {
	var rawURL string
	var dbs dbList
	fs := flag.NewFlagSet("lock", flag.ContinueOnError)
	fs.StringVar(&rawURL, "url", defaultURL, "URL of the local litefs daemon's HTTP API")
	fs.Var(&dbs, "db", "database to lock (repeatable; default: every database)")
	pos, help, err := parseCommandFlags(fs, args, lockSynopsis, stdout)
	if help || err != nil {
		return err
	}
	if len(pos) != 0 {
		return &usageError{msg: fmt.Sprintf("lock: unexpected argument %q (lock takes only flags; name databases with -db)", pos[0])}
	}
	c, err := newAPIClient("lock", rawURL)
	if err != nil {
		return err
	}
	shell, err := openCallingShell()
	if err != nil {
		return err
	}
	defer shell.close()
	path, err := lockStatePath(shell.pid, c.base.String())
	if err != nil {
		return err
	}
	if st, err := readLiveLockState(path); err != nil {
		return err
	} else if st != nil {
		return fmt.Errorf("lock: this shell (pid %d) already holds the HALT lock on %s through litefs lock (holder pid %d): run litefs unlock first",
			shell.pid, orNone(st.DBs), st.Holder)
	}
	info, err := fetchDaemonInfo(ctx, c, "lock")
	if err != nil {
		return err
	}
	names, err := lockTargets("lock", c, info, dbs)
	if err != nil {
		return err
	}
	mountDir, err := filepath.Abs(info.MountDir) // the holder runs in /
	if err != nil {
		return fmt.Errorf("lock: mount directory %s: %w", info.MountDir, err)
	}
	args = []string{holdLockCommand, "-mount", mountDir, "-url", c.base.String(), "-state", path,
		"-shell", strconv.Itoa(shell.pid), "-shell-start", strconv.FormatUint(shell.start, 10)}
	if err := startLockHolder(ctx, args, shell.pidfd, names); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "litefs lock: holding the HALT lock on %s until litefs unlock or until this shell (pid %d) exits\n", strings.Join(names, ", "), shell.pid)
	return nil
}

// callingShell is litefs lock's parent process.
type callingShell struct {
	pid   int
	start uint64 // start time, from /proc
	pidfd *os.File
}

// openCallingShell identifies the parent process and opens a pidfd on it
// (nil where pidfds are not supported).
func openCallingShell() (*callingShell, error) {
	pid := os.Getppid()
	start, err := procStartTime(pid)
	if err != nil {
		return nil, fmt.Errorf("lock: read the calling process (pid %d): %w", pid, err)
	}
	sh := &callingShell{pid: pid, start: start}
	if fd, err := unix.PidfdOpen(pid, 0); err == nil {
		sh.pidfd = os.NewFile(uintptr(fd), "pidfd")
	}
	if os.Getppid() != pid {
		sh.close()
		return nil, fmt.Errorf("lock: the calling process (pid %d) exited", pid)
	}
	return sh, nil
}

func (sh *callingShell) close() {
	if sh.pidfd != nil {
		sh.pidfd.Close()
	}
}

// startLockHolder starts the holder process with args (then the status
// pipe, the optional pidfd and names) and waits for its report. SIGINT or
// SIGTERM while it waits stop the holder.
func startLockHolder(ctx context.Context, args []string, pidfd *os.File, names []string) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("lock: find the litefs executable to start the lock holder: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	defer r.Close()
	extra := []*os.File{w} // fd 3 in the holder
	args = append(args, "-status-fd", "3")
	if pidfd != nil {
		extra = append(extra, pidfd) // fd 4
		args = append(args, "-pidfd", "4")
	}
	args = append(append(args, "--"), names...)
	cmd := exec.Command(exe, args...)
	cmd.ExtraFiles = extra
	cmd.Dir = "/" // do not keep the caller's directory busy
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	err = cmd.Start()
	w.Close()
	if err != nil {
		return fmt.Errorf("lock: start the lock holder %s: %w", exe, err)
	}
	report := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(r, 64<<10))
		report <- strings.TrimSpace(string(b))
	}()
	var msg string
	select {
	case msg = <-report:
	case sig := <-sigs:
		stopHolder(cmd, report)
		return fmt.Errorf("lock: interrupted by %v while waiting for the HALT lock", sig)
	case <-ctx.Done():
		stopHolder(cmd, report)
		return fmt.Errorf("lock: %w", ctx.Err())
	}
	if msg == "ok" {
		return cmd.Process.Release() // the holder lives on, detached
	}
	werr := cmd.Wait()
	if msg == "" {
		return fmt.Errorf("lock: the lock holder exited without reporting (%v)", werr)
	}
	return errors.New(msg)
}

// stopHolder stops a holder that has not reported yet: SIGTERM, then
// SIGKILL if it has not exited within unlockTimeout.
func stopHolder(cmd *exec.Cmd, report <-chan string) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-report: // the holder closed its end of the pipe: it is exiting
	case <-time.After(unlockTimeout):
		_ = cmd.Process.Kill()
	}
	_ = cmd.Wait()
}

// runHoldLock is the holder process ("litefs __hold-lock"): see the top of
// this file.
func runHoldLock(ctx context.Context, args []string) error {
	var st lockState
	var statusFD, pidfd int
	fs := flag.NewFlagSet(holdLockCommand, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&st.MountDir, "mount", "", "")
	fs.StringVar(&st.URL, "url", "", "")
	fs.StringVar(&st.path, "state", "", "")
	fs.IntVar(&st.Shell, "shell", 0, "")
	fs.Uint64Var(&st.ShellStart, "shell-start", 0, "")
	fs.IntVar(&statusFD, "status-fd", -1, "")
	fs.IntVar(&pidfd, "pidfd", -1, "")
	if err := fs.Parse(args); err != nil || statusFD < 0 || st.path == "" || st.Shell <= 0 {
		return &usageError{msg: holdLockCommand + " is internal to litefs lock"}
	}
	st.DBs = fs.Args()
	status := os.NewFile(uintptr(statusFD), "status")
	report := func(msg string) error {
		_, err := io.WriteString(status, msg+"\n")
		if cerr := status.Close(); err == nil {
			err = cerr
		}
		return err
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	shellGone := watchProcess(st.Shell, st.ShellStart, pidfd)
	go func() {
		select {
		case sig := <-sigs:
			cancel(fmt.Errorf("lock holder got %v", sig))
		case <-shellGone:
			cancel(fmt.Errorf("the calling shell (pid %d) exited", st.Shell))
		case <-ctx.Done():
		}
	}()

	if err := claimLockState(&st); err != nil {
		_ = report(err.Error())
		return err
	}
	defer os.Remove(st.path)
	release, err := holdHaltLocks(ctx, st.MountDir, st.DBs)
	if err != nil {
		_ = report("lock: " + err.Error())
		return err
	}
	if err := report("ok"); err != nil { // litefs lock is gone: nobody wants the lock
		return errors.Join(fmt.Errorf("report to litefs lock: %w", err), release())
	}
	<-ctx.Done()
	return release()
}

// runUnlock implements "litefs unlock": stop the holder started by litefs
// lock from the same shell (for -url's daemon only when -url is given).
func runUnlock(args []string, stdout io.Writer) error {
	var rawURL string
	fs := flag.NewFlagSet("unlock", flag.ContinueOnError)
	fs.StringVar(&rawURL, "url", defaultURL, "release only the lock taken through the daemon at this URL (without -url: every lock this shell holds)")
	pos, help, err := parseCommandFlags(fs, args, unlockSynopsis, stdout)
	if help || err != nil {
		return err
	}
	if len(pos) != 0 {
		return &usageError{msg: fmt.Sprintf("unlock: unexpected argument %q (unlock takes only flags)", pos[0])}
	}
	c, err := newAPIClient("unlock", rawURL)
	if err != nil {
		return err
	}
	urlSet := false
	fs.Visit(func(f *flag.Flag) { urlSet = urlSet || f.Name == "url" })
	shell := os.Getppid()
	var paths []string
	if urlSet {
		path, err := lockStatePath(shell, c.base.String())
		if err != nil {
			return err
		}
		paths = []string{path}
	} else {
		dir, err := lockStateDir()
		if err != nil {
			return err
		}
		paths, _ = filepath.Glob(filepath.Join(dir, fmt.Sprintf("lock-%d-*.pid", shell)))
	}
	released := 0
	var errs []error
	for _, path := range paths {
		ok, err := stopLockHolder(path)
		if ok {
			released++
		}
		errs = append(errs, err)
	}
	joined := errors.Join(errs...)
	if released == 0 && joined == nil {
		fmt.Fprintf(os.Stderr, "litefs unlock: no HALT lock held by litefs lock for this shell (pid %d): nothing to do\n", shell)
	}
	return joined
}

// stopLockHolder sends SIGTERM to the live holder recorded in path and
// waits until it has exited. found is false when there was no live holder.
func stopLockHolder(path string) (found bool, err error) {
	st, err := readLiveLockState(path)
	if err != nil || st == nil {
		return false, err
	}
	pidfd, perr := unix.PidfdOpen(st.Holder, 0)
	if perr == nil {
		defer unix.Close(pidfd)
		if !processAlive(st.Holder, st.HolderStart) { // the pid was reused before the pidfd was opened
			os.Remove(path)
			return false, nil
		}
		err = unix.PidfdSendSignal(pidfd, unix.SIGTERM, nil, 0)
	} else {
		err = unix.Kill(st.Holder, unix.SIGTERM)
	}
	if err != nil && !errors.Is(err, unix.ESRCH) {
		return true, fmt.Errorf("unlock: signal the lock holder (pid %d): %w", st.Holder, err)
	}
	if !waitProcessGone(st.Holder, st.HolderStart, pidfd, unlockTimeout) {
		return true, fmt.Errorf("unlock: the lock holder (pid %d) did not exit within %s: the HALT lock on %s may still be held; kill -9 %d releases it",
			st.Holder, unlockTimeout, orNone(st.DBs), st.Holder)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return true, fmt.Errorf("unlock: remove state file: %w", err)
	}
	return true, nil
}

// lockState is the content of a state file: who holds which locks for
// which shell.
type lockState struct {
	Holder      int      `json:"holder"`
	HolderStart uint64   `json:"holderStart"`
	Shell       int      `json:"shell"`
	ShellStart  uint64   `json:"shellStart"`
	URL         string   `json:"url"`
	MountDir    string   `json:"mountDir"`
	DBs         []string `json:"dbs"`
	path        string   // the state file
}

// lockStateDir returns the directory of the state files (see the top of
// this file), creating it if needed.
func lockStateDir() (string, error) {
	var dirs []string
	if xdg := os.Getenv("XDG_RUNTIME_DIR"); xdg != "" {
		dirs = append(dirs, filepath.Join(xdg, "litefs"))
	}
	if os.Geteuid() == 0 {
		dirs = append(dirs, "/run/litefs")
	}
	dirs = append(dirs, filepath.Join(os.TempDir(), fmt.Sprintf("litefs-%d", os.Geteuid())))
	var errs []error
	for _, dir := range dirs {
		err := usableStateDir(dir)
		if err == nil {
			return dir, nil
		}
		errs = append(errs, err)
	}
	return "", fmt.Errorf("no usable directory for litefs lock state files: %w", errors.Join(errs...))
}

// usableStateDir creates dir (mode 0700) if needed and checks that it is a
// real directory owned by this user and not writable by others.
func usableStateDir(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return fmt.Errorf("%s is not a directory", dir)
	case int(st.Uid) != os.Geteuid():
		return fmt.Errorf("%s belongs to uid %d, not to uid %d", dir, st.Uid, os.Geteuid())
	case st.Mode&0o022 != 0:
		return fmt.Errorf("%s is writable by other users", dir)
	}
	return nil
}

// lockStatePath is the state file for the locks of shell on the daemon at
// url.
func lockStatePath(shell int, url string) (string, error) {
	dir, err := lockStateDir()
	if err != nil {
		return "", err
	}
	h := fnv.New32a()
	h.Write([]byte(url))
	return filepath.Join(dir, fmt.Sprintf("lock-%d-%08x.pid", shell, h.Sum32())), nil
}

// readLiveLockState reads the state file at path. It returns nil when there
// is none, or when its holder is gone (the stale file is then removed).
func readLiveLockState(path string) (*lockState, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("read lock state file: %w", err)
	}
	var st lockState
	if json.Unmarshal(b, &st) != nil || !processAlive(st.Holder, st.HolderStart) {
		os.Remove(path) // unreadable, or left by a holder that was killed
		return nil, nil
	}
	st.path = path
	return &st, nil
}

// claimLockState atomically creates st.path for this process. It fails if
// a live holder already has it.
func claimLockState(st *lockState) error {
	st.Holder = os.Getpid()
	start, err := procStartTime(st.Holder)
	if err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	st.HolderStart = start
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(st.path), ".lock-*.tmp")
	if err != nil {
		return fmt.Errorf("lock: write state file: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(append(b, '\n'))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("lock: write state file: %w", err)
	}
	for attempt := 0; ; attempt++ {
		err := os.Link(tmp.Name(), st.path) // fails if the file exists
		if err == nil {
			return nil
		}
		if !errors.Is(err, fs.ErrExist) || attempt > 0 {
			return fmt.Errorf("lock: create state file: %w", err)
		}
		if other, rerr := readLiveLockState(st.path); rerr != nil {
			return rerr
		} else if other != nil {
			return fmt.Errorf("lock: this shell (pid %d) already holds the HALT lock on %s through litefs lock (holder pid %d): run litefs unlock first",
				st.Shell, orNone(other.DBs), other.Holder)
		}
	}
}

// procStartTime returns the start time of process pid (field 22 of
// /proc/PID/stat), or an error if it does not exist or has exited (zombie).
func procStartTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("process %d: %w", pid, err)
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("process %d: unexpected /proc/%d/stat", pid, pid)
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 20 {
		return 0, fmt.Errorf("process %d: unexpected /proc/%d/stat", pid, pid)
	}
	if f[0] == "Z" || f[0] == "X" {
		return 0, fmt.Errorf("process %d has exited", pid)
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("process %d: start time: %w", pid, err)
	}
	return start, nil
}

// processAlive reports whether process pid, started at start, still runs.
func processAlive(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	now, err := procStartTime(pid)
	return err == nil && now == start
}

// watchProcess returns a channel closed when process pid (started at start)
// exits: through pidfd when it is >= 0, else (or if polling the pidfd
// fails) by polling /proc every 100 ms.
func watchProcess(pid int, start uint64, pidfd int) <-chan struct{} {
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		if pidfd >= 0 {
			if exited, err := pollPidfd(pidfd, -1); exited || err == nil {
				return
			}
		}
		for processAlive(pid, start) {
			time.Sleep(100 * time.Millisecond)
		}
	}()
	return gone
}

// pollPidfd waits up to timeout (forever if negative) for the process of
// pidfd to exit, and reports whether it did.
func pollPidfd(pidfd int, timeout time.Duration) (exited bool, err error) {
	deadline := time.Now().Add(timeout)
	for {
		ms := -1
		if timeout >= 0 {
			if ms = int(time.Until(deadline).Milliseconds()); ms < 0 {
				return false, nil
			}
		}
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, ms)
		if err == unix.EINTR {
			continue
		}
		return err == nil && n > 0, err
	}
}

// waitProcessGone waits up to timeout for process pid (started at start)
// to exit, through pidfd when it is >= 0. It reports whether it exited.
func waitProcessGone(pid int, start uint64, pidfd int, timeout time.Duration) bool {
	if pidfd >= 0 {
		if exited, err := pollPidfd(pidfd, timeout); err == nil {
			return exited || !processAlive(pid, start)
		}
	}
	deadline := time.Now().Add(timeout)
	for processAlive(pid, start) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}
