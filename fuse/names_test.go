package fuse

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"bazil.org/fuse"
	"github.com/litefs/litefs"
)

func TestClassify_SideFilesBelongToExistingDatabasesOnly(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	store, err := litefs.OpenStore(context.Background(), litefs.StoreOptions{Dir: t.TempDir(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if _, err := store.CreateDB("app.db"); err != nil {
		t.Fatal(err)
	}
	f := NewFS(store, log)

	tests := []struct {
		name string
		kind entryKind
		db   string
		file litefs.FileKind
	}{
		{"app.db", entryDatabase, "app.db", litefs.FileDatabase},
		{"app.db-journal", entryDatabase, "app.db", litefs.FileJournal},
		{"app.db-wal", entryDatabase, "app.db", litefs.FileWAL},
		{"app.db-shm", entryDatabase, "app.db", litefs.FileSHM},
		{"app.db-lock", entryDatabase, "app.db", litefs.FileLock},
		{"app.db-pos", entryPos, "app.db", 0},
		{".primary", entryVirtual, "", 0},
		{".lag", entryVirtual, "", 0},
		{"app.db-mj0A1B2C3D", entryLocal, "", 0},                 // SQLite super-journal
		{"other.db-journal", entryLocal, "", 0},                  // side file of no database
		{"other.db-pos", entryLocal, "", 0},                      // likewise
		{"new.db", entryDatabase, "new.db", litefs.FileDatabase}, // created on O_CREAT
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := f.classify(tt.name)
			if e.kind != tt.kind || e.db != tt.db || (e.kind == entryDatabase && e.file != tt.file) {
				t.Fatalf("classify(%q) = %+v, want kind %d db %q file %v", tt.name, e, tt.kind, tt.db, tt.file)
			}
		})
	}
}

func TestTrimDirents_CutsAtARecordBoundary(t *testing.T) {
	var data []byte
	for _, name := range []string{"a.db", "a.db-wal", "a-rather-long-database-name.db"} {
		data = fuse.AppendDirent(data, fuse.Dirent{Name: name, Inode: 7, Type: fuse.DT_File})
	}
	first := len(fuse.AppendDirent(nil, fuse.Dirent{Name: "a.db", Inode: 7, Type: fuse.DT_File}))
	tests := []struct {
		size int
		want int
	}{
		{len(data), len(data)},
		{len(data) - 1, len(data) - len(fuse.AppendDirent(nil, fuse.Dirent{Name: "a-rather-long-database-name.db"}))},
		{first, first},
		{first - 1, 0},
		{0, 0},
	}
	for _, tt := range tests {
		if got := len(trimDirents(data[:tt.size])); got != tt.want {
			t.Fatalf("trimDirents of %d bytes kept %d, want %d", tt.size, got, tt.want)
		}
	}
}
