// manifest.json read within its size limit, scanned, parsed with tvm_ffi's JSON reader and checked
// field by field; files checked against it. See artifact_check.h.
#include "artifact_check.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <tvm/ffi/any.h>
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/map.h>
#include <tvm/ffi/error.h>
#include <tvm/ffi/extra/json.h>
#include <tvm/ffi/string.h>

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <set>
#include <sstream>

#include "sha2.h"

namespace artifact {

namespace ffi = tvm::ffi;
using JObject = ffi::Map<ffi::Any, ffi::Any>;
using JArray = ffi::Array<ffi::Any>;

std::string JoinPath(const std::string& dir, const std::string& name) {
  return dir.empty() || dir.back() == '/' ? dir + name : dir + "/" + name;
}

namespace {

const char* const kDtypes[] = {"float16", "bfloat16", "float32", "float64", "int8",
                               "int16",   "int32",    "int64",   "uint8",   "uint16",
                               "uint32",  "uint64",   "bool"};

// An open file descriptor closed on scope exit.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

// Opens `path` without blocking (a FIFO named manifest.json must not hang the loader) and
// refuses anything but a regular file.
void OpenRegular(const std::string& path, Fd* f, struct stat* st, const std::string& missing) {
  f->fd = open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (f->fd < 0) {
    if (errno == ENOENT) throw CheckError(path + " is missing: " + missing);
    throw CheckError("cannot read " + path + ": " + std::strerror(errno));
  }
  if (fstat(f->fd, st) != 0) throw CheckError("cannot stat " + path + ": " + std::strerror(errno));
  if (!S_ISREG(st->st_mode)) {
    throw CheckError(path + " is " + (S_ISDIR(st->st_mode) ? "a directory" : "not a regular file") +
                     "; an artifact holds regular files only");
  }
}

bool IsHex(const std::string& s, size_t n) {
  if (s.size() != n) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

// ---- the scan before parsing: UTF-8, nesting, duplicate keys ---------------------------------

// Offset of the first byte that is not well-formed UTF-8, or npos.
size_t BadUtf8At(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t i = 0, n = s.size();
  while (i < n) {
    unsigned c = p[i];
    size_t len = c < 0x80           ? 1
                 : (c >> 5) == 0x6  ? 2
                 : (c >> 4) == 0xe  ? 3
                 : (c >> 3) == 0x1e ? 4
                                    : 0;
    if (len == 0 || i + len > n) return i;
    uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1f) : len == 3 ? (c & 0x0f) : (c & 0x07);
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xc0) != 0x80) return i;
      cp = (cp << 6) | (p[i + k] & 0x3f);
    }
    const uint32_t min_cp[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += len;
  }
  return std::string::npos;
}

void ScanJson(const std::string& s, const std::string& path) {
  size_t bad = BadUtf8At(s);
  if (bad != std::string::npos) {
    throw CheckError(path + " is not UTF-8 text (bad byte at offset " + std::to_string(bad) +
                     "): the file is damaged");
  }
  struct Level {
    bool object;
    std::set<std::string> keys;
  };
  std::vector<Level> stack;
  size_t i = 0, n = s.size();
  while (i < n) {
    char ch = s[i];
    if (ch == '"') {
      size_t start = ++i;
      while (i < n && s[i] != '"') i += s[i] == '\\' ? 2 : 1;
      if (i >= n) return;  // unterminated string: the parser says so
      std::string raw = s.substr(start, i - start);
      size_t j = ++i;
      while (j < n && (s[j] == ' ' || s[j] == '\t' || s[j] == '\n' || s[j] == '\r')) ++j;
      if (j < n && s[j] == ':' && !stack.empty() && stack.back().object &&
          !stack.back().keys.insert(raw).second) {
        throw CheckError(path + ": key \"" + raw.substr(0, 60) + "\" appears twice in one object: "
                         "the file is damaged or was edited");
      }
      continue;
    }
    if ((ch >= '0' && ch <= '9') || ch == '-') {
      // tvm_ffi reads numbers as int64 or double: a 500-digit "size" would become a parse error
      // or silently inexact. No field of an artifact needs more than 40 characters.
      size_t start = i;
      while (i < n && std::strchr("0123456789+-.eE", s[i]) != nullptr) ++i;
      if (i - start > 40) {
        throw CheckError(path + ": a " + std::to_string(i - start) + "-character number at " +
                         "offset " + std::to_string(start) +
                         "; no field of an artifact is that large");
      }
      continue;
    }
    if (ch == '{' || ch == '[') {
      if (int(stack.size()) >= kMaxJsonDepth) {
        throw CheckError(path + ": JSON nested deeper than " + std::to_string(kMaxJsonDepth) +
                         " levels; refused");
      }
      stack.push_back(Level{ch == '{', {}});
    } else if ((ch == '}' || ch == ']') && !stack.empty()) {
      stack.pop_back();
    }
    ++i;
  }
}

