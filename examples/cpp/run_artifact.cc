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
//   Any out    = vm->GetFunction("main")(input0, ...);   // ffi::Tensor in, Tensor/tuple out
//
// Usage:
//   run_artifact ARTIFACT [--input FILE]... [--shape 1,3,32,32]... [--output FILE]
//                         [--repeat N] [--threads N] [--no-verify] [--trusted-key KEYFILE]...
//                         [--check-only]
//
//   ARTIFACT    an artifact directory (manifest.json gives module, input and output specs), or a
//               bare model.so (then give one --shape per input; dtype float32).
//   --input     raw little-endian input of the manifest's dtype, one per model input, in order.
//               Without it the input is deterministic: k = (i * 37 + 11) % 256, floats
//               k / 128 - 1, integers k % 7 (token ids, masks), bool k % 7 != 0
//               (engine.artifact.deterministic_input(shape, dtype) builds the same array).
//   --output    write every output, in order, concatenated, as raw bytes of its dtype.
//   --repeat N  run N more times and print the median latency.
//   --threads N threads for every layer, 1 to 1024 (default: TVM_NUM_THREADS, else TVM's
//               default: half the hardware threads on x86, which TVM assumes are SMT pairs).
//               One pool runs them all: the generated layers, the glue and the engine's
//               kernels linked into model.so (they run on TVM's workers).
//   --no-verify skip the sha256/size check of the artifact's files against manifest.json.
//   --trusted-key  an Ed25519 public key (PEM or 64 hex digits; engine.artifact.write_public_key).
//               Given (once per trusted key), the artifact must carry a manifest.sig by one of
//               them over manifest.json; it is checked before any file is loaded.
//   --check-only  check the artifact (manifest, signature, files) and exit without loading it.
//
// Order of checks for a directory, all before model.so is opened by the dynamic loader:
// manifest.json within its size limit -> manifest.sig (with --trusted-key) -> manifest schema ->
// every file's size and sha256 (artifact_check.h, artifact_trust.h). After loading: the module's
// input count, and after the first run its output shapes, must be the manifest's.
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
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>
#include <tvm/ffi/string.h>

#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cerrno>
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

#include "artifact_check.h"
#include "artifact_trust.h"

namespace ffi = tvm::ffi;

