package main

import (
	"io"
	"strings"
	"testing"

	"github.com/superfly/ltx"
)

func TestParseRestoreFlags(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		txid ltx.TXID
		out  string
		want string // error substring; "" for success
	}{
		{"name only writes NAME here", []string{"-name", "app.db"}, 0, "app.db", ""},
		{"hex txid", []string{"-name", "a.db", "-txid", "000000000000001f", "-o", "/tmp/x"}, 31, "/tmp/x", ""},
		{"decimal txid", []string{"-name", "a.db", "-txid", "31"}, 31, "a.db", ""},
		{"missing name", []string{"-txid", "3"}, 0, "", "-name is required"},
		{"bad name", []string{"-name", "../x"}, 0, "", "-name"},
		{"txid and timestamp", []string{"-name", "a.db", "-txid", "3", "-timestamp", "2026-01-01T00:00:00Z"}, 0, "", "not both"},
		{"bad txid", []string{"-name", "a.db", "-txid", "x1"}, 0, "", "not a transaction id"},
		{"zero txid", []string{"-name", "a.db", "-txid", "0"}, 0, "", "not a transaction id"},
		{"bad timestamp", []string{"-name", "a.db", "-timestamp", "yesterday"}, 0, "", "write it like"},
		{"stray argument", []string{"-name", "a.db", "out.db"}, 0, "", "use -o PATH"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f, opts, _, err := parseRestoreFlags(tt.args, io.Discard)
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if opts.TXID != tt.txid || f.out != tt.out {
				t.Fatalf("txid %s out %q, want %s %q", opts.TXID, f.out, tt.txid, tt.out)
			}
		})
	}
}
