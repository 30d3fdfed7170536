// Package testbin finds the server binaries the tests run (bin/consul,
// bin/versitygw, bin/litestream at the repository root, built once by
// make) and collects their output.
package testbin

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// modulePath is the first line of the go.mod that marks the repository root.
const modulePath = "module github.com/litefs/litefs"

// Find returns the executable named by the environment variable env, else
// bin/name at the repository root. A missing one is an error that ends
// with how, which says how to build it.
func Find(env, name, how string) (string, error) {
	path := os.Getenv(env)
	if path == "" {
		root, err := RepoRoot()
		if err != nil {
			return "", fmt.Errorf("locate bin/%s: %w; %s", name, err, how)
		}
		path = filepath.Join(root, "bin", name)
	} else if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	info, err := os.Stat(path)
	if err == nil && (info.IsDir() || info.Mode()&0o111 == 0) {
		err = errors.New("not an executable file")
	}
	if err != nil {
		return "", fmt.Errorf("%s binary %s: %w: %s, or set %s", name, path, err, how, env)
	}
	return path, nil
}

// RepoRoot walks up from the working directory to the directory whose
// go.mod is the litefs module's (tests run in their package's directory;
// the tools modules under tests/tools do not count).
func RepoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	for dir := wd; ; {
		if isModuleRoot(filepath.Join(dir, "go.mod")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod starting with %q in %s or above", modulePath, wd)
		}
		dir = parent
	}
}

// isModuleRoot reports whether the file at path exists and its first line
// is modulePath.
func isModuleRoot(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	return s.Scan() && strings.TrimSpace(s.Text()) == modulePath
}

// SyncBuffer is an output buffer safe for a process's output goroutines.
type SyncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

// Write appends p to the buffer.
func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
