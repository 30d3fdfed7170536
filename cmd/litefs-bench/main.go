// Command litefs-bench is the benchmark driver behind "make bench". It starts
// a litefs daemon on a temp directory and runs each workload twice on a fresh
// SQLite database: once in a plain local directory (the baseline) and once in
// the litefs mount. It prints every figure next to the baseline measured in
// the same run, their ratio, the target and PASS or MISS, and checks that
// litefs recorded every transaction it was given.
//
// It exits 0 when the run completed, even when a target is missed, and
// non-zero on any error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

// options are the command-line flags.
type options struct {
	litefs string
	keep   bool
	json   bool
	only   []string // sections to run, in sectionNames order; all when -only is not given
	// backupDuration is the length of the backup section's 100 tx/s run
	// (and of its full-rate runs, with and without backup, together); backupMB is the
	// size of the database it restores.
	backupDuration time.Duration
	backupMB       int
	config
}

// The benchmark's sections, in the order they run and print.
const (
	sectionWorkloads   = "workloads"   // write rates and bulk insert: plain vs FUSE only vs litefs
	sectionReplication = "replication" // replication lag and snapshot catch-up
	sectionHalt        = "halt"        // HALT lock write forwarding
	sectionProxy       = "proxy"       // HTTP proxy: local read overhead, forwarded write latency
	sectionFailover    = "failover"    // crash failover and clean handoff over a Consul lease
	sectionBackup      = "backup"      // continuous backup to S3: lag, PUTs, restore, commit rate on vs off
)

// sectionNames lists every section in order.
var sectionNames = []string{sectionWorkloads, sectionReplication, sectionHalt, sectionProxy, sectionFailover, sectionBackup}

// runs reports whether section is selected.
func (o options) runs(section string) bool { return slices.Contains(o.only, section) }

// parseSections parses -only: a comma-separated list of section names.
// It returns the sections in run order, without duplicates.
func parseSections(list string) ([]string, error) {
	want := map[string]bool{}
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		if !slices.Contains(sectionNames, name) {
			return nil, fmt.Errorf("-only: unknown section %q (want a comma-separated list of %s)", name, strings.Join(sectionNames, ", "))
		}
		want[name] = true
	}
	var out []string
	for _, name := range sectionNames {
		if want[name] {
			out = append(out, name)
		}
	}
	return out, nil
}

func main() {
	// A closed stdout ("| head") must fail a write, not kill the process
	// before it has stopped its daemons and removed their mounts.
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	go func() {
		// After the first signal the benchmark cleans up; a second one
		// kills it at once.
		<-ctx.Done()
		stop()
	}()
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one benchmark and returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	opts, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "litefs-bench: %s\n", err)
		return 2
	}
	// The table goes to stdout; with -json the JSON document takes stdout
	// and the table moves to stderr, so "-json > out.json" shows both.
	table, jsonOut := stdout, io.Discard
	if opts.json {
		table, jsonOut = stderr, stdout
	}
	if err := bench(ctx, opts, table, jsonOut, stderr); err != nil {
		fmt.Fprintf(stderr, "litefs-bench: %s\n", err)
		return 1
	}
	return 0
}

// parseFlags parses and checks the command line.
func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("litefs-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.litefs, "litefs", "bin/litefs", "path of the litefs binary to benchmark")
	fs.DurationVar(&o.duration, "duration", 3*time.Second, "timed length of each write-rate run")
	fs.IntVar(&o.rows, "rows", 100000, "rows inserted by the bulk workload")
	fs.IntVar(&o.snapshotMB, "snapshot-mb", 200, "size in MB of the database a new replica catches up on")
	fs.DurationVar(&o.backupDuration, "backup-duration", 20*time.Second, "length of the backup section's 100 tx/s run, and of its full-rate runs together")
	fs.IntVar(&o.backupMB, "backup-mb", 1024, "size in MB of the database the backup section restores")
	fs.BoolVar(&o.keep, "keep", false, "keep the temp directory (databases, LTX files, daemon log)")
	fs.BoolVar(&o.json, "json", false, "also write the results as JSON to stdout (the table then goes to stderr)")
	only := fs.String("only", strings.Join(sectionNames, ","), "run only these sections (comma-separated: "+strings.Join(sectionNames, ", ")+")")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	var err error
	if o.only, err = parseSections(*only); err != nil {
		return o, err
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	case o.duration <= 0:
		return o, fmt.Errorf("-duration must be positive, got %s", o.duration)
	case o.rows <= 0:
		return o, fmt.Errorf("-rows must be positive, got %d", o.rows)
	case o.snapshotMB <= 0:
		return o, fmt.Errorf("-snapshot-mb must be positive, got %d", o.snapshotMB)
	case o.backupDuration < 8*time.Second:
		return o, fmt.Errorf("-backup-duration must be at least 8s, got %s", o.backupDuration)
	case o.backupMB <= 0:
		return o, fmt.Errorf("-backup-mb must be positive, got %d", o.backupMB)
	}
	return o, nil
}

