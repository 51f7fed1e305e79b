// SHA-256 and SHA-512 (FIPS 180-4): SHA-256 checks an artifact's files against manifest.json and
// names keys (key id); SHA-512 is the hash inside Ed25519 (ed25519_verify.h). Streaming, no
// dependencies, for the runner and for apps that embed its checks.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace artifact {

class Sha256 {
 public:
  Sha256();
  void Update(const uint8_t* data, size_t n);
  std::array<uint8_t, 32> Digest();  // finishes the hash; call once
  std::string HexDigest();           // lowercase hex of Digest()

 private:
  void Block(const uint8_t* p);
  std::array<uint32_t, 8> h_;
  std::array<uint8_t, 64> buf_;
  size_t len_ = 0;
  uint64_t bytes_ = 0;
};

class Sha512 {
 public:
  Sha512();
  void Update(const uint8_t* data, size_t n);
  std::array<uint8_t, 64> Digest();  // finishes the hash; call once

 private:
  void Block(const uint8_t* p);
  std::array<uint64_t, 8> h_;
  std::array<uint8_t, 128> buf_;
  size_t len_ = 0;
  uint64_t bytes_ = 0;  // messages here are < 2^61 bytes: the high half of the length is 0
};

std::string Hex(const uint8_t* data, size_t n);

}  // namespace artifact
