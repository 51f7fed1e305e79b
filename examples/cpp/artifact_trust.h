// Signed artifacts: trusted Ed25519 public keys and the check of manifest.sig, done before any
// file of the artifact is loaded (engine/artifact/signing.py writes what this reads).
//
// manifest.sig holds an Ed25519 signature of manifest.json's exact bytes and the signer's key id
// (the first 16 hex digits of sha256 of the raw 32-byte public key). manifest.json lists the
// sha256 of every other file, so once the signature verifies, VerifyFiles vouches for the rest.
#pragma once

#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace artifact {

// A key file that cannot be used (the caller's mistake, not the artifact's).
struct KeyError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct PublicKey {
  std::array<uint8_t, 32> raw;
  std::string id;      // 16 hex digits
  std::string source;  // the file it came from
};

// A public key file: PEM SubjectPublicKeyInfo ("-----BEGIN PUBLIC KEY-----", what
// engine.artifact.write_public_key writes) or 64 hex digits (fmt="hex"). KeyError otherwise.
PublicKey LoadPublicKey(const std::string& path);

std::string KeyId(const std::array<uint8_t, 32>& raw);

// Checks dir/manifest.sig against these exact manifest.json bytes with one of `trusted`; returns
// the signer's key id. CheckError saying which: unsigned, damaged signature file, a key that is
// not trusted, or a signature that does not verify.
std::string VerifyManifestSignature(const std::string& dir, const std::string& manifest_bytes,
                                    const std::vector<PublicKey>& trusted);

}  // namespace artifact
