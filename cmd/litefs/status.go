package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/litefs/litefs"
)

const statusSynopsis = "litefs status [-url URL] [-json]"

// statusTimeout bounds the whole GET /info exchange.
const statusTimeout = 30 * time.Second

// maxInfoBody bounds the size of a GET /info answer.
const maxInfoBody = 16 << 20

// nodeInfo is the body of GET /info. Unknown fields are ignored; the
// optional ones are pointers so that "absent" shows as "-".
type nodeInfo struct {
	NodeID    string `json:"nodeID"`
	ClusterID string `json:"clusterID"`
	Role      string `json:"role"`
	Candidate *bool  `json:"candidate"`
	Lease     string `json:"lease"`
	Primary   struct {
		Hostname string `json:"hostname"`
		URL      string `json:"url"`
	} `json:"primary"`
	Connected *bool             `json:"connected"`
	LagMillis *int64            `json:"lagMillis"`
	DBs       map[string]dbInfo `json:"dbs"`
	Warnings  []string          `json:"warnings"`
	Backup    []backupInfo      `json:"backup"`
}

// backupInfo is one database's backup in nodeInfo (http.BackupStatus).
type backupInfo struct {
	Name       string  `json:"name"`
	BucketTXID uint64  `json:"bucketTXID"`
	LocalTXID  uint64  `json:"localTXID"`
	LagSeconds float64 `json:"lagSeconds"`
	Errors     int64   `json:"errors"`
	Uploads    int64   `json:"uploads"`
	Objects    int64   `json:"objects"`
	LastError  string  `json:"lastError"`
	Refused    string  `json:"refused"`
}

// dbInfo is one database in nodeInfo.
type dbInfo struct {
	TXID       string `json:"txid"`
	Checksum   string `json:"checksum"`
	LagMillis  *int64 `json:"lagMillis"`
	HaltHolder string `json:"haltHolder"`
}

// runStatus implements "litefs status": one screen about the local node
// from GET /info, or that JSON as is with -json.
func runStatus(ctx context.Context, args []string, stdout io.Writer) error {
	var rawURL string
	var asJSON bool
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.StringVar(&rawURL, "url", defaultURL, "URL of the local litefs daemon's HTTP API")
	fs.BoolVar(&asJSON, "json", false, "print the daemon's /info JSON, for machines")
	pos, help, err := parseCommandFlags(fs, args, statusSynopsis, stdout)
	if help || err != nil {
		return err
	}
	if len(pos) != 0 {
		return &usageError{msg: fmt.Sprintf("status: unexpected argument %q (status takes only flags)", pos[0])}
	}
	c, err := newAPIClient("status", rawURL)
	if err != nil {
		return err
	}
	raw, err := fetchInfo(ctx, c)
	if err != nil {
		return err
	}
	if asJSON {
		var buf bytes.Buffer
		if err := json.Indent(&buf, raw, "", "  "); err != nil {
			return fmt.Errorf("status: %s/info answered with invalid JSON: %v", c.base, err)
		}
		buf.WriteByte('\n')
		_, err := stdout.Write(buf.Bytes())
		return err
	}
	var info nodeInfo
	if err := json.Unmarshal(raw, &info); err != nil {
		return fmt.Errorf("status: %s/info answered with invalid JSON: %v", c.base, err)
	}
	return printStatus(stdout, &info)
}

// fetchInfo returns the raw body of GET /info.
func fetchInfo(ctx context.Context, c *apiClient) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	req, err := c.newRequest(ctx, http.MethodGet, "/info", nil, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.do(req)
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxInfoBody))
	if err != nil {
		return nil, fmt.Errorf("status: read %s/info: %w", c.base, err)
	}
	return raw, nil
}