// bench sets up the temp directory and the daemons, runs the workloads and
// the replication figures and reports. Every daemon is stopped, its mount
// removed and (unless -keep) the temp directory deleted on every path out,
// including errors and signals.
func bench(ctx context.Context, opts options, table, jsonOut, progress io.Writer) (err error) {
	if err := checkTools(opts.litefs); err != nil {
		return err
	}
	w, err := newWorkDir()
	if w != nil {
		defer func() { err = errors.Join(err, w.cleanup(opts.keep, err != nil, progress)) }()
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(progress, "==> starting %s mount in %s\n", opts.litefs, w.root)
	d, err := startDaemon(ctx, opts.litefs, w, false)
	if err != nil {
		return err
	}
	defer func() {
		if stopErr := d.stop(); stopErr != nil {
			err = errors.Join(err, fmt.Errorf("stop litefs: %w", stopErr))
		}
	}()

	var results []result
	if opts.runs(sectionWorkloads) {
		var bare *daemon
		if bare, err = startDaemon(ctx, opts.litefs, w, true); err != nil {
			return err
		}
		// err is bench's own result here: a failed stop is reported.
		defer func() {
			if stopErr := bare.stop(); stopErr != nil {
				err = errors.Join(err, fmt.Errorf("stop litefs (fuse only): %w", stopErr))
			}
		}()
		if results, err = runAll(ctx, workloads(opts.config), w, d, bare, progress); err != nil {
			return err
		}
		if err := verifyRecorded(w.mnt, results); err != nil {
			return err
		}
	}
	var repl *replResult
	if opts.runs(sectionReplication) {
		var r replResult
		if r, err = runReplication(ctx, opts, w, d, progress); err != nil {
			return err
		}
		repl = &r
	}
	var halt *haltResult
	if opts.runs(sectionHalt) {
		fmt.Fprintf(progress, "==> HALT write forwarding\n")
		var h haltResult
		if h, err = runHalt(ctx, opts, w, d, progress); err != nil {
			return err
		}
		halt = &h
	}
	prox, err := runProxySection(ctx, opts, w, progress)
	if err != nil {
		return err
	}
	failover, err := failoverSection(ctx, opts, w, progress)
	if err != nil {
		return err
	}
	var bk *backupResult
	if opts.runs(sectionBackup) {
		var b backupResult
		if b, err = runBackup(ctx, opts, w, d, progress); err != nil {
			return err
		}
		bk = &b
	}
	if err := printAll(table, opts, results, repl, halt, prox, failover, bk); err != nil {
		return err
	}
	return errors.Join(writeJSON(jsonOut, opts.config, results, repl, halt, prox), failover.failed())
}

// printAll writes the header and the table of every section that ran.
func printAll(table io.Writer, opts options, results []result, repl *replResult, halt *haltResult,
	prox *proxyResult, failover *failoverResult, bk *backupResult) error {
	printHeader(table, opts)
	if opts.runs(sectionWorkloads) {
		if err := printTable(table, results); err != nil {
			return err
		}
		fmt.Fprintln(table)
		if err := printRecorded(table, results); err != nil {
			return err
		}
		fmt.Fprintln(table)
	}
	if repl != nil {
		if err := printReplication(table, *repl); err != nil {
			return err
		}
		fmt.Fprintln(table)
	}
	if halt != nil {
		if err := printHalt(table, *halt); err != nil {
			return err
		}
	}
	if prox != nil {
		if halt != nil {
			fmt.Fprintln(table)
		}
		if err := printProxy(table, *prox); err != nil {
			return err
		}
	}
	if err := printFailover(table, failover, halt != nil || prox != nil); err != nil {
		return err
	}
	if bk == nil {
		return nil
	}
	if failover != nil || halt != nil || prox != nil {
		fmt.Fprintln(table)
	}
	return printBackup(table, *bk)
}

// checkTools fails early when the litefs binary or fusermount3 is missing.
func checkTools(litefs string) error {
	info, err := os.Stat(litefs)
	if err != nil {
		return fmt.Errorf("litefs binary: %w (build it with make build)", err)
	}
	if info.IsDir() || info.Mode()&0o111 == 0 {
		return fmt.Errorf("litefs binary %s is not an executable file", litefs)
	}
	if _, err := exec.LookPath("fusermount3"); err != nil {
		return fmt.Errorf("fusermount3 not found (install fuse3, e.g. make deps): %w", err)
	}
	return nil
}

// runAll runs every workload on plain/, on the record-nothing mount (the cost
// of FUSE alone) and then on mnt/, checking before and after each litefs run
// that the daemon still serves the mount.
func runAll(ctx context.Context, wls []workload, w *workDir, d, bare *daemon, progress io.Writer) ([]result, error) {
	var results []result
	for _, wl := range wls {
		r := result{workload: wl}
		var err error
		if r.plain, err = runOne(ctx, wl, "plain", w.plain, progress); err != nil {
			return nil, err
		}
		if r.bare, err = runOne(ctx, wl, "fuse", w.bare.mnt, progress); err != nil {
			return nil, errors.Join(err, bare.check())
		}
		if err := d.check(); err != nil {
			return nil, fmt.Errorf("before %s on litefs: %w", wl.name, err)
		}
		if r.litefs, err = runOne(ctx, wl, "litefs", w.mnt, progress); err != nil {
			return nil, errors.Join(err, d.check())
		}
		if err := d.check(); err != nil {
			return nil, fmt.Errorf("after %s on litefs: %w", wl.name, err)
		}
		results = append(results, r)
	}
	return results, nil
}

// runOne runs one workload in one directory and logs its figure.
func runOne(ctx context.Context, wl workload, where, dir string, progress io.Writer) (measurement, error) {
	if err := ctx.Err(); err != nil {
		return measurement{}, fmt.Errorf("interrupted before %s on %s: %w", wl.name, where, err)
	}
	m, err := wl.run(ctx, dir, wl.db)
	if err != nil {
		return m, fmt.Errorf("%s on %s: %w", wl.name, where, err)
	}
	fmt.Fprintf(progress, "    %-45s %-6s %s (%d transactions)\n", wl.name, where, formatValue(wl.unit, m.value), m.committed)
	return m, nil
}

// verifyRecorded reads each litefs database's TXID and fails when litefs
// recorded fewer transactions than the benchmark committed: a benchmark of
// a daemon that records nothing is meaningless.
func verifyRecorded(mnt string, results []result) error {
	for i := range results {
		r := &results[i]
		txid, err := readTXID(mnt, r.workload.db)
		if err != nil {
			return fmt.Errorf("check %s was recorded: %w", r.workload.db, err)
		}
		r.txid = txid
		if txid < r.litefs.committed {
			return fmt.Errorf("litefs recorded %s only up to TXID %d, but the benchmark committed %d write transactions to it",
				r.workload.db, txid, r.litefs.committed)
		}
	}
	return nil
}

// printHeader writes what was measured, on what.
func printHeader(w io.Writer, opts options) {
	version := "unknown version"
	if out, err := exec.Command(opts.litefs, "version").Output(); err == nil {
		version = strings.TrimSpace(string(out))
	}
	var only string
	if len(opts.only) < len(sectionNames) {
		only = ", -only " + strings.Join(opts.only, ",")
	}
	fmt.Fprintf(w, "\nlitefs-bench: %s; %s/%s, %d CPUs; -duration %s, -rows %d, -snapshot-mb %d%s\n\n",
		version, runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), opts.duration, opts.rows, opts.snapshotMB, only)
}

// cleanup removes the temp directory unless keep is set or a mount is still
// on mnt/ (deleting through a live mount would be wrong). After a failure it
// shows the end of the daemon's log.
func (w *workDir) cleanup(keep, failed bool, progress io.Writer) error {
	if failed {
		for _, log := range []string{w.log, w.replica.log, w.snap.log, w.halt.log, w.proxyP.log, w.proxyR.log, w.backup.log} {
			if tail := logTail(log, 30); tail != "" {
				fmt.Fprintf(progress, "--- last lines of the litefs log (%s) ---\n%s\n---\n", log, tail)
			}
		}
	}
	for _, mnt := range w.mounts() {
		mounted, err := isMounted(mnt)
		if err != nil {
			return fmt.Errorf("keeping %s: %w", w.root, err)
		}
		if mounted {
			return fmt.Errorf("keeping %s: %s is still mounted", w.root, mnt)
		}
	}
	if keep {
		fmt.Fprintf(progress, "==> kept %s\n", w.root)
		return nil
	}
	if err := os.RemoveAll(w.root); err != nil {
		return fmt.Errorf("remove temp dir: %w", err)
	}
	return nil
}
