// Ed25519 signature verification (RFC 8032, section 5.1.7), verify only, no dependencies.
//
// Written for the artifact loader from the RFC's definitions: an app can check an artifact's
// signature before it dlopens model.so without linking OpenSSL (which Android's NDK and iOS do
// not provide as a public library). Verification handles only public data (key, message,
// signature), so it is not written to be constant-time; never use this code to sign.
#pragma once

#include <cstddef>
#include <cstdint>

namespace artifact {

// True iff `sig` (64 bytes: R || S) is a valid Ed25519 signature of msg[0..len) by the public
// key `pub` (32 bytes). Rejects S >= L, a public key that is not a point, and non-canonical
// encodings (the check is [S]B - [k]A == R, compared as encodings, as RFC 8032 allows).
bool Ed25519Verify(const uint8_t pub[32], const uint8_t* msg, size_t len, const uint8_t sig[64]);

// Checks the implementation's constants (the base point has order L, d and sqrt(-1) are what
// they should be); true when all hold. Cheap; the runner's tests call it.
bool Ed25519SelfTest();

}  // namespace artifact