namespace {

constexpr int kPooledAllocator = 2;    // tvm.runtime.vm.VirtualMachine.POOLED_ALLOCATOR

using artifact::CheckError;
using artifact::JoinPath;
using artifact::Spec;
using JArray = ffi::Array<ffi::Any>;

struct UsageError : std::runtime_error { using std::runtime_error::runtime_error; };

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw UsageError("cannot open " + path);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

bool IsDirectory(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
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

// IEEE half bits of f, for the exact values FillDeterministic makes (k/128 - 1: normal or 0).
uint16_t HalfBits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  uint32_t sign = (b >> 16) & 0x8000u, exp = (b >> 23) & 0xffu, man = b & 0x7fffffu;
  if (exp == 0) return uint16_t(sign);
  return uint16_t(sign | ((exp - 127 + 15) << 10) | (man >> 13));
}

// Every dtype an artifact may declare has a deterministic input (engine.artifact.
// deterministic_input makes the same array): floats k/128 - 1, integers k % 7, bool k % 7 != 0.
// A dtype outside the list is a UsageError naming the input, never a crash.
void FillDeterministic(void* data, int64_t n, DLDataType t, const std::string& name) {
  bool is_bool = t.code == kDLBool || (t.code == kDLUInt && t.bits == 1);
  for (int64_t i = 0; i < n; ++i) {
    int64_t k = (i * 37 + 11) % 256;
    double f = double(k) / 128.0 - 1.0;
    if (is_bool) {
      static_cast<uint8_t*>(data)[i] = uint8_t(k % 7 != 0);
    } else if (t.code == kDLFloat && t.bits == 32) {
      static_cast<float*>(data)[i] = float(f);
    } else if (t.code == kDLFloat && t.bits == 64) {
      static_cast<double*>(data)[i] = f;
    } else if (t.code == kDLFloat && t.bits == 16) {
      static_cast<uint16_t*>(data)[i] = HalfBits(float(f));
    } else if (t.code == kDLInt && t.bits == 64) {
      static_cast<int64_t*>(data)[i] = k % 7;
    } else if ((t.code == kDLInt || t.code == kDLUInt) && t.bits == 32) {
      static_cast<int32_t*>(data)[i] = int32_t(k % 7);
    } else if ((t.code == kDLInt || t.code == kDLUInt) && t.bits == 16) {
      static_cast<int16_t*>(data)[i] = int16_t(k % 7);
    } else if ((t.code == kDLInt || t.code == kDLUInt) && t.bits == 8) {
      static_cast<uint8_t*>(data)[i] = uint8_t(k % 7);
    } else {
      throw UsageError("input '" + name + "': no deterministic input for dtype " +
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
    if (shape.back() < 0 || shape.back() > artifact::kMaxDim) {
      throw UsageError("bad --shape '" + text + "': dims must be 0 to " +
                       std::to_string(artifact::kMaxDim));
    }
  }
  if (shape.empty()) throw UsageError("bad --shape '" + text + "'");
  return shape;
}

int ParseCount(const std::string& flag, const std::string& text) {
  char* end = nullptr;
  errno = 0;
  long v = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno != 0 || v < 0 || v > 1000000) {
    throw UsageError(flag + " must be an integer from 0 to 1000000, got '" + text + "'");
  }
  return int(v);
}

// Before any call: the entry function takes as many inputs as the manifest lists.
void CheckArity(const ffi::Module& vm, const std::string& entry, const std::string& module_path,
                const std::vector<Spec>& inputs) {
  auto arity_fn = vm->GetFunction("get_function_arity");
  if (!arity_fn.has_value()) return;  // a VM without introspection: checked by the call itself
  int64_t arity = (*arity_fn)(ffi::String(entry)).cast<int64_t>();
  if (arity != int64_t(inputs.size())) {
    throw CheckError(module_path + ": its function '" + entry + "' takes " + std::to_string(arity) +
                     " input(s), but field 'inputs' of manifest.json lists " +
                     std::to_string(inputs.size()) +
                     ": the manifest does not describe this module");
  }
}

// The VM refuses an argument that is not its declared type with an ErrorContext naming
// param[i]: with a manifest, that is the manifest's fault; say so.
void ExplainInputMismatch(const ffi::Error& e, const std::string& module_path,
                          const std::vector<Spec>& inputs) {
  std::string msg = e.message();
  const std::string tag = "loc=param[";
  size_t at = msg.find(tag);
  if (at == std::string::npos) return;
  size_t i = std::strtoul(msg.c_str() + at + tag.size(), nullptr, 10);
  if (i >= inputs.size()) return;
  std::string want = "another shape or dtype";
  size_t a = msg.find("annotation=");
  if (a != std::string::npos) {
    size_t end = msg.find(')', msg.find("dtype=", a));   // R.Tensor((1, 3, 8, 8), dtype="float32")
    want = msg.substr(a + 11, end == std::string::npos ? 60 : end + 1 - a - 11);
  }
  throw CheckError("input " + std::to_string(i) + " '" + inputs[i].name + "': " + module_path +
                   " expects " + want + ", but field 'inputs[" + std::to_string(i) +
                   "]' of manifest.json says " +
                   artifact::Describe(inputs[i].dtype, inputs[i].shape) +
                   ": the manifest does not describe this module");
}

// After the first run: the outputs are what the manifest says (count, shapes, dtypes).
void CheckOutputs(const std::vector<ffi::Tensor>& outs, const std::vector<Spec>& outputs,
                  const std::string& module_path) {
  if (outs.size() != outputs.size()) {
    throw CheckError(module_path + " returned " + std::to_string(outs.size()) +
                     " outputs, field 'outputs' of manifest.json lists " +
                     std::to_string(outputs.size()) +
                     ": the manifest does not describe this module");
  }
  for (size_t i = 0; i < outs.size(); ++i) {
    std::vector<int64_t> shape(outs[i].shape().begin(), outs[i].shape().end());
    std::string dtype(ffi::DLDataTypeToString(outs[i].dtype()));
    std::string got = artifact::Describe(dtype, shape);
    std::string want = artifact::Describe(outputs[i].dtype, outputs[i].shape);
    if (got != want) {
      throw CheckError("output " + std::to_string(i) + " '" + outputs[i].name + "' of " +
                       module_path + " is " + got + ", but field 'outputs[" + std::to_string(i) +
                       "]' of manifest.json says " + want +
                       ": the manifest does not describe this module");
    }
  }
}

void Usage() {
  std::cerr << "usage: run_artifact ARTIFACT_DIR|model.so [--input FILE]... [--shape 1,3,32,32]..."
               " [--output FILE] [--repeat N] [--threads N] [--no-verify]"
               " [--trusted-key KEYFILE]..."
               " [--check-only]\n";
}

int Run(int argc, char** argv) {
  if (argc < 2) { Usage(); return 2; }
  std::string artifact = argv[1];
  std::vector<std::string> input_files;
  std::vector<std::vector<int64_t>> shapes;
  std::string output_file;
  int repeat = 0, threads = 0;
  bool verify = true, check_only = false;
  std::vector<artifact::PublicKey> trusted;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw UsageError(a + " needs a value");
      return argv[++i];
    };
    if (a == "--input") input_files.push_back(next());
    else if (a == "--shape") shapes.push_back(ParseShape(next()));
    else if (a == "--output") output_file = next();
    else if (a == "--repeat") repeat = ParseCount(a, next());
    else if (a == "--threads") {
      threads = ParseCount(a, next());
      if (threads < 1 || threads > 1024)
        throw UsageError("--threads must be from 1 to 1024, got " + std::to_string(threads));
    }
    else if (a == "--no-verify") verify = false;
    else if (a == "--trusted-key") trusted.push_back(artifact::LoadPublicKey(next()));
    else if (a == "--check-only") check_only = true;
    else if (a == "-h" || a == "--help") { Usage(); return 0; }
    else throw UsageError("unknown option " + a);
  }