// ---- typed access with field paths -----------------------------------------------------------

std::string Quote(const std::string& s) {
  std::string q = "\"" + (s.size() > 56 ? s.substr(0, 56) + "..." : s) + "\"";
  return q;
}

std::string Show(const ffi::Any& v) {
  if (v == nullptr) return "null";
  if (auto b = v.as<bool>()) return *b ? "true" : "false";
  if (auto i = v.as<int64_t>()) return std::to_string(*i);
  if (auto d = v.as<double>()) {
    if (std::isnan(*d)) return "NaN";
    if (std::isinf(*d)) return "Infinity";
    std::ostringstream ss;
    ss << *d;
    return ss.str();
  }
  if (auto s = v.as<ffi::String>()) return Quote(std::string(*s));
  if (v.as<JObject>()) return "an object";
  if (auto a = v.as<JArray>()) return "a list of " + std::to_string(a->size()) + " items";
  return "a " + v.GetTypeKey();
}

bool IsIdentifier(const std::string& k) {
  if (k.empty() || std::isdigit(static_cast<unsigned char>(k[0]))) return false;
  for (char c : k)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) return false;
  return true;
}

std::string Child(const std::string& path, const std::string& key) {
  if (IsIdentifier(key)) return path.empty() ? key : path + "." + key;
  return path + "[" + Quote(key) + "]";
}

std::string Child(const std::string& path, size_t index) {
  return path + "[" + std::to_string(index) + "]";
}

// Field-checking helpers bound to one file's name.
struct Fields {
  std::string file;

  [[noreturn]] void Fail(const std::string& field, const std::string& problem) const {
    throw CheckError(file + ": field '" + field + "' " + problem);
  }
  ffi::Any Req(const JObject& o, const std::string& parent, const char* key) const {
    auto v = o.Get(ffi::String(key));
    if (!v.has_value()) Fail(Child(parent, key), "is required but missing");
    return *v;
  }
  JObject Obj(const ffi::Any& v, const std::string& field) const {
    auto o = v.as<JObject>();
    if (!o) Fail(field, "must be an object, got " + Show(v));
    return *o;
  }
  JArray List(const ffi::Any& v, const std::string& field, size_t lo, size_t hi,
              const char* what) const {
    auto a = v.as<JArray>();
    if (!a) Fail(field, std::string("must be ") + what + ", got " + Show(v));
    if (a->size() < lo || a->size() > hi) {
      Fail(field, std::string("must be ") + what + " of " + std::to_string(lo) + " to " +
                      std::to_string(hi) + " items, got " + std::to_string(a->size()));
    }
    return *a;
  }
  int64_t Int(const ffi::Any& v, const std::string& field, int64_t lo, int64_t hi,
              const char* what) const {
    auto i = v.as<int64_t>();
    if (!i || v.as<bool>()) Fail(field, std::string("must be ") + what + ", got " + Show(v));
    if (*i < lo || *i > hi) {
      Fail(field, std::string("must be ") + what + " (" + std::to_string(lo) + " to " +
                      std::to_string(hi) + "), got " + std::to_string(*i));
    }
    return *i;
  }
  template <typename Ok>
  std::string Str(const ffi::Any& v, const std::string& field, const char* what, Ok ok) const {
    auto s = v.as<ffi::String>();
    if (!s || !ok(std::string(*s))) {
      Fail(field, std::string("must be ") + what + ", got " + Show(v));
    }
    return std::string(*s);
  }
};

bool PlainName(const std::string& s) {
  if (s.empty() || s.size() > 128 || s == "." || s == "..") return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '+' ||
          c == '-'))
      return false;
  return true;
}

bool RelativePath(const std::string& s) {
  if (s.empty() || s.size() > 1024) return false;
  std::stringstream ss(s);
  std::string part;
  int parts = 0;
  while (std::getline(ss, part, '/')) {
    if (!PlainName(part) || ++parts > 8) return false;
  }
  return s.back() != '/';
}

bool PrintableName(const std::string& s) {
  if (s.empty() || s.size() > 256) return false;
  for (char c : s)
    if (static_cast<unsigned char>(c) < 0x20) return false;
  return true;
}

