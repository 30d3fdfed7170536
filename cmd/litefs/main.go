// Command litefs mounts a FUSE filesystem in front of SQLite databases and
// replicates every write transaction from the primary node to its replicas.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
)

// Version and Commit are set at build time with -ldflags.
var (
	Version = "dev"
	Commit  = "unknown"
)

// usageError is an error in the command line: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// exitError carries a subprocess's exit code out of a command.
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

const usage = `litefs: replicated SQLite through a FUSE mount

Usage:
  litefs mount [-config PATH] [-no-expand-env] [-with-lock] [-- CMD ARGS...]
  litefs import -name NAME [-url URL] PATH
  litefs export -name NAME [-url URL] PATH
  litefs restore [-config PATH] -name NAME [-o PATH] [-txid N | -timestamp T]
  litefs status [-url URL] [-json]
  litefs run [-url URL] [-with-lock] [-db NAME]... [-with-halt-lock-on PATH] [-promote] [-if-candidate] -- CMD ARGS...
  litefs lock [-url URL] [-db NAME]...
  litefs unlock [-url URL]
  litefs version

import, export and status talk to the local daemon's HTTP API (default -url
http://localhost:20202). When the daemon has http.auth-token, set
LITEFS_AUTH_TOKEN to it; it is sent as "Authorization: Bearer <token>".
When it serves HTTPS (http.tls), use -url https://HOST:PORT and set
LITEFS_TLS_CA to its CA file, plus LITEFS_TLS_CERT and LITEFS_TLS_KEY to a
client certificate when it has http.tls.ca (docs/tls.md).

Run "litefs COMMAND -h" for a command's flags.`

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// run executes one command line and returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	err := dispatch(ctx, args, stdout)
	var ue *usageError
	var ee *exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "litefs: %s\n\n%s\n", ue.msg, usage)
		return 2
	}
	fmt.Fprintf(stderr, "litefs: %s\n", err)
	return 1
}

func dispatch(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return &usageError{msg: "no command given"}
	}
	switch args[0] {
	case "mount":
		return runMount(ctx, args[1:], stdout)
	case "import":
		return runImport(ctx, args[1:], stdout)
	case "export":
		return runExport(ctx, args[1:], stdout)
	case "status":
		return runStatus(ctx, args[1:], stdout)
	case "restore":
		return runRestore(ctx, args[1:], stdout)
	case "run":
		return runRun(ctx, args[1:], stdout)
	case "lock", "unlock", holdLockCommand:
		return runLockCommand(ctx, args[0], args[1:], stdout)
	case "version":
		return runVersion(args[1:], stdout)
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, usage)
		return nil
	}
	return &usageError{msg: fmt.Sprintf("unknown command %q", args[0])}
}

// runVersion implements "litefs version": it takes no arguments but -h.
func runVersion(args []string, stdout io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "-h", "-help", "--help":
			fmt.Fprintln(stdout, "Usage:\n  litefs version\n\nPrints the version and the commit it was built from.")
			return nil
		}
		return &usageError{msg: fmt.Sprintf("version: unexpected argument %q (version takes none)", args[0])}
	}
	fmt.Fprintf(stdout, "litefs %s (commit %s)\n", Version, Commit)
	return nil
}
