package crc64iso

import (
	"hash/crc64"
	"math/big"
	"math/bits"
	"testing"
)

// isoLow holds the coefficients below x^64 of the ISO polynomial
// P = x^64 + x^4 + x^3 + x + 1, one bit per coefficient (bit i is x^i).
const isoLow = 0x1b

// xPowModP returns x^n mod P with bit i as the coefficient of x^i.
func xPowModP(n int) uint64 {
	v := uint64(1)
	for range n {
		carry := v >> 63
		v <<= 1
		if carry != 0 {
			v ^= isoLow
		}
	}
	return v
}

// isoPoly returns P as a big integer, bit i being the coefficient of x^i.
func isoPoly() *big.Int {
	p := new(big.Int).Lsh(big.NewInt(1), 64)
	return p.Or(p, big.NewInt(isoLow))
}

// barrettMu returns floor(x^128 / P) by polynomial long division.
func barrettMu() *big.Int {
	rem := new(big.Int).Lsh(big.NewInt(1), 128)
	q := new(big.Int)
	for i := 128; i >= 64; i-- {
		if rem.Bit(i) != 0 {
			q.SetBit(q, i-64, 1)
			rem.Xor(rem, new(big.Int).Lsh(isoPoly(), uint(i-64)))
		}
	}
	return q
}

// reflect65Low returns the low 64 bits of the 65-bit reflection of v,
// which must have degree at most 64.
func reflect65Low(v *big.Int) uint64 {
	var r uint64
	for i := range 64 {
		r |= uint64(v.Bit(64-i)) << i
	}
	return r
}

func TestCLMULConsts_MatchDerivation(t *testing.T) {
	want := [6]uint64{
		bits.Reverse64(xPowModP(512 + 63)),
		bits.Reverse64(xPowModP(512 - 1)),
		bits.Reverse64(xPowModP(128 + 63)),
		bits.Reverse64(xPowModP(128 - 1)),
		reflect65Low(barrettMu()),
		reflect65Low(isoPoly()),
	}
	if clmulConsts != want {
		t.Fatalf("clmulConsts = %#x\nderived     = %#x", clmulConsts, want)
	}
	if got := bits.Reverse64(isoLow); got != crc64.ISO {
		t.Fatalf("reflected polynomial = %#x, want crc64.ISO %#x", got, uint64(crc64.ISO))
	}
}

func TestUpdateCLMUL_MatchesStdlibForBlockMultiples(t *testing.T) {
	if !hasCLMUL {
		t.Skip("CPU lacks PCLMULQDQ or SSE4.1")
	}
	r := newRand(9)
	buf := randomBytes(r, 8192+15)
	for n := minCLMUL; n <= 8192; n += 16 {
		off := r.IntN(16)
		p := buf[off : off+n]
		crc := r.Uint64()
		want := crc64.Update(crc, stdTable, p)
		if got := updateCLMUL(crc, p); got != want {
			t.Fatalf("updateCLMUL(%#x, len %d, offset %d) = %#x, want %#x",
				crc, n, off, got, want)
		}
	}
}

func TestUpdate_UsesCLMULWhenCPUSupportsIt(t *testing.T) {
	if !hasCLMUL {
		t.Skip("CPU lacks PCLMULQDQ or SSE4.1")
	}
	if !useCLMUL {
		t.Fatal("useCLMUL is false although the CPU supports PCLMULQDQ and SSE4.1")
	}
}
