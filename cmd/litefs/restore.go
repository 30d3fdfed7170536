package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/litefs/litefs"
	"github.com/litefs/litefs/backup"
	"github.com/superfly/ltx"
)

const restoreSynopsis = "litefs restore [-config PATH] -name NAME [-o PATH] [-txid N | -timestamp T]"

// restoreFlags are the command-line options of "litefs restore".
type restoreFlags struct {
	configPath string
	name       string
	out        string
	txid       string
	timestamp  string
}

// parseRestoreFlags parses and checks the flags of "litefs restore".
func parseRestoreFlags(args []string, stdout io.Writer) (*restoreFlags, backup.RestoreOptions, bool, error) {
	var f restoreFlags
	var opts backup.RestoreOptions
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&f.configPath, "config", "", "path to litefs.yml, whose backup section names the bucket (default: ./litefs.yml, ~/litefs.yml, /etc/litefs.yml)")
	fs.StringVar(&f.name, "name", "", "name of the database to restore (required)")
	fs.StringVar(&f.out, "o", "", "where to write the database (default: NAME in the current directory); must not exist")
	fs.StringVar(&f.txid, "txid", "", "restore to this transaction id (16 hex digits, or decimal)")
	fs.StringVar(&f.timestamp, "timestamp", "", "restore to the newest point at or before this time (RFC 3339)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printCommandHelp(fs, restoreSynopsis, stdout)
			return nil, opts, true, nil
		}
		return nil, opts, false, &usageError{msg: "restore: " + err.Error()}
	}
	if fs.NArg() > 0 {
		return nil, opts, false, &usageError{msg: fmt.Sprintf("restore: unexpected argument %q (use -o PATH)", fs.Arg(0))}
	}
	if f.name == "" {
		return nil, opts, false, &usageError{msg: "restore: -name is required"}
	}
	if err := litefs.ValidateName(f.name); err != nil {
		return nil, opts, false, &usageError{msg: fmt.Sprintf("restore: -name: %v", err)}
	}
	if f.txid != "" && f.timestamp != "" {
		return nil, opts, false, &usageError{msg: "restore: give -txid or -timestamp, not both"}
	}
	var err error
	if f.txid != "" {
		if opts.TXID, err = parseTXIDFlag(f.txid); err != nil {
			return nil, opts, false, &usageError{msg: fmt.Sprintf("restore: -txid %q: %v", f.txid, err)}
		}
	}
	if f.timestamp != "" {
		if opts.Timestamp, err = time.Parse(time.RFC3339Nano, f.timestamp); err != nil {
			return nil, opts, false, &usageError{msg: fmt.Sprintf("restore: -timestamp %q: write it like 2026-01-02T15:04:05Z", f.timestamp)}
		}
	}
	if f.out == "" {
		f.out = f.name
	}
	return &f, opts, false, nil
}

// parseTXIDFlag accepts a TXID as 16 hex digits (as litefs prints them) or
// as a decimal number.
func parseTXIDFlag(s string) (ltx.TXID, error) {
	if len(s) == 16 {
		return ltx.ParseTXID(s)
	}
	var n uint64
	if _, err := fmt.Sscanf(s, "%d", &n); err != nil || n == 0 || fmt.Sprint(n) != s {
		return 0, errors.New("not a transaction id: write 16 hex digits or a decimal number above 0")
	}
	return ltx.TXID(n), nil
}

// runRestore implements "litefs restore": it writes a verified copy of a
// database from the backup named by the config's backup section.
func runRestore(ctx context.Context, args []string, stdout io.Writer) error {
	f, opts, help, err := parseRestoreFlags(args, stdout)
	if help || err != nil {
		return err
	}
	path, err := FindConfig(f.configPath)
	if err != nil {
		return err
	}
	cfg, err := LoadConfig(path, true)
	if err != nil {
		return err
	}
	if !cfg.Backup.Enabled() {
		return fmt.Errorf("restore: config %s has no backup section (backup.type: s3): nothing to restore from", path)
	}
	client, err := backup.NewClient(ctx, cfg.Backup.backupConfig())
	if err != nil {
		return err
	}
	opts.Progress = func(done, total int, file backup.FileInfo) {
		fmt.Fprintf(os.Stderr, "restore %s: %d/%d files (level %d, txid %s-%s, %d bytes)\n",
			f.name, done, total, file.Level, file.MinTXID, file.MaxTXID, file.Size)
	}
	pos, err := client.Restore(ctx, f.name, f.out, opts)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "restored %s to %s at txid %s (checksum %s, verified)\n", f.name, f.out, pos.TXID, pos.PostApplyChecksum)
	return nil
}
