// Trusted keys and manifest.sig verification; see artifact_trust.h.
#include "artifact_trust.h"

#include <sys/stat.h>

#include <cstring>

#include "artifact_check.h"
#include "ed25519_verify.h"
#include "sha2.h"

namespace artifact {
namespace {

constexpr int64_t kMaxKeyFileBytes = 16 << 10;

// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410):
// SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING (0 unused bits) } + the 32 key bytes.
const uint8_t kSpkiPrefix[12] = {0x30, 0x2a, 0x30, 0x05, 0x06, 0x03,
                                 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00};

int HexVal(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool FromHex(const std::string& hex, uint8_t* out, size_t n) {
  if (hex.size() != 2 * n) return false;
  for (size_t i = 0; i < n; ++i) {
    int hi = HexVal(hex[2 * i]), lo = HexVal(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = uint8_t(hi << 4 | lo);
  }
  return true;
}

std::string Trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t\r\n"), b = s.find_last_not_of(" \t\r\n");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

// Standard base64 (RFC 4648) with whitespace skipped; false on any other character.
bool Base64Decode(const std::string& in, std::vector<uint8_t>* out) {
  uint32_t acc = 0;
  int bits = 0, pad = 0;
  for (char c : in) {
    int v;
    if (c >= 'A' && c <= 'Z') v = c - 'A';
    else if (c >= 'a' && c <= 'z') v = c - 'a' + 26;
    else if (c >= '0' && c <= '9') v = c - '0' + 52;
    else if (c == '+') v = 62;
    else if (c == '/') v = 63;
    else if (c == '=') { ++pad; continue; }
    else if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
    else return false;
    if (pad) return false;  // data after padding
    acc = (acc << 6) | uint32_t(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out->push_back(uint8_t(acc >> bits));
    }
  }
  return pad <= 2;
}

}  // namespace

std::string KeyId(const std::array<uint8_t, 32>& raw) {
  Sha256 h;
  h.Update(raw.data(), raw.size());
  return h.HexDigest().substr(0, 16);
}

PublicKey LoadPublicKey(const std::string& path) {
  std::string text;
  try {
    text = ReadLimited(path, kMaxKeyFileBytes);
  } catch (const CheckError& e) {
    throw KeyError(std::string("--trusted-key: ") + e.what());
  }
  PublicKey key;
  key.source = path;
  std::string t = Trim(text);
  if (FromHex(t, key.raw.data(), 32)) {
    key.id = KeyId(key.raw);
    return key;
  }
  const std::string begin = "-----BEGIN PUBLIC KEY-----", end = "-----END PUBLIC KEY-----";
  size_t b = t.find(begin), e = t.find(end);
  std::vector<uint8_t> der;
  if (b == std::string::npos || e == std::string::npos || e < b ||
      !Base64Decode(t.substr(b + begin.size(), e - b - begin.size()), &der)) {
    throw KeyError("--trusted-key " + path + ": not a PEM public key (BEGIN PUBLIC KEY) or 64 hex "
                   "digits");
  }
  if (der.size() != 44 || std::memcmp(der.data(), kSpkiPrefix, 12) != 0) {
    throw KeyError("--trusted-key " + path + ": a PEM public key, but not an Ed25519 one");
  }
  std::memcpy(key.raw.data(), der.data() + 12, 32);
  key.id = KeyId(key.raw);
  return key;
}

std::string VerifyManifestSignature(const std::string& dir, const std::string& manifest_bytes,
                                    const std::vector<PublicKey>& trusted) {
  std::string sig_path = JoinPath(dir, "manifest.sig");
  struct stat st;
  if (lstat(sig_path.c_str(), &st) != 0) {
    throw CheckError(dir + " is not signed (no manifest.sig), but --trusted-key was given: "
                     "refusing to load it");
  }
  SignatureFile sig = ParseSignature(ReadLimited(sig_path, kMaxSignatureBytes), sig_path);
  std::string ids;
  bool any = false;
  for (const PublicKey& k : trusted) {
    ids += (ids.empty() ? "" : ", ") + k.id;
    if (k.id != sig.key_id) continue;
    any = true;
    uint8_t s[64];
    FromHex(sig.signature_hex, s, 64);  // 128 hex digits: checked by ParseSignature
    if (Ed25519Verify(k.raw.data(), reinterpret_cast<const uint8_t*>(manifest_bytes.data()),
                      manifest_bytes.size(), s)) {
      return k.id;
    }
  }
  if (!any) {
    throw CheckError(sig_path + ": signed by key " + sig.key_id + ", which is not a trusted key "
                     "(trusted: " + ids + "); refusing to load it");
  }
  throw CheckError(sig_path + ": the Ed25519 signature does not verify with trusted key " +
                   sig.key_id + ": manifest.json was modified after it was signed, or the "
                   "signature is damaged; refusing to load it");
}

}  // namespace artifact
