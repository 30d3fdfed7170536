package crc64iso

import (
	"hash/crc64"
	"math/rand/v2"
	"strconv"
	"testing"
)

var stdTable = crc64.MakeTable(crc64.ISO)

// newRand returns a deterministic random source for the named test.
func newRand(seed uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
}

// randomBytes returns n random bytes.
func randomBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// checkUpdate fails t if Update(crc, p) differs from hash/crc64.
func checkUpdate(t *testing.T, crc uint64, p []byte) {
	t.Helper()
	want := crc64.Update(crc, stdTable, p)
	if got := Update(crc, p); got != want {
		t.Fatalf("Update(%#x, len %d) = %#x, want %#x", crc, len(p), got, want)
	}
}

// withFallback runs f with the carry-less multiplication path disabled.
func withFallback(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	saved := useCLMUL
	useCLMUL = false
	defer func() { useCLMUL = saved }()
	f(t)
}

func TestChecksum_MatchesKnownVectors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want uint64
	}{
		{"empty", "", 0},
		{"check string", "123456789", 0xb90956c775a41001},
		{"one byte", "a", crc64.Checksum([]byte("a"), stdTable)},
		{"64 bytes", string(make([]byte, 64)), crc64.Checksum(make([]byte, 64), stdTable)},
		{"1000 x", string(make([]byte, 1000)), crc64.Checksum(make([]byte, 1000), stdTable)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Checksum([]byte(tt.in)); got != tt.want {
				t.Fatalf("Checksum = %#x, want %#x", got, tt.want)
			}
		})
	}
}

// everyLength compares Update with the standard library for random data of
// every length 0..600, from zero and from random initial crc values.
func everyLength(t *testing.T) {
	r := newRand(1)
	for n := 0; n <= 600; n++ {
		p := randomBytes(r, n)
		checkUpdate(t, 0, p)
		checkUpdate(t, r.Uint64(), p)
		checkUpdate(t, ^uint64(0), p)
	}
}

func TestUpdate_MatchesStdlibForEveryLength(t *testing.T) {
	everyLength(t)
}

func TestUpdate_FallbackMatchesStdlibForEveryLength(t *testing.T) {
	withFallback(t, everyLength)
}

func TestUpdate_MatchesStdlibForRandomLengths(t *testing.T) {
	r := newRand(2)
	for i := 0; i < 60; i++ {
		n := r.IntN(300001)
		checkUpdate(t, r.Uint64(), randomBytes(r, n))
	}
	for _, n := range []int{4096, 65536, 262144, 300000} {
		checkUpdate(t, 0, randomBytes(r, n))
	}
}

func TestUpdate_MatchesStdlibAtUnalignedOffsets(t *testing.T) {
	r := newRand(3)
	buf := randomBytes(r, 1<<17)
	tests := []struct {
		name   string
		maxLen int
	}{
		{"short", 128},
		{"medium", 4096},
		{"long", 1 << 16},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i := 0; i < 300; i++ {
				n := r.IntN(tt.maxLen + 1)
				off := r.IntN(len(buf) - n + 1)
				checkUpdate(t, r.Uint64(), buf[off:off+n])
			}
		})
	}
}

func TestUpdate_MatchesStdlibForRandomInitialCRC(t *testing.T) {
	r := newRand(4)
	for _, n := range []int{0, 1, 15, 16, 63, 64, 65, 127, 128, 129, 1000, 4096} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			p := randomBytes(r, n)
			for i := 0; i < 200; i++ {
				checkUpdate(t, r.Uint64(), p)
			}
		})
	}
}

func TestUpdate_ChainedUpdatesMatchSingleCall(t *testing.T) {
	r := newRand(5)
	for i := 0; i < 300; i++ {
		p := randomBytes(r, r.IntN(5000))
		init := r.Uint64()
		want := crc64.Update(init, stdTable, p)

		// Split p at a few random points and chain the Updates.
		crc, rest := init, p
		for len(rest) > 0 {
			k := r.IntN(len(rest) + 1)
			if r.IntN(4) == 0 {
				k = min(len(rest), r.IntN(200))
			}
			crc = Update(crc, rest[:k])
			rest = rest[k:]
		}
		if crc != want {
			t.Fatalf("chained Update over len %d = %#x, want %#x", len(p), crc, want)
		}
	}
}

func TestUpdate_FallbackMatchesStdlibForRandomLengths(t *testing.T) {
	withFallback(t, func(t *testing.T) {
		r := newRand(6)
		for i := 0; i < 20; i++ {
			checkUpdate(t, r.Uint64(), randomBytes(r, r.IntN(300001)))
		}
	})
}

func TestUpdate_DoesNotModifyInput(t *testing.T) {
	r := newRand(7)
	p := randomBytes(r, 1000)
	q := append([]byte(nil), p...)
	Update(r.Uint64(), p)
	if string(p) != string(q) {
		t.Fatal("Update modified its input")
	}
}

func BenchmarkUpdate(b *testing.B) {
	for _, n := range []int{64, 4096, 262144} {
		p := randomBytes(newRand(8), n)
		b.Run(strconv.Itoa(n)+"/crc64iso", func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				Update(0, p)
			}
		})
		b.Run(strconv.Itoa(n)+"/stdlib", func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				crc64.Update(0, stdTable, p)
			}
		})
	}
}
