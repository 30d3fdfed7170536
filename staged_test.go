package litefs

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
)

// stagePages writes pages 1..commit (but skip, as a snapshot skips the lock
// page) of a made-up database into a new staged file, with O_DIRECT if direct
// is set and the file system takes it, and returns the staged file's bytes and the bytes the file should
// hold.
func stagePages(t *testing.T, pageSize, commit, skip uint32, direct bool) (got, want []byte) {
	t.Helper()
	db := &DB{dir: t.TempDir(), name: "a.db"}
	s, err := db.createStaged(pageSize, commit, direct)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(uint64(pageSize), uint64(commit)))
	want = make([]byte, int(pageSize)*int(commit))
	for pgno := uint32(1); pgno <= commit; pgno++ {
		if pgno == skip {
			continue // stays zeros
		}
		page := want[int(pgno-1)*int(pageSize) : int(pgno)*int(pageSize)]
		for i := 0; i < len(page); i += 8 {
			binary.LittleEndian.PutUint64(page[i:], rng.Uint64())
		}
		if err := s.write(pgno, page); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	if got, err = os.ReadFile(s.name()); err != nil {
		t.Fatal(err)
	}
	return got, want
}

func TestStagedDB_WritesTheDatabaseFileExactly(t *testing.T) {
	// The lock page is always at 1 GiB; a skipped page stands in for it.
	tests := []struct {
		name     string
		pageSize uint32
		commit   uint32
		skip     uint32
	}{
		{"one page", 4096, 1, 0},
		{"a partial chunk of small pages", 512, 9, 0},
		{"exactly one chunk", 4096, stageChunk / 4096, 0},
		{"one page past a chunk", 4096, stageChunk/4096 + 1, 0},
		{"more chunks than buffers", 4096, stageBuffers*stageChunk/4096 + 3, 0},
		{"64 KiB pages over several chunks", 65536, 37, 0},
		{"a skipped page inside is zeros", 4096, 300, 260},
		{"a skipped last page is zeros", 1024, 1100, 1100},
	}
	for _, tt := range tests {
		for _, direct := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/direct=%t", tt.name, direct), func(t *testing.T) {
				got, want := stagePages(t, tt.pageSize, tt.commit, tt.skip, direct)
				if len(got) != len(want) {
					t.Fatalf("staged file has %d bytes, want %d", len(got), len(want))
				}
				if !bytes.Equal(got, want) {
					t.Fatal("staged file differs from the pages written")
				}
			})
		}
	}
}

// newTestStage creates a staged file, with O_DIRECT where the file system
// takes it, in a new temporary directory.
func newTestStage(t *testing.T, pageSize, commit uint32) *stagedDB {
	t.Helper()
	db := &DB{dir: t.TempDir(), name: "a.db"}
	s, err := db.newStagedDB(pageSize, commit)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestStagedDB_BypassesThePageCacheWhereTheFileSystemAllows(t *testing.T) {
	s := newTestStage(t, 4096, 1)
	defer s.close()
	probe, err := os.OpenFile(s.name()+".probe", os.O_WRONLY|os.O_CREATE|oDirect, 0o644)
	if err == nil {
		probe.Close()
	}
	if err == nil && !s.direct {
		t.Fatal("the file system takes O_DIRECT but the staged file was opened without it")
	}
}

func TestStagedDB_WriteErrorReachesTheCaller(t *testing.T) {
	s := newTestStage(t, 4096, 3*stageChunk/4096)
	s.f.Close() // every write now fails
	page := make([]byte, 4096)
	var werr error
	for pgno := uint32(1); pgno <= s.commit && werr == nil; pgno++ {
		werr = s.write(pgno, page)
	}
	cerr := s.close()
	if werr == nil && cerr == nil {
		t.Fatal("writing to a closed file reported no error")
	}
	for _, err := range []error{werr, cerr} {
		if err != nil && !strings.Contains(err.Error(), "stage snapshot") {
			t.Errorf("error %q does not say it was staging a snapshot", err)
		}
	}
}

func TestStagedDB_RefusesAPageOfTheWrongSize(t *testing.T) {
	s := newTestStage(t, 4096, 2)
	defer s.close()
	if err := s.write(1, make([]byte, 512)); err == nil || !strings.Contains(err.Error(), "has 512 bytes, want 4096") {
		t.Fatalf("write of a 512-byte page into a 4096-byte database: %v", err)
	}
}
