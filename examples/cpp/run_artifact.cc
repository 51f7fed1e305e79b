// run_artifact: load an engine artifact (model.so + manifest.json) and run it, without Python.
//
// This is the documented way an app embeds an artifact. It is written against the tvm_ffi
// headers only (tvm/ffi/..., dlpack) and links two runtime libraries: libtvm_ffi.so and
// libtvm_runtime.so (the latter registers the Relax VM that model.so needs; nothing of it is
// called directly). The calling sequence is:
//
//   Module lib = Module::LoadFromFile("model.so");
//   Module vm  = lib->GetFunction("vm_load_executable")();
//   vm->GetFunction("vm_initialization")(kDLCPU, 0, kPooledAllocator);
//   Any out    = vm->GetFunction("main")(input0, input1, ...);   // ffi::Tensor in, Tensor/tuple out
//
// Usage:
//   run_artifact ARTIFACT [--input FILE]... [--shape 1,3,32,32]... [--output FILE]
//                         [--repeat N] [--no-verify]
//
//   ARTIFACT    an artifact directory (manifest.json gives module, input and output specs), or a
//               bare model.so (then give one --shape per input; dtype float32).
//   --input     raw little-endian input of the manifest's dtype, one per model input, in order.
//               Without it the input is deterministic: x[i] = ((i * 37 + 11) % 256) / 128 - 1
//               (engine.artifact.deterministic_input(shape) builds the same array in Python).
//   --output    write every output, in order, concatenated, as raw bytes of its dtype.
//   --repeat N  run N more times and print the median latency.
//   --no-verify skip the sha256/size check of the artifact's files against manifest.json.
//
// Prints one line per output: shape, dtype and a checksum (sum, sum of |x|, first values).
// Exit status: 0 ok, 1 runtime error, 2 usage error, 3 artifact check failed.
#include <dlpack/dlpack.h>
#include <tvm/ffi/any.h>
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/map.h>
#include <tvm/ffi/container/shape.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/dtype.h>
#include <tvm/ffi/error.h>
#include <tvm/ffi/extra/json.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>
#include <tvm/ffi/string.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <stdlib.h>  // posix_memalign
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <new>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace ffi = tvm::ffi;

namespace {

constexpr int kFormatVersion = 1;      // engine/artifact.py FORMAT_VERSION
constexpr int kPooledAllocator = 2;    // tvm.runtime.vm.VirtualMachine.POOLED_ALLOCATOR

struct UsageError : std::runtime_error { using std::runtime_error::runtime_error; };
struct CheckError : std::runtime_error { using std::runtime_error::runtime_error; };

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

// ---------------------------------------------------------------------------------------------
// SHA-256 (FIPS 180-4), enough to check an artifact's files against its manifest.
class Sha256 {
 public:
  Sha256() { Reset(); }
  void Update(const uint8_t* data, size_t n) {
    for (size_t i = 0; i < n; ++i) {
      buf_[len_++] = data[i];
      if (len_ == 64) { Block(buf_.data()); len_ = 0; bits_ += 512; }
    }
  }
  std::string HexDigest() {
    uint64_t total = bits_ + uint64_t(len_) * 8;
    uint8_t pad = 0x80;
    Update(&pad, 1);
    uint8_t zero = 0;
    while (len_ != 56) Update(&zero, 1);
    uint8_t lenb[8];
    for (int i = 0; i < 8; ++i) lenb[i] = uint8_t(total >> (56 - 8 * i));
    Update(lenb, 8);
    static const char* hex = "0123456789abcdef";
    std::string out;
    for (uint32_t v : h_)
      for (int s = 28; s >= 0; s -= 4) out.push_back(hex[(v >> s) & 0xf]);
    return out;
  }

