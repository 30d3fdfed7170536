// Package fuzzseed writes seed corpus files for Go's native fuzzing, in the
// "go test fuzz v1" format that `go test` reads from testdata/fuzz/<Target>.
//
// The fuzz targets generate their valid seeds at run time (real LTX files,
// real WALs, real journals) and add them with f.Add; with LITEFS_FUZZ_SEEDS
// set to "write" they also save them, with damaged variants, as committed
// corpus files through this package.
package fuzzseed

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Enabled reports whether the seed corpus is to be (re)written: the
// environment variable LITEFS_FUZZ_SEEDS is "write".
func Enabled() bool { return os.Getenv("LITEFS_FUZZ_SEEDS") == "write" }

// Encode returns the corpus file for one input: the header line, then one
// Go literal per argument. Supported argument types are []byte, string,
// bool, uint8, uint16, uint32, uint64 and int.
func Encode(args ...any) ([]byte, error) {
	var b strings.Builder
	b.WriteString("go test fuzz v1\n")
	for _, a := range args {
		switch v := a.(type) {
		case []byte:
			fmt.Fprintf(&b, "[]byte(%s)\n", strconv.Quote(string(v)))
		case string:
			fmt.Fprintf(&b, "string(%s)\n", strconv.Quote(v))
		case bool:
			fmt.Fprintf(&b, "bool(%t)\n", v)
		case uint8:
			fmt.Fprintf(&b, "byte(%d)\n", v)
		case uint16:
			fmt.Fprintf(&b, "uint16(%d)\n", v)
		case uint32:
			fmt.Fprintf(&b, "uint32(%d)\n", v)
		case uint64:
			fmt.Fprintf(&b, "uint64(%d)\n", v)
		case int:
			fmt.Fprintf(&b, "int(%d)\n", v)
		default:
			return nil, fmt.Errorf("fuzz seed: unsupported argument type %T", a)
		}
	}
	return []byte(b.String()), nil
}

// Write saves one input as testdata/fuzz/<target>/<name> under dir (the
// package directory; "" is the current directory, where `go test` runs).
func Write(dir, target, name string, args ...any) error {
	b, err := Encode(args...)
	if err != nil {
		return err
	}
	d := filepath.Join(dir, "testdata", "fuzz", target)
	if err := os.MkdirAll(d, 0o755); err != nil {
		return fmt.Errorf("fuzz seed: %w", err)
	}
	if err := os.WriteFile(filepath.Join(d, name), b, 0o644); err != nil {
		return fmt.Errorf("fuzz seed: %w", err)
	}
	return nil
}

// Truncated returns b cut to half its length (a stream cut short).
func Truncated(b []byte) []byte { return append([]byte(nil), b[:len(b)/2]...) }

// Flipped returns a copy of b with one bit of byte i (modulo its length)
// inverted.
func Flipped(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	if len(c) > 0 {
		c[i%len(c)] ^= 0x10
	}
	return c
}

// F is the part of *testing.F that Add uses.
type F interface {
	Add(args ...any)
	Helper()
	Fatal(args ...any)
	Name() string
}

// Add adds one input to f's seed corpus and, when Enabled, saves it as
// testdata/fuzz/<f.Name()>/<name> in the current directory too.
func Add(f F, name string, args ...any) {
	f.Helper()
	f.Add(args...)
	if Enabled() {
		if err := Write("", f.Name(), name, args...); err != nil {
			f.Fatal(err)
		}
	}
}
