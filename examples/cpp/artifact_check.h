// Checks an artifact directory before anything of it is loaded: manifest.json against the
// format-1 schema (the fields a loader uses, with their types and ranges), every listed file's
// size and sha256, and (artifact_trust.h) manifest.sig against trusted Ed25519 keys.
//
// Every refusal is a CheckError whose message names the file and, for a bad field, its path:
//   manifest.json: field 'outputs[0].shape[1]' must be a non-negative int, got "x"
// Nothing here throws anything else for any input (tvm_ffi's JSON parser is only handed text
// that passed the size, UTF-8, nesting and duplicate-key scan first: it recurses, and a deeply
// nested file would otherwise overflow the stack).
//
// The limits are engine/artifact/layout.py's (keep them in step).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace artifact {

constexpr int kFormatVersion = 1;
constexpr int64_t kMaxManifestBytes = int64_t(4) << 20;
constexpr int64_t kMaxSignatureBytes = int64_t(64) << 10;
constexpr int kMaxJsonDepth = 32;
constexpr int kMaxRank = 16;
constexpr int64_t kMaxDim = (int64_t(1) << 31) - 1;
constexpr int64_t kMaxElements = int64_t(1) << 40;
constexpr int64_t kMaxFiles = 4096;
constexpr int64_t kMaxFileBytes = int64_t(1) << 53;

struct CheckError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Spec {
  std::string name;
  std::vector<int64_t> shape;
  std::string dtype = "float32";
};

struct FileEntry {
  std::string name;
  std::string sha256;
  int64_t size = -1;
};

struct Manifest {
  std::string module = "model.so";
  std::string entry = "main";
  std::string target;
  std::string arch;
  std::vector<Spec> inputs, outputs;
  std::vector<FileEntry> files;
};

std::string JoinPath(const std::string& dir, const std::string& name);

// The bytes of a regular file of at most `limit` bytes (size checked before reading; FIFOs,
// devices and directories refused, never blocked on).
std::string ReadLimited(const std::string& path, int64_t limit);

// manifest.json's bytes (read once: the same bytes are verified and then parsed).
std::string ReadManifestBytes(const std::string& dir);

// Parses and validates manifest.json's bytes; `path` is used in messages.
Manifest ParseManifest(const std::string& bytes, const std::string& path);

// manifest.sig: which key signed (its id) and the 64-byte signature, as hex.
struct SignatureFile {
  std::string key_id;
  std::string signature_hex;
};
SignatureFile ParseSignature(const std::string& bytes, const std::string& path);

// Every listed file is a regular file of the listed size and sha256 (reads at most size bytes).
void VerifyFiles(const std::string& dir, const Manifest& m);

// "float32[1, 10]"
std::string Describe(const std::string& dtype, const std::vector<int64_t>& shape);

}  // namespace artifact