  if (!verify && !trusted.empty()) {
    throw UsageError("--no-verify cannot be combined with --trusted-key: the signature covers the "
                     "files only through their sha256");
  }

  // 1. The artifact: manifest (signature, specs, checksums) or a bare module with --shape.
  //    Everything is checked before the dynamic loader sees model.so: loading runs its code.
  std::string module_path = artifact;
  std::string entry = "main";
  std::vector<Spec> inputs, outputs;
  if (IsDirectory(artifact)) {
    std::string manifest_path = JoinPath(artifact, "manifest.json");
    std::string bytes = artifact::ReadManifestBytes(artifact);
    std::string signer;
    if (!trusted.empty()) signer = artifact::VerifyManifestSignature(artifact, bytes, trusted);
    artifact::Manifest m = artifact::ParseManifest(bytes, manifest_path);
    if (verify) artifact::VerifyFiles(artifact, m);
    module_path = JoinPath(artifact, m.module);
    entry = m.entry;
    inputs = m.inputs;
    outputs = m.outputs;
    std::cout << "artifact: " << artifact << " (target " << m.target << ", " << m.arch << ")\n";
    if (!signer.empty()) std::cout << "signature: ok, signed by trusted key " << signer << "\n";
    if (!shapes.empty()) throw UsageError("--shape is only for a bare model.so");
  } else {
    if (!trusted.empty() || check_only) {
      throw UsageError("--trusted-key and --check-only need an artifact directory, not " +
                       artifact);
    }
    if (shapes.empty()) {
      throw UsageError(artifact + " is not an artifact directory: give --shape per input");
    }
    for (size_t i = 0; i < shapes.size(); ++i)
      inputs.push_back(Spec{"input" + std::to_string(i), shapes[i], "float32"});
  }
  if (!input_files.empty() && input_files.size() != inputs.size()) {
    throw UsageError("the model takes " + std::to_string(inputs.size()) + " input(s), got " +
                     std::to_string(input_files.size()) + " --input file(s)");
  }

  if (check_only) {
    std::cout << "check: ok" << (verify ? "" : " (files not verified: --no-verify)") << "\n";
    return 0;
  }

  // 2. Load: module -> VM executable -> VM initialised on the CPU (device, allocator pairs).
  ffi::Module lib = ffi::Module::LoadFromFile(module_path);
  auto load_exec = lib->GetFunction("vm_load_executable");
  if (!load_exec.has_value()) throw std::runtime_error(module_path + " is not a Relax VM module");
  ffi::Module vm = (*load_exec)().cast<ffi::Module>();
  if (threads > 0) {  // TVM's pool, which the engine's kernels in model.so run on too
    auto config = ffi::Function::GetGlobal("runtime.config_threadpool");
    if (!config.has_value()) throw std::runtime_error("the TVM runtime has no thread pool knob");
    (*config)(1, threads);
  }
  DLDevice cpu{kDLCPU, 0};
  vm->GetFunction("vm_initialization").value()(static_cast<int>(cpu.device_type), cpu.device_id,
                                               kPooledAllocator);
  auto entry_fn = vm->GetFunction(ffi::String(entry));
  if (!entry_fn.has_value()) throw CheckError(module_path + " has no function '" + entry + "'");
  ffi::Function main_fn = *entry_fn;
  CheckArity(vm, entry, module_path, inputs);

  // 3. Inputs: aligned app buffers, filled from files or deterministically, viewed as Tensors.
  std::vector<std::unique_ptr<AlignedBuffer>> buffers;
  std::vector<ffi::Tensor> tensors;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Spec& s = inputs[i];
    DLDataType dt;
    try {
      dt = ffi::StringToDLDataType(ffi::String(s.dtype));
    } catch (const std::exception&) {
      throw CheckError("input '" + s.name + "': dtype '" + s.dtype + "' is not one TVM knows");
    }
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
      FillDeterministic(data, n, dt, s.name);
    }
    tensors.push_back(ffi::Tensor::FromNDAlloc(BorrowedAlloc{data},
                                               ffi::ShapeView(s.shape.data(), s.shape.size()),
                                               dt, cpu));
  }
  std::vector<ffi::AnyView> args(tensors.begin(), tensors.end());

  // 4. Run.
  ffi::Any result;
  try {
    main_fn.CallPacked(args.data(), static_cast<int32_t>(args.size()), &result);
  } catch (const ffi::Error& e) {
    ExplainInputMismatch(e, module_path, inputs);
    throw;
  }
  std::vector<ffi::Tensor> outs;
  Flatten(result, &outs);
  if (IsDirectory(artifact)) CheckOutputs(outs, outputs, module_path);

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
  } catch (const artifact::KeyError& e) {
    std::cerr << "run_artifact: " << e.what() << "\n";
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
  } catch (...) {
    std::cerr << "run_artifact: unknown error\n";
    return 1;
  }
}