std::vector<Spec> ParseSpecs(const Fields& f, const JObject& m, const char* key) {
  std::vector<Spec> out;
  JArray items = f.List(f.Req(m, "", key), key, 1, 256, "a list of tensor specs");
  for (size_t i = 0; i < items.size(); ++i) {
    std::string at = Child(key, i);
    JObject o = f.Obj(items[i], at);
    Spec s;
    s.name = f.Str(f.Req(o, at, "name"), Child(at, "name"),
                   "a non-empty string without control characters", PrintableName);
    JArray dims = f.List(f.Req(o, at, "shape"), Child(at, "shape"), 0, kMaxRank, "a list of dims");
    double numel = 1;
    for (size_t k = 0; k < dims.size(); ++k) {
      s.shape.push_back(f.Int(dims[k], Child(Child(at, "shape"), k), 0, kMaxDim,
                              "a non-negative int"));
      numel *= double(s.shape.back());
    }
    if (numel > double(kMaxElements)) {
      f.Fail(Child(at, "shape"), "has more than " + std::to_string(kMaxElements) + " elements");
    }
    s.dtype = f.Str(f.Req(o, at, "dtype"), Child(at, "dtype"), "a dtype such as \"float32\"",
                    [](const std::string& d) {
                      for (const char* k : kDtypes)
                        if (d == k) return true;
                      return false;
                    });
    for (const Spec& prev : out)
      if (prev.name == s.name) f.Fail(Child(at, "name"), "repeats the name " + Quote(s.name));
    out.push_back(s);
  }
  return out;
}

}  // namespace

std::string Describe(const std::string& dtype, const std::vector<int64_t>& shape) {
  std::string out = dtype + "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

std::string ReadLimited(const std::string& path, int64_t limit) {
  Fd f;
  struct stat st;
  OpenRegular(path, &f, &st, "not found");
  if (st.st_size > limit) {
    throw CheckError(path + " is " + std::to_string(int64_t(st.st_size)) +
                     " bytes, more than the " + std::to_string(limit) +
                     " bytes it may have; refused without reading it");
  }
  std::string out;
  char buf[1 << 16];
  while (int64_t(out.size()) <= limit) {
    ssize_t r = read(f.fd, buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) throw CheckError("cannot read " + path + ": " + std::strerror(errno));
    if (r == 0) break;
    out.append(buf, size_t(r));
  }
  if (int64_t(out.size()) > limit) throw CheckError(path + " grew past its limit while being read");
  return out;
}

std::string ReadManifestBytes(const std::string& dir) {
  std::string path = JoinPath(dir, "manifest.json");
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) {
    throw CheckError(dir + " has no manifest.json: not an artifact, or an incomplete copy");
  }
  return ReadLimited(path, kMaxManifestBytes);
}

Manifest ParseManifest(const std::string& bytes, const std::string& path) {
  ScanJson(bytes, path);
  ffi::String err;
  ffi::Any root;
  try {
    root = ffi::json::Parse(ffi::String(bytes), &err);
  } catch (const std::exception& e) {
    throw CheckError(path + " is not valid JSON (" + e.what() + "): the file is damaged");
  }
  if (!err.empty()) {
    throw CheckError(path + " is not valid JSON (" + std::string(err) + "): the file is damaged");
  }
  auto mo = root.as<JObject>();
  if (!mo) throw CheckError(path + " must hold a JSON object, got " + Show(root));
  const JObject& m = *mo;
  Fields f{path};
  auto format = m.Get(ffi::String("format"));
  auto fs = format.has_value() ? format->as<ffi::String>() : std::nullopt;
  if (!fs || std::string(*fs) != "engine-artifact") {
    throw CheckError(path + ": unknown manifest format " + (format ? Show(*format) : "(none)") +
                     " (expected \"engine-artifact\")");
  }
  auto ver = m.Get(ffi::String("format_version"));
  auto vi = ver.has_value() && !ver->as<bool>() ? ver->as<int64_t>() : std::nullopt;
  if (!vi || *vi != kFormatVersion) {
    throw CheckError(path + ": unknown artifact format version " + (ver ? Show(*ver) : "(none)") +
                     "; this runner reads version " + std::to_string(kFormatVersion) +
                     (vi && *vi > kFormatVersion ? "; use a newer runner" : ""));
  }
  Manifest out;
  out.module = f.Str(f.Req(m, "", "module"), "module", "a plain file name", PlainName);
  if (auto e = m.Get(ffi::String("entry"))) {
    out.entry = f.Str(*e, "entry", "a function name", [](const std::string& s) {
      return IsIdentifier(s) && s.size() <= 128;
    });
  }
  JObject target = f.Obj(f.Req(m, "", "target"), "target");
  out.target =
      f.Str(f.Req(target, "target", "name"), "target.name", "a target name", PrintableName);
  out.arch = f.Str(f.Req(target, "target", "arch"), "target.arch", "an arch name", IsIdentifier);
  out.inputs = ParseSpecs(f, m, "inputs");
  out.outputs = ParseSpecs(f, m, "outputs");
  JObject files = f.Obj(f.Req(m, "", "files"), "files");
  if (int64_t(files.size()) > kMaxFiles) {
    f.Fail("files", "has more than " + std::to_string(kMaxFiles) + " entries");
  }
  bool module_listed = false;
  for (const auto& kv : files) {
    auto key = kv.first.as<ffi::String>();
    std::string name = key ? std::string(*key) : "?";
    std::string at = Child("files", name);
    if (!key || !RelativePath(name) || name == "manifest.json" || name == "manifest.sig") {
      f.Fail(at, "is not a file inside the artifact (a relative path without '..' or empty "
                 "parts, not the manifest or its signature)");
    }
    JObject e = f.Obj(kv.second, at);
    FileEntry fe;
    fe.name = name;
    fe.sha256 = f.Str(f.Req(e, at, "sha256"), Child(at, "sha256"), "64 lowercase hex digits",
                      [](const std::string& s) { return IsHex(s, 64); });
    fe.size =
        f.Int(f.Req(e, at, "size"), Child(at, "size"), 0, kMaxFileBytes, "a non-negative int");
    module_listed |= name == out.module;
    out.files.push_back(fe);
  }
  if (!module_listed) {
    f.Fail("files", "lists no sha256 for the module \"" + out.module + "\" (field 'module'): the "
                    "manifest was edited");
  }
  return out;
}

