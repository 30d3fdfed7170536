package crc64iso

import "golang.org/x/sys/cpu"

// hasCLMUL reports whether the CPU supports the instructions used by
// updateCLMUL: PCLMULQDQ for the carry-less multiplications and SSE4.1
// for PEXTRQ.
var hasCLMUL = cpu.X86.HasPCLMULQDQ && cpu.X86.HasSSE41

// clmulConsts holds the constants read by updateCLMUL, in the bit-reflected
// representation where bit i of a 64-bit word is the coefficient of
// x^(63-i). P is the ISO polynomial x^64 + x^4 + x^3 + x + 1 and rev(v)
// bit-reverses v. TestCLMULConsts_MatchDerivation recomputes all of them.
//
//	[0] rev(x^575 mod P)  fold a lane's low qword forward by 512 bits
//	[1] rev(x^511 mod P)  fold a lane's high qword forward by 512 bits
//	[2] rev(x^191 mod P)  fold a lane's low qword forward by 128 bits
//	[3] rev(x^127 mod P)  fold a lane's high qword forward by 128 bits
//	[4] low 64 bits of the 65-bit reflection of floor(x^128 / P) (Barrett)
//	[5] low 64 bits of the 65-bit reflection of P (Barrett)
var clmulConsts = [6]uint64{
	0x01b001b1b0000001, 0xb100010100000001,
	0x6b70000000000001, 0xf500000000000001,
	0xb000000000000001, 0xb000000000000001,
}

// updateCLMUL returns the result of adding p to crc. len(p) must be a
// multiple of 16 and at least 64, and hasCLMUL must be true.
//
//go:noescape
func updateCLMUL(crc uint64, p []byte) uint64
