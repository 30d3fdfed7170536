//go:build !amd64

package crc64iso

// hasCLMUL reports whether the carry-less multiplication path is
// available. It never is on this architecture.
const hasCLMUL = false

// updateCLMUL is never called on this architecture because hasCLMUL is
// false.
func updateCLMUL(crc uint64, p []byte) uint64 {
	panic("crc64iso: carry-less multiplication is not available")
}
