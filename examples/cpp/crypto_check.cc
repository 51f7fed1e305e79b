// crypto_check: a line-oriented driver for the runner's own SHA-2 and Ed25519 code, so tests can
// compare it with independent implementations (Python's hashlib, the cryptography package) and
// RFC 8032's test vectors. Not needed by apps.
//
// Reads lines from stdin, writes one result line per input line:
//   selftest                      -> "ok" | "FAILED"
//   sha256 MSG_HEX                -> hex digest
//   sha512 MSG_HEX                -> hex digest
//   verify PUB_HEX SIG_HEX MSG_HEX  -> "valid" | "invalid"   (MSG_HEX may be "-" for empty)
//   keyfile PATH                  -> key id and raw key hex, or "error: ..."
#include <cstdint>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "artifact_trust.h"
#include "ed25519_verify.h"
#include "sha2.h"

namespace {

bool Unhex(const std::string& hex, std::vector<uint8_t>* out) {
  if (hex == "-") return true;
  if (hex.size() % 2) return false;
  for (size_t i = 0; i < hex.size(); i += 2) {
    int v = 0;
    for (int k = 0; k < 2; ++k) {
      char c = hex[i + k];
      int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
      if (d < 0) return false;
      v = v * 16 + d;
    }
    out->push_back(uint8_t(v));
  }
  return true;
}

std::string Run(const std::string& line) {
  std::istringstream ss(line);
  std::string cmd, a, b, c;
  ss >> cmd >> a >> b >> c;
  std::vector<uint8_t> x, y, z;
  if (cmd == "selftest") return artifact::Ed25519SelfTest() ? "ok" : "FAILED";
  if (cmd == "sha256" || cmd == "sha512") {
    if (!Unhex(a, &x)) return "error: bad hex";
    if (cmd == "sha256") {
      artifact::Sha256 h;
      h.Update(x.data(), x.size());
      return h.HexDigest();
    }
    artifact::Sha512 h;
    h.Update(x.data(), x.size());
    auto d = h.Digest();
    return artifact::Hex(d.data(), d.size());
  }
  if (cmd == "verify") {
    if (!Unhex(a, &x) || !Unhex(b, &y) || !Unhex(c, &z) || x.size() != 32 || y.size() != 64)
      return "error: verify PUB_HEX(32 bytes) SIG_HEX(64 bytes) MSG_HEX";
    return artifact::Ed25519Verify(x.data(), z.data(), z.size(), y.data()) ? "valid" : "invalid";
  }
  if (cmd == "keyfile") {
    try {
      artifact::PublicKey k = artifact::LoadPublicKey(a);
      return k.id + " " + artifact::Hex(k.raw.data(), k.raw.size());
    } catch (const std::exception& e) {
      return std::string("error: ") + e.what();
    }
  }
  return "error: unknown command " + cmd;
}

}  // namespace

int main() {
  std::string line;
  while (std::getline(std::cin, line)) std::cout << Run(line) << "\n";
  return 0;
}
