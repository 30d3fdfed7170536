// Package crc64iso computes the CRC-64 checksum with the ISO polynomial,
// producing exactly the same values as hash/crc64 with
// crc64.MakeTable(crc64.ISO), but much faster on CPUs with carry-less
// multiplication.
//
// On amd64 with PCLMULQDQ and SSE4.1 the bulk of the input is folded
// 64 bytes at a time with carry-less multiplication and reduced with a
// Barrett reduction (see crc64iso_amd64.s). Short inputs, the trailing
// bytes that do not fill a 16-byte block, and all other platforms use
// hash/crc64's table-driven implementation.
package crc64iso

import "hash/crc64"

// minCLMUL is the shortest input handed to the carry-less multiplication
// path. The assembly needs at least four 16-byte blocks to fill its lanes.
const minCLMUL = 64

// isoTable is the standard library's table for the ISO polynomial.
var isoTable = crc64.MakeTable(crc64.ISO)

// useCLMUL selects the carry-less multiplication path. It starts out as
// hasCLMUL and is only changed by tests, to exercise the fallback path.
var useCLMUL = hasCLMUL

// Update returns the result of adding p to crc, exactly like
// crc64.Update(crc, crc64.MakeTable(crc64.ISO), p).
func Update(crc uint64, p []byte) uint64 {
	if useCLMUL && len(p) >= minCLMUL {
		n := len(p) &^ 15
		crc = updateCLMUL(crc, p[:n])
		p = p[n:]
		if len(p) == 0 {
			return crc
		}
	}
	return crc64.Update(crc, isoTable, p)
}

// Checksum is Update(0, p).
func Checksum(p []byte) uint64 {
	return Update(0, p)
}