SignatureFile ParseSignature(const std::string& bytes, const std::string& path) {
  ScanJson(bytes, path);
  ffi::String err;
  ffi::Any root;
  try {
    root = ffi::json::Parse(ffi::String(bytes), &err);
  } catch (const std::exception& e) {
    err = e.what();
  }
  if (!err.empty()) {
    throw CheckError(path + " is not valid JSON (" + std::string(err) + "): the signature file is "
                     "damaged");
  }
  Fields f{path};
  JObject s = f.Obj(root, "(top level)");
  auto equals = [](const char* want) {
    return [want](const std::string& v) { return v == want; };
  };
  f.Str(f.Req(s, "", "format"), "format", "\"engine-artifact-signature\"",
        equals("engine-artifact-signature"));
  f.Int(f.Req(s, "", "version"), "version", 1, 1, "1");
  f.Str(f.Req(s, "", "algorithm"), "algorithm", "\"ed25519\"", equals("ed25519"));
  f.Str(f.Req(s, "", "signed_file"), "signed_file", "\"manifest.json\"", equals("manifest.json"));
  SignatureFile out;
  out.key_id = f.Str(f.Req(s, "", "key_id"), "key_id", "16 lowercase hex digits (the key id)",
                     [](const std::string& v) { return IsHex(v, 16); });
  out.signature_hex = f.Str(f.Req(s, "", "signature"), "signature", "128 lowercase hex digits",
                            [](const std::string& v) { return IsHex(v, 128); });
  return out;
}

void VerifyFiles(const std::string& dir, const Manifest& m) {
  for (const FileEntry& e : m.files) {
    std::string path = JoinPath(dir, e.name);
    Fd f;
    struct stat st;
    OpenRegular(path, &f, &st, "the artifact is incomplete (manifest.json lists it)");
    if (int64_t(st.st_size) != e.size) {
      throw CheckError(path + " is " +
                       (int64_t(st.st_size) < e.size ? "truncated" : "larger than written") +
                       ": " + std::to_string(int64_t(st.st_size)) + " bytes, manifest.json says " +
                       std::to_string(e.size) + "; copy the artifact again");
    }
    Sha256 h;
    int64_t total = 0;
    uint8_t buf[1 << 16];
    while (total <= e.size) {
      ssize_t r = read(f.fd, buf, sizeof buf);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) throw CheckError("cannot read " + path + ": " + std::strerror(errno));
      if (r == 0) break;
      h.Update(buf, size_t(r));
      total += r;
    }
    std::string got = h.HexDigest();
    if (total != e.size || got != e.sha256) {
      throw CheckError(path + " does not match manifest.json: sha256 " + got + " != " + e.sha256 +
                       "; the artifact was modified (tampered or corrupted) after it was written");
    }
  }
}

}  // namespace artifact
