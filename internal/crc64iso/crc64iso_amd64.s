#include "textflag.h"

// Bit-reflected CRC-64/ISO by carry-less multiplication.
//
// A 16-byte block loaded little-endian into an XMM register holds the
// message polynomial with bit i of the register as the coefficient of
// x^(127-i): the low qword H is the high-degree half and the high qword L
// the low-degree half, so the block is H*x^64 + L. A PCLMULQDQ of two
// reflected qwords a, b yields the 128-bit reflected value of a*b*x, which
// is why the constants in clmulConsts use exponents one below the fold
// distance.

// FOLD replaces lane by lane*x^D mod P (as a 128-bit value aligned with
// the block D bits further on) and xors in that next block, loaded from
// off(SI) through tmp. X8 holds the constant pair for D.
#define FOLD(lane, tmp, off) \
	MOVO      lane, tmp;      \
	PCLMULQDQ $0x00, X8, lane; \
	PCLMULQDQ $0x11, X8, tmp; \
	PXOR      tmp, lane;      \
	MOVOU     off(SI), tmp;   \
	PXOR      tmp, lane

// FOLDREG xors src*x^128 mod P into dst, clobbering src. X9 holds the
// 128-bit fold constants.
#define FOLDREG(src, dst, tmp) \
	MOVO      src, tmp;      \
	PCLMULQDQ $0x00, X9, src; \
	PCLMULQDQ $0x11, X9, tmp; \
	PXOR      src, dst;      \
	PXOR      tmp, dst

// func updateCLMUL(crc uint64, p []byte) uint64
TEXT ·updateCLMUL(SB), NOSPLIT, $0-40
	MOVQ crc+0(FP), AX
	MOVQ p_base+8(FP), SI
	MOVQ p_len+16(FP), CX

	// Load four lanes and xor the inverted crc into the first 8 bytes.
	NOTQ  AX
	MOVQ  AX, X4
	MOVOU 0(SI), X0
	MOVOU 16(SI), X1
	MOVOU 32(SI), X2
	MOVOU 48(SI), X3
	PXOR  X4, X0
	ADDQ  $64, SI
	SUBQ  $64, CX

	MOVOU ·clmulConsts+0(SB), X8
	MOVOU ·clmulConsts+16(SB), X9
	CMPQ  CX, $64
	JB    fold4

loop64:
	// Fold each lane forward by 512 bits onto the next 64 bytes.
	FOLD(X0, X4, 0)
	FOLD(X1, X5, 16)
	FOLD(X2, X6, 32)
	FOLD(X3, X7, 48)
	ADDQ $64, SI
	SUBQ $64, CX
	CMPQ CX, $64
	JAE  loop64

fold4:
	// Fold the four lanes into one, 128 bits at a time.
	FOLDREG(X0, X1, X4)
	FOLDREG(X1, X2, X5)
	FOLDREG(X2, X3, X6)
	MOVO X9, X8

loop16:
	// Fold the remaining 16-byte blocks one at a time.
	CMPQ CX, $16
	JB   reduce
	FOLD(X3, X4, 0)
	ADDQ $16, SI
	SUBQ $16, CX
	JMP  loop16

reduce:
	// X3 = H*x^64 + L. The CRC state is (H*x^128 + L*x^64) mod P; form
	// the 128-bit U = H*(x^127 mod P)*x + L*x^64, which has that remainder.
	MOVO      X3, X4
	PCLMULQDQ $0x10, X9, X3
	PSRLDQ    $8, X4
	PXOR      X4, X3

	// Barrett reduction of U = Uh*x^64 + Ul (Uh in the low qword):
	// q = floor(Uh*floor(x^128/P) / x^64), state = Ul + (q*P mod x^64).
	MOVOU     ·clmulConsts+32(SB), X10
	MOVO      X3, X5
	PCLMULQDQ $0x00, X10, X5
	MOVO      X5, X6
	PCLMULQDQ $0x10, X10, X6
	PEXTRQ    $1, X3, AX
	MOVQ      X5, BX
	PEXTRQ    $1, X6, DX
	XORQ      BX, AX
	XORQ      DX, AX
	NOTQ      AX
	MOVQ      AX, ret+32(FP)
	RET
