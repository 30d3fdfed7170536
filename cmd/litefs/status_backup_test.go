package main

import (
	"bytes"
	"testing"
)

func TestStatusPrintsBackupTable(t *testing.T) {
	for _, tt := range []struct {
		name  string
		info  []backupInfo
		lines []string
	}{
		{"none without backup", nil, nil},
		{"up to date, behind, retrying, refused", []backupInfo{
			{Name: "a.db", BucketTXID: 16, LocalTXID: 16, Objects: 3, Uploads: 9},
			{Name: "b.db", BucketTXID: 2, LocalTXID: 5, LagSeconds: 1.5, Objects: 1, Uploads: 1, Errors: 4, LastError: "connection refused"},
			{Name: "c.db", BucketTXID: 9, LocalTXID: 5, Refused: "bucket is ahead"},
		}, []string{
			`^BACKUP\s+BUCKET TXID\s+BEHIND\s+OBJECTS\s+UPLOADS\s+ERRORS\s+STATE$`,
			`^a\.db\s+0000000000000010\s+0\s+3\s+9\s+0\s+ok$`,
			`^b\.db\s+0000000000000002\s+3 tx, 1\.5s\s+1\s+1\s+4\s+retrying: connection refused$`,
			`^c\.db\s+0000000000000009\s+0\s+0\s+0\s+0\s+REFUSED: bucket is ahead$`,
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := printBackup(&buf, tt.info); err != nil {
				t.Fatal(err)
			}
			if tt.lines == nil && buf.Len() != 0 {
				t.Fatalf("printed %q without backup", buf.String())
			}
			for _, re := range tt.lines {
				if !lineMatching(buf.String(), re) {
					t.Errorf("no line matches %s in:\n%s", re, buf.String())
				}
			}
		})
	}
}