 private:
  static uint32_t Rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }
  void Reset() {
    h_ = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
          0x5be0cd19};
    len_ = 0;
    bits_ = 0;
  }
  void Block(const uint8_t* p) {
    static const uint32_t k[64] = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2};
    uint32_t w[64];
    for (int i = 0; i < 16; ++i)
      w[i] = uint32_t(p[4 * i]) << 24 | uint32_t(p[4 * i + 1]) << 16 |
             uint32_t(p[4 * i + 2]) << 8 | uint32_t(p[4 * i + 3]);
    for (int i = 16; i < 64; ++i) {
      uint32_t s0 = Rotr(w[i - 15], 7) ^ Rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      uint32_t s1 = Rotr(w[i - 2], 17) ^ Rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h_[0], b = h_[1], c = h_[2], d = h_[3], e = h_[4], f = h_[5], g = h_[6],
             h = h_[7];
    for (int i = 0; i < 64; ++i) {
      uint32_t t1 = h + (Rotr(e, 6) ^ Rotr(e, 11) ^ Rotr(e, 25)) + ((e & f) ^ (~e & g)) + k[i] +
                    w[i];
      uint32_t t2 = (Rotr(a, 2) ^ Rotr(a, 13) ^ Rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      h = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    h_[0] += a; h_[1] += b; h_[2] += c; h_[3] += d;
    h_[4] += e; h_[5] += f; h_[6] += g; h_[7] += h;
  }
  std::array<uint32_t, 8> h_;
  std::array<uint8_t, 64> buf_;
  size_t len_;
  uint64_t bits_;
};

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw CheckError("cannot open " + path);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

bool IsDirectory(const std::string& path) {
  std::ifstream probe(path + "/manifest.json");
  return static_cast<bool>(probe);
}

std::string JoinPath(const std::string& dir, const std::string& name) {
  return dir.empty() || dir.back() == '/' ? dir + name : dir + "/" + name;
}

// ---------------------------------------------------------------------------------------------
// manifest.json, parsed with tvm_ffi's JSON reader (objects are Map<Any, Any>).
using JObject = ffi::Map<ffi::Any, ffi::Any>;
using JArray = ffi::Array<ffi::Any>;

ffi::Any Field(const JObject& obj, const char* key, const std::string& where) {
  auto v = obj.Get(ffi::String(key));
  if (!v.has_value()) throw CheckError(where + ": manifest.json has no field '" + key + "'");
  return *v;
}

std::vector<Spec> ParseSpecs(const ffi::Any& v, const std::string& what) {
  std::vector<Spec> out;
  for (const ffi::Any& item : v.cast<JArray>()) {
    JObject o = item.cast<JObject>();
    Spec s;
    s.name = std::string(Field(o, "name", what).cast<ffi::String>());
    for (const ffi::Any& d : Field(o, "shape", what).cast<JArray>()) s.shape.push_back(d.cast<int64_t>());
    s.dtype = std::string(Field(o, "dtype", what).cast<ffi::String>());
    out.push_back(s);
  }
  return out;
}

struct Manifest {
  std::string module = "model.so";
  std::string target;
  std::string arch;
  std::vector<Spec> inputs, outputs;
  std::vector<FileEntry> files;
};

Manifest LoadManifest(const std::string& dir) {
  std::string path = JoinPath(dir, "manifest.json");
  ffi::String err;
  ffi::Any root = ffi::json::Parse(ffi::String(ReadFile(path)), &err);
  if (!err.empty()) throw CheckError(path + ": invalid JSON: " + std::string(err));
  JObject m = root.cast<JObject>();
  int64_t version = Field(m, "format_version", path).cast<int64_t>();
  if (version != kFormatVersion) {
    throw CheckError(path + ": unknown artifact format version " + std::to_string(version) +
                     " (this runner reads " + std::to_string(kFormatVersion) + ")");
  }
  Manifest out;
  out.module = std::string(Field(m, "module", path).cast<ffi::String>());
  JObject target = Field(m, "target", path).cast<JObject>();
  out.target = std::string(Field(target, "name", path).cast<ffi::String>());
  out.arch = std::string(Field(target, "arch", path).cast<ffi::String>());
  out.inputs = ParseSpecs(Field(m, "inputs", path), path);
  out.outputs = ParseSpecs(Field(m, "outputs", path), path);
  for (const auto& kv : Field(m, "files", path).cast<JObject>()) {
    JObject e = kv.second.cast<JObject>();
    FileEntry f;
    f.name = std::string(kv.first.cast<ffi::String>());
    f.sha256 = std::string(Field(e, "sha256", path).cast<ffi::String>());
    f.size = Field(e, "size", path).cast<int64_t>();
    out.files.push_back(f);
  }
  return out;
}

void VerifyFiles(const std::string& dir, const Manifest& m) {
  bool module_listed = false;
  for (const FileEntry& f : m.files) {
    module_listed |= f.name == m.module;
    std::string path = JoinPath(dir, f.name);
    std::string bytes = ReadFile(path);
    if (int64_t(bytes.size()) != f.size) {
      throw CheckError(path + " is truncated or altered: " + std::to_string(bytes.size()) +
                       " bytes, manifest.json says " + std::to_string(f.size));
    }
    Sha256 h;
    h.Update(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    std::string got = h.HexDigest();
    if (got != f.sha256) {
      throw CheckError(path + " does not match manifest.json (sha256 " + got + ", expected " +
                       f.sha256 + "): the artifact was modified after it was written");
    }
  }
  if (!module_listed) throw CheckError("manifest.json lists no checksum for " + m.module);
}

// ---------------------------------------------------------------------------------------------
// Tensors. Inputs are app-owned, 64-byte aligned buffers wrapped without a copy.
struct AlignedBuffer {
  void* ptr = nullptr;
  size_t bytes = 0;
  explicit AlignedBuffer(size_t n) : bytes(n) {
    // posix_memalign, not std::aligned_alloc: bionic has the latter only from API 28.
    // TVM requires 64-byte aligned tensor data (FromDLPack refuses anything less).
    size_t rounded = n ? (n + 63) / 64 * 64 : 64;
    if (posix_memalign(&ptr, 64, rounded) != 0) throw std::bad_alloc();
    std::memset(ptr, 0, rounded);
  }
  ~AlignedBuffer() { std::free(ptr); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
};

// A non-owning NDAlloc: the Tensor views memory the app owns (e.g. a camera frame buffer).
struct BorrowedAlloc {
  void* data;
  void AllocData(DLTensor* t) { t->data = data; }
  void FreeData(DLTensor*) {}
};

int64_t Numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

size_t ElemBytes(DLDataType t) { return (size_t(t.bits) * t.lanes + 7) / 8; }

void FillDeterministic(void* data, int64_t n, DLDataType t) {
  for (int64_t i = 0; i < n; ++i) {
    int64_t k = (i * 37 + 11) % 256;
    if (t.code == kDLFloat && t.bits == 32) {
      static_cast<float*>(data)[i] = float(k) / 128.0f - 1.0f;
    } else if (t.code == kDLFloat && t.bits == 64) {
      static_cast<double*>(data)[i] = double(k) / 128.0 - 1.0;
    } else if (t.code == kDLInt && t.bits == 64) {
      static_cast<int64_t*>(data)[i] = k % 7;
    } else if (t.code == kDLInt && t.bits == 32) {
      static_cast<int32_t*>(data)[i] = int32_t(k % 7);
    } else if ((t.code == kDLInt || t.code == kDLUInt) && t.bits == 8) {
      static_cast<uint8_t*>(data)[i] = uint8_t(k % 7);
    } else {
      throw UsageError("no deterministic input for dtype " +
                       std::string(ffi::DLDataTypeToString(t)) + "; pass --input");
    }
  }
}

std::string ShapeStr(const ffi::ShapeView& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + (s.size() == 1 ? ",)" : ")");
}

void Flatten(const ffi::Any& v, std::vector<ffi::Tensor>* out) {
  if (auto t = v.as<ffi::Tensor>()) {
    out->push_back(*t);
  } else if (auto arr = v.as<JArray>()) {
    for (const ffi::Any& item : *arr) Flatten(item, out);
  } else {
    throw std::runtime_error("main returned a " + v.GetTypeKey() + ", expected tensors");
  }
}

std::vector<int64_t> ParseShape(const std::string& text) {
  std::vector<int64_t> shape;
  std::stringstream ss(text);
  std::string tok;
  while (std::getline(ss, tok, ',')) {
    if (tok.empty()) continue;
    try {
      shape.push_back(std::stoll(tok));
    } catch (const std::exception&) {
      throw UsageError("bad --shape '" + text + "', expected e.g. 1,3,32,32");
    }
  }
  if (shape.empty()) throw UsageError("bad --shape '" + text + "'");
  return shape;
}

void Usage() {
  std::cerr << "usage: run_artifact ARTIFACT_DIR|model.so [--input FILE]... [--shape 1,3,32,32]..."
               " [--output FILE] [--repeat N] [--no-verify]\n";
}

int Run(int argc, char** argv) {
  if (argc < 2) { Usage(); return 2; }
  std::string artifact = argv[1];
  std::vector<std::string> input_files;
  std::vector<std::vector<int64_t>> shapes;
  std::string output_file;
  int repeat = 0;
  bool verify = true;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw UsageError(a + " needs a value");
      return argv[++i];
    };
    if (a == "--input") input_files.push_back(next());
    else if (a == "--shape") shapes.push_back(ParseShape(next()));
    else if (a == "--output") output_file = next();
    else if (a == "--repeat") repeat = std::atoi(next().c_str());
    else if (a == "--no-verify") verify = false;
    else if (a == "-h" || a == "--help") { Usage(); return 0; }
    else throw UsageError("unknown option " + a);
  }

  // 1. The artifact: manifest (specs + checksums) or a bare module with --shape.
  std::string module_path = artifact;
  std::vector<Spec> inputs, outputs;
  if (IsDirectory(artifact)) {
    Manifest m = LoadManifest(artifact);
    if (verify) VerifyFiles(artifact, m);
    module_path = JoinPath(artifact, m.module);
    inputs = m.inputs;
    outputs = m.outputs;
    std::cout << "artifact: " << artifact << " (target " << m.target << ", " << m.arch << ")\n";
    if (!shapes.empty()) throw UsageError("--shape is only for a bare model.so");
  } else {
    if (shapes.empty()) throw UsageError(artifact + " has no manifest.json: give --shape per input");
    for (size_t i = 0; i < shapes.size(); ++i)
      inputs.push_back(Spec{"input" + std::to_string(i), shapes[i], "float32"});
  }
  if (!input_files.empty() && input_files.size() != inputs.size()) {
    throw UsageError("the model takes " + std::to_string(inputs.size()) + " input(s), got " +
                     std::to_string(input_files.size()) + " --input file(s)");
  }

  // 2. Load: module -> VM executable -> VM initialised on the CPU (device, allocator pairs).
  ffi::Module lib = ffi::Module::LoadFromFile(module_path);
  auto load_exec = lib->GetFunction("vm_load_executable");
  if (!load_exec.has_value()) throw std::runtime_error(module_path + " is not a Relax VM module");
  ffi::Module vm = (*load_exec)().cast<ffi::Module>();
  DLDevice cpu{kDLCPU, 0};
  vm->GetFunction("vm_initialization").value()(static_cast<int>(cpu.device_type), cpu.device_id,
                                               kPooledAllocator);
  ffi::Function main_fn = vm->GetFunction("main").value();

  // 3. Inputs: aligned app buffers, filled from files or deterministically, viewed as Tensors.
  std::vector<std::unique_ptr<AlignedBuffer>> buffers;
  std::vector<ffi::Tensor> tensors;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Spec& s = inputs[i];
    DLDataType dt = ffi::StringToDLDataType(ffi::String(s.dtype));
    int64_t n = Numel(s.shape);
    size_t bytes = size_t(n) * ElemBytes(dt);
    buffers.push_back(std::make_unique<AlignedBuffer>(bytes));
    void* data = buffers.back()->ptr;
    if (!input_files.empty()) {
      std::string raw = ReadFile(input_files[i]);
      if (raw.size() != bytes) {
        throw UsageError(input_files[i] + " has " + std::to_string(raw.size()) + " bytes; input '" +
                         s.name + "' " + s.dtype + " needs " + std::to_string(bytes));
      }
      std::memcpy(data, raw.data(), bytes);
    } else {
      FillDeterministic(data, n, dt);
    }
    tensors.push_back(ffi::Tensor::FromNDAlloc(BorrowedAlloc{data},
                                               ffi::ShapeView(s.shape.data(), s.shape.size()),
                                               dt, cpu));
  }
  std::vector<ffi::AnyView> args(tensors.begin(), tensors.end());

  // 4. Run.
  ffi::Any result;
  main_fn.CallPacked(args.data(), static_cast<int32_t>(args.size()), &result);
  std::vector<ffi::Tensor> outs;
  Flatten(result, &outs);
  if (!outputs.empty() && outs.size() != outputs.size()) {
    throw std::runtime_error("model returned " + std::to_string(outs.size()) +
                             " outputs, manifest.json lists " + std::to_string(outputs.size()));
  }

  // 5. Outputs: raw file + checksums.
  std::ofstream of;
  if (!output_file.empty()) {
    of.open(output_file, std::ios::binary | std::ios::trunc);
    if (!of) throw std::runtime_error("cannot write " + output_file);
  }
  for (size_t i = 0; i < outs.size(); ++i) {
    const ffi::Tensor& t = outs[i];
    if (!t.IsContiguous()) throw std::runtime_error("output " + std::to_string(i) + " is strided");
    const char* base = static_cast<const char*>(t.data_ptr()) + t.byte_offset();
    size_t bytes = size_t(t.numel()) * ElemBytes(t.dtype());
    if (of.is_open()) of.write(base, std::streamsize(bytes));
    std::string name = i < outputs.size() ? outputs[i].name : "output" + std::to_string(i);
    std::ostringstream line;
    line.precision(9);
    line << "output " << i << " '" << name << "' shape " << ShapeStr(t.shape()) << " "
         << ffi::DLDataTypeToString(t.dtype());
    if (t.dtype().code == kDLFloat && t.dtype().bits == 32) {
      const float* p = reinterpret_cast<const float*>(base);
      double sum = 0, asum = 0;
      for (int64_t k = 0; k < t.numel(); ++k) { sum += p[k]; asum += std::abs(double(p[k])); }
      line << " checksum sum=" << sum << " abs_sum=" << asum << " first=[";
      for (int64_t k = 0; k < std::min<int64_t>(4, t.numel()); ++k) line << (k ? ", " : "") << p[k];
      line << "]";
    }
    std::cout << line.str() << "\n";
  }
  if (of.is_open()) {
    of.close();
    if (!of) throw std::runtime_error("failed writing " + output_file);
    std::cout << "wrote " << output_file << "\n";
  }

  if (repeat > 0) {
    std::vector<double> ms;
    for (int r = 0; r < repeat; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      ffi::Any again;
      main_fn.CallPacked(args.data(), static_cast<int32_t>(args.size()), &again);
      ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                       .count());
    }
    std::sort(ms.begin(), ms.end());
    std::cout << "latency median " << ms[ms.size() / 2] << " ms over " << repeat << " runs\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return Run(argc, argv);
  } catch (const UsageError& e) {
    std::cerr << "run_artifact: " << e.what() << "\n";
    Usage();
    return 2;
  } catch (const CheckError& e) {
    std::cerr << "run_artifact: artifact check failed: " << e.what() << "\n";
    return 3;
  } catch (const ffi::Error& e) {
    std::cerr << "run_artifact: TVM error: " << e.FullMessage() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "run_artifact: " << e.what() << "\n";
    return 1;
  }
}
