package testbin

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRepoRoot checks that the walk up from the package directory finds the
// litefs module root, not a nested module such as tests/tools.
func TestRepoRoot(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	if want, _ := filepath.Abs(filepath.Join(wd, "..", "..")); root != want {
		t.Fatalf("RepoRoot = %s, want %s", root, want)
	}
	if isModuleRoot(filepath.Join(root, "tests", "tools", "go.mod")) {
		t.Fatal("tests/tools/go.mod taken for the litefs module")
	}
}

func TestFind_NamesTheBinaryAndHowToBuildIt(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "tool")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, env, want string
	}{
		{"executable from the environment", exe, ""},
		{"not executable", plain, "not an executable file"},
		{"missing", filepath.Join(dir, "nope"), "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("LITEFS_TESTBIN_TOOL", tt.env)
			got, err := Find("LITEFS_TESTBIN_TOOL", "tool", "run make tool")
			if tt.want == "" {
				if err != nil || got != tt.env {
					t.Fatalf("Find = %q, %v; want %q", got, err, tt.env)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "run make tool") {
				t.Fatalf("err %v, want one saying %q and how to build it", err, tt.want)
			}
		})
	}
}