// printStatus writes the human-readable status screen.
func printStatus(w io.Writer, info *nodeInfo) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "node id:\t%s\n", orDash(info.NodeID))
	fmt.Fprintf(tw, "role:\t%s\n", describeRole(info))
	fmt.Fprintf(tw, "candidate:\t%s\n", describeBool(info.Candidate))
	fmt.Fprintf(tw, "cluster id:\t%s\n", orDash(info.ClusterID))
	fmt.Fprintf(tw, "lease:\t%s\n", orDash(info.Lease))
	if info.Role != "primary" {
		fmt.Fprintf(tw, "lag:\t%s\n", formatLag(info.LagMillis))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, warn := range info.Warnings {
		fmt.Fprintf(w, "WARNING: %s\n", warn)
	}
	fmt.Fprintln(w)
	if len(info.DBs) == 0 {
		_, err := fmt.Fprintln(w, "no databases")
		return err
	}
	names := make([]string, 0, len(info.DBs))
	for name := range info.DBs {
		names = append(names, name)
	}
	sort.Strings(names)
	fmt.Fprintln(tw, "DATABASE\tTXID\tCHECKSUM\tLAG\tHALT HOLDER")
	for _, name := range names {
		db := info.DBs[name]
		lag := db.LagMillis
		if lag == nil && info.Role != "primary" {
			lag = info.LagMillis // the node's lag applies to each database
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", name, orDash(db.TXID), orDash(db.Checksum), formatLag(lag), orDash(db.HaltHolder))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return printBackup(w, info.Backup)
}

// printBackup writes the backup table, nothing without backup.
func printBackup(w io.Writer, all []backupInfo) error {
	if len(all) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w)
	fmt.Fprintln(tw, "BACKUP\tBUCKET TXID\tBEHIND\tOBJECTS\tUPLOADS\tERRORS\tSTATE")
	for _, b := range all {
		state := "ok"
		switch {
		case b.Refused != "":
			state = "REFUSED: " + b.Refused
		case b.LastError != "":
			state = "retrying: " + b.LastError
		}
		behind := "0"
		if b.LocalTXID > b.BucketTXID {
			behind = fmt.Sprintf("%d tx, %s", b.LocalTXID-b.BucketTXID, (time.Duration(b.LagSeconds * float64(time.Second))).Round(time.Millisecond))
		}
		fmt.Fprintf(tw, "%s\t%016x\t%s\t%d\t%d\t%d\t%s\n", b.Name, b.BucketTXID, behind, b.Objects, b.Uploads, b.Errors, state)
	}
	return tw.Flush()
}

// describeRole is "primary", "replica connected to HOST" or "replica
// disconnected". Without a "connected" field, a replica that knows its
// primary's hostname counts as connected.
func describeRole(info *nodeInfo) string {
	switch info.Role {
	case "primary":
		return "primary"
	case "replica":
		connected := info.Primary.Hostname != ""
		if info.Connected != nil {
			connected = *info.Connected
		}
		if !connected {
			if info.Primary.Hostname != "" {
				return fmt.Sprintf("replica disconnected (primary %s)", primaryName(info))
			}
			return "replica disconnected"
		}
		return "replica connected to " + primaryName(info)
	}
	return orDash(info.Role)
}

// primaryName is the primary's hostname, with its URL when known.
func primaryName(info *nodeInfo) string {
	name := orDash(info.Primary.Hostname)
	if info.Primary.URL != "" {
		name += " (" + info.Primary.URL + ")"
	}
	return name
}

// formatLag shows a lag in milliseconds as a duration, "-" if unknown,
// "not caught up yet" for the lag a replica reports before its first
// catch-up.
func formatLag(ms *int64) string {
	if ms == nil {
		return "-"
	}
	d := time.Duration(*ms) * time.Millisecond
	if d >= litefs.NotSyncedLag {
		return "not caught up yet"
	}
	return d.String()
}

// describeBool shows an optional flag as "yes", "no" or "-".
func describeBool(b *bool) string {
	switch {
	case b == nil:
		return "-"
	case *b:
		return "yes"
	}
	return "no"
}

// orDash returns s, or "-" if it is blank.
func orDash(s string) string {
	if strings.TrimSpace(s) == "" {
		return "-"
	}
	return s
}
