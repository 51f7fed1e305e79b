// The bridge that lets a TVM-compiled module call the engine's kernels: global functions
// registered with tvm_ffi when the module's shared library is loaded, in TVM's
// destination-passing style (the output tensor is the last argument).
//
//   spe.v1.sparse_conv2d(x, meta, group_row0, group_rows, group_ptr, entry_col, values, bias,
//                     residual, y)
//       meta: int32[13] = O, C, kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
//             act (spe_activation), has_bias, has_residual. bias / residual are 1-element
//             placeholders when absent. The packed arrays are the layer's constants: the
//             layer's spe_sparse_conv is built once, cached by the address of `values` and
//             checked on every call against a fingerprint of the constants (get_conv).
//   spe.v1.depthwise_conv2d(x, meta, weight, bias, residual, y)
//       A dense depthwise conv (groups == C) on the direct depthwise kernels. meta: int32[13],
//       the layout of sparse_conv2d's (O == C). weight: float32 (C, kh, kw); bias / residual
//       as above. Built once per layer, keyed by the address of `weight`.
//   spe.v1.max_pool2d(x, meta, y)   meta: int32[6] = kh, kw, stride_h, stride_w, pad_h, pad_w
//   spe.v1.dense_conv2d(x, meta, weight, bias, residual, y)
//       A conv kept dense on the packed dense kernels (spe_dense_conv). meta: int32[14], the
//       layout of sparse_conv2d's, then the algorithm (0 implicit GEMM, 1 Winograd F(4x4,
//       3x3)). weight: float32 (O, C, kh, kw). Built once per layer, keyed by the address of
//       `weight` and checked against a fingerprint as sparse layers are.
//   spe.v1.qconv2d(x, meta, group_row0, group_rows, group_ptr, entry_quad, values, wscale, bias,
//                  qscale, residual, y)
//       An int8 layer (spe_qconv): x, residual and y uint8, NCHW (4-D) or NCHW4 (5-D, (N,
//       ceil(C/4), H, W, 4)) as meta says. meta: int32[18] = sparse_conv2d's 13, then
//       input_layout, output_layout (SPE_QLAYOUT_*), input, output and residual zero points.
//       values int8 (rows x 4 per entry), wscale float32[O], bias float32[O] or a placeholder,
//       qscale float32[3] = input, output, residual scales. Cached like sparse layers (keyed by
//       `values`, checked against a fingerprint).
//   spe.v1.qdepthwise2d(x, meta, weight, wscale, bias, qscale, residual, y)
//       An int8 depthwise conv (spe_qdepthwise), NCHW4 uint8 in and out. meta: int32[15] = C,
//       kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, act, has_bias, has_residual,
//       input, output and residual zero points; weight int8 (C, kh, kw); wscale float32[C];
//       bias float32[C] or a placeholder; qscale as qconv2d's. Cached by `weight`, fingerprinted.
//   spe.v1.qlinear(x, meta, group_row0, group_rows, group_ptr, entry_quad, values, wscale, bias,
//                  qscale, y)                 float32 (rows, C) -> float32 (rows, O): an int8
//       linear layer (spe_qconv_run_linear), qconv2d's constants (1x1, NCHW4, no residual).
//   spe.v1.qconv2d_float(x, meta, group_row0, group_rows, group_ptr, entry_quad, values, wscale,
//                        bias, qscale, residual, y)     float32 NCHW -> float32 NCHW: an int8
//       layer quantizing its input and dequantizing its output itself (spe_qconv_run_float),
//       qconv2d's constants (NCHW4 layouts, no u8 residual); meta may go on: [18] the float
//       activation applied after dequantizing, [19] 1 if `residual` is a float tensor of y's
//       shape added before it (else a 1-element placeholder). A linear layer in a
//       transformer's token stream, (1, K, 1, N) -> (1, O, 1, N) (token_int8.py).
//   spe.v1.quantize(x, meta, scale, y)      float32 NCHW -> uint8; meta int32[2] = zero point,
//       layout; scale float32[1].
//   spe.v1.dequantize(x, meta, scale, y)    uint8 -> float32 NCHW; meta int32[3] = channels,
//       zero point, layout.
//   spe.v1.max_pool2d_u8(x, meta, y)        uint8; meta int32[8] = max_pool2d's 6, channels,
//       layout.
//   spe.v1.set_num_threads(n) / spe.v1.num_threads(): the threads every layer runs on. The
//       kernels run on TVM's pool (installed when model.so loads), so these are TVM's.
//   spe.v1.inverted_block(x, meta, expand[6], dw_weight, dw_bias, project[6], residual, y)
//       A fused inverted-residual block (spe_inverted_block_*). meta: int32[12] = in_channels,
//       expanded, out_channels, kernel, stride, expand_act, dw_act, residual, has_expand,
//       has_expand_bias, has_dw_bias, has_project_bias. expand / project: each conv's
//       group_row0, group_rows, group_ptr, entry_col, values, bias (1-element placeholders
//       when absent); `residual` is an unused placeholder (the block adds x itself). Built once
//       per block, cached and checked like sparse_conv2d's layers (keyed by project values).
//
// SPE_PROFILE=1 (or =path) in the environment: every native layer call is timed, and at exit
// a table per layer (first-call order: op, output shape, kernel, calls, min / median us of its
// first 65536 calls) goes to stderr (or is appended to path; a path that cannot be opened is
// said on stderr). Off, it costs one predictable branch per call.
//
// Linked into the exported model.so (engine/codegen/native_bridge.py builds it per architecture), so
// an app needs nothing beyond the TVM runtime libraries. No torch, no Python.
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/error.h>
#include <tvm/ffi/function.h>

#include <pthread.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "spe/spe.h"

namespace {

using tvm::ffi::TensorView;

// ------------------------------------------------------------------ SPE_PROFILE (diagnostic)

class Profile {
 public:
  static Profile* get() {  // nullptr unless SPE_PROFILE is set; leaked on purpose
    static Profile* p = std::getenv("SPE_PROFILE") ? new Profile(std::getenv("SPE_PROFILE")) : nullptr;
    return p;
  }
  void add(const void* key, const char* op, const char* kernel, int64_t c, int64_t h, int64_t w,
           double us) {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = index_.find(key);
    if (it == index_.end()) {
      it = index_.emplace(key, rows_.size()).first;
      rows_.push_back({op, kernel ? kernel : "", c, h, w, {}});
    }
    Row& r = rows_[it->second];
    ++r.calls;
    if (r.us.size() < kKept) r.us.push_back(us);  // memory stays bounded in a long run
  }

 private:
  static constexpr size_t kKept = 1 << 16;  // times kept per layer (the first ones)
  struct Row {
    std::string op, kernel;
    int64_t c, h, w;
    std::vector<double> us;
    size_t calls = 0;
  };
  explicit Profile(const char* where) : where_(where) {
    std::atexit([] { Profile::get()->dump(); });
  }
  void dump() {
    std::lock_guard<std::mutex> lk(mu_);
    FILE* f = (where_ == "1" || where_.empty()) ? stderr : std::fopen(where_.c_str(), "a");
    if (f == nullptr) {
      std::fprintf(stderr, "spe profile: cannot append to SPE_PROFILE=%s (%s)\n", where_.c_str(),
                   std::strerror(errno));
      return;
    }
    std::fprintf(f, "spe profile: %zu layers\n%4s %-18s %-22s %-36s %7s %10s %10s\n", rows_.size(),
                 "#", "op", "output", "kernel", "calls", "min_us", "median_us");
    double total = 0;
    for (size_t i = 0; i < rows_.size(); ++i) {
      Row& r = rows_[i];
      std::sort(r.us.begin(), r.us.end());
      const double med = r.us[r.us.size() / 2];
      total += med;
      char shape[64];
      std::snprintf(shape, sizeof shape, "%lldx%lldx%lld", (long long)r.c, (long long)r.h,
                    (long long)r.w);
      std::fprintf(f, "%4zu %-18s %-22s %-36s %7zu %10.1f %10.1f\n", i, r.op.c_str(), shape,
                   r.kernel.c_str(), r.calls, r.us.front(), med);
    }
    std::fprintf(f, "spe profile: sum of medians %.1f us\n", total);
    if (f != stderr) std::fclose(f);
  }
  std::string where_;
  std::mutex mu_;
  std::unordered_map<const void*, size_t> index_;
  std::vector<Row> rows_;
};

// Times the enclosing scope into the profile when SPE_PROFILE is set.
class ProfileScope {
 public:
  ProfileScope(const void* key, const char* op, const char* kernel, int64_t c, int64_t h, int64_t w)
      : p_(Profile::get()), key_(key), op_(op), kernel_(kernel), c_(c), h_(h), w_(w) {
    if (p_) t0_ = std::chrono::steady_clock::now();
  }
  ~ProfileScope() {  // noexcept: it may run while a layer's error unwinds
    if (p_ == nullptr) return;
    try {
      p_->add(key_, op_, kernel_, c_, h_, w_,
              std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0_)
                  .count());
    } catch (...) {  // out of memory: the call goes unrecorded
    }
  }

 private:
  Profile* p_;
  const void* key_;
  const char *op_, *kernel_;
  int64_t c_, h_, w_;
  std::chrono::steady_clock::time_point t0_;
};

template <class T>
const T* data(const TensorView& t) {
  return reinterpret_cast<const T*>(static_cast<const char*>(t.data_ptr()) + t.byte_offset());
}

template <class T>
T* mutable_data(const TensorView& t) {
  return reinterpret_cast<T*>(static_cast<char*>(t.data_ptr()) + t.byte_offset());
}

void check_f32(const TensorView& t, int ndim, const char* what) {
  if (t.ndim() != ndim || t.dtype().code != kDLFloat || t.dtype().bits != 32)
    TVM_FFI_THROW(ValueError) << "spe: " << what << " must be a " << ndim
                              << "-D float32 tensor";
}

// meta must be an int32 vector of at least n values.
void check_meta(const TensorView& meta, int n, const char* op) {
  if (meta.ndim() != 1 || meta.size(0) < n || meta.dtype().code != kDLInt ||
      meta.dtype().bits != 32)
    TVM_FFI_THROW(ValueError) << "spe." << op << ": meta must hold " << n << " int32";
}

// A tensor dimension as the int32 the C API takes.
int32_t dim32(const TensorView& t, int axis, const char* op) {
  const int64_t d = t.size(axis);
  if (d > std::numeric_limits<int32_t>::max())
    TVM_FFI_THROW(ValueError) << "spe." << op << ": dimension " << axis << " (" << d
                              << ") exceeds 2^31 - 1";
  return int32_t(d);
}

// The layer caches' mutexes are held only while a layer is looked up or built; a fork in
// that moment would leave the child's copy locked by a thread that does not exist there (its
// first call would hang) and the map maybe half-updated. So fork waits for them: the caches
// are locked around fork() (pthread_atfork) and consistent in both processes.
void lock_caches_for_fork();
void unlock_caches_after_fork();

// A sparse layer and a fingerprint of the constants it was built from. The cache is keyed by
// the address of `values`, and a module's constants are heap tensors: after one module is
// unloaded a later one may get its constants at the same addresses. A hit is therefore checked
// against the fingerprint: meta, every array's address and length, and kSamples values of
// `values` and `entry_col` at fixed spread-out positions (cheap per call, unlike comparing a
// layer's megabytes; two different pruned layers agreeing on all of it is not a realistic
// event) and rebuilt when anything differs. Few samples: each is a cold cache line on a page
// of its own (a model's weights are not cached between calls), 64 of them took ~1.7 us of
// every call, serial time that no thread count shortens (~90 us of MobileNetV2's 4 ms at 2
// threads); two trained layers already differ in any one value.
constexpr int kSamples = 8;

struct ConvEntry {
  spe_sparse_conv* conv = nullptr;
  std::vector<int64_t> sig;
};

// Layers keyed by the address of one of their constants.
template <class Entry>
struct LayerCache {
  using Layer = decltype(Entry::conv);
  using Map = std::unordered_map<const void*, Entry>;
  std::mutex mu;
  Map layers;
  // Replaced layers are kept, never destroyed: no call can be left holding a freed one
  // (module lifetime).
  std::vector<Layer> retired;

  // Stores e under key, in place of the stale entry `it` points to if it is not end(); returns
  // e's layer. Called with mu held.
  Layer put(typename Map::iterator it, const void* key, Entry e) {
    if (it == layers.end()) return layers.emplace(key, std::move(e)).first->second.conv;
    retired.push_back(it->second.conv);
    it->second = std::move(e);
    return it->second.conv;
  }
};
using ConvCache = LayerCache<ConvEntry>;

ConvCache& cache() {
  static ConvCache* c = [] {
    auto* made = new ConvCache();
    pthread_atfork(lock_caches_for_fork, unlock_caches_after_fork, unlock_caches_after_fork);
    return made;
  }();
  return *c;
}

template <class T>
void sample(std::vector<int64_t>& sig, const TensorView& t) {
  const int64_t n = t.numel();
  sig.push_back(int64_t(reinterpret_cast<uintptr_t>(data<T>(t))));
  sig.push_back(n);
  if (n == 0) return;
  const T* v = data<T>(t);
  for (int i = 0; i < kSamples; ++i) {
    const int64_t at = (n - 1) * i / (kSamples - 1);
    int64_t bits = 0;
    std::memcpy(&bits, v + at, sizeof(T));
    sig.push_back(bits);
  }
}

std::vector<int64_t> signature(const TensorView& meta, const TensorView& row0,
                               const TensorView& rows, const TensorView& gptr,
                               const TensorView& cols, const TensorView& values,
                               const TensorView& bias) {
  std::vector<int64_t> sig;
  sig.reserve(32 + 4 * kSamples);
  const int32_t* m = data<int32_t>(meta);
  sig.insert(sig.end(), m, m + 13);
  for (const TensorView* t : {&row0, &rows, &gptr, &bias}) {
    sig.push_back(int64_t(reinterpret_cast<uintptr_t>(t->data_ptr())) + t->byte_offset());
    sig.push_back(t->numel());
  }
  sample<int32_t>(sig, cols);
  sample<float>(sig, values);
  return sig;
}

spe_sparse_conv* get_conv(const TensorView& meta, const TensorView& row0,
                          const TensorView& rows, const TensorView& gptr,
                          const TensorView& cols, const TensorView& values,
                          const TensorView& bias) {
  const void* key = data<float>(values);
  for (const TensorView* t : {&meta, &row0, &rows, &cols})
    if (t->dtype().code != kDLInt || t->dtype().bits != 32)
      TVM_FFI_THROW(ValueError) << "spe.sparse_conv2d: meta/group_row0/group_rows/entry_col "
                                   "must be int32";
  if (values.dtype().code != kDLFloat || values.dtype().bits != 32)
    TVM_FFI_THROW(ValueError) << "spe.sparse_conv2d: values must be float32";
  std::vector<int64_t> sig = signature(meta, row0, rows, gptr, cols, values, bias);
  auto& c = cache();
  std::lock_guard<std::mutex> lk(c.mu);
  auto it = c.layers.find(key);
  if (it != c.layers.end() && it->second.sig == sig) return it->second.conv;
  const int32_t* m = data<int32_t>(meta);
  spe_conv_params p{m[0], m[1], m[2], m[3], m[4], m[5], m[6], m[7], m[8], m[9]};
  // group_ptr may arrive as int32 (relax.const narrows int64 constants that fit) or int64.
  const int64_t n_groups = row0.size(0);
  if (gptr.ndim() != 1 || gptr.size(0) != n_groups + 1 || gptr.dtype().code != kDLInt)
    TVM_FFI_THROW(ValueError) << "spe.sparse_conv2d: group_ptr must be int[n_groups + 1]";
  std::vector<int64_t> ptr(size_t(n_groups + 1));
  for (int64_t g = 0; g <= n_groups; ++g)
    ptr[g] = gptr.dtype().bits == 64 ? data<int64_t>(gptr)[g] : data<int32_t>(gptr)[g];
  ConvEntry e;
  e.sig = std::move(sig);
  const spe_status s = spe_sparse_conv_create(
      &p, int32_t(n_groups), data<int32_t>(row0), data<int32_t>(rows), ptr.data(),
      data<int32_t>(cols), data<float>(values), m[11] ? data<float>(bias) : nullptr,
      spe_activation(m[10]), "auto", &e.conv);
  if (s != SPE_OK) TVM_FFI_THROW(ValueError) << "spe.sparse_conv2d: " << spe_last_error();
  return c.put(it, key, std::move(e));
}

const char* kernel_of(const spe_sparse_conv* c, int32_t, int32_t) { return spe_sparse_conv_kernel_name(c); }
const char* kernel_of(const spe_depthwise_conv* c, int32_t, int32_t) {
  return spe_depthwise_conv_kernel_name(c);
}
const char* kernel_of(const spe_dense_conv* c, int32_t h, int32_t w) {
  return spe_dense_conv_kernel_name(c, h, w);
}

// A conv op once its layer is built: y must have the layer's output size for x, the residual
// (if the op has one) y's shape; then the run.
template <class Layer, class OutputSize, class Run>
void run_conv(const char* op, Layer* conv, OutputSize output_size, Run run, const TensorView& x,
              int32_t n, int32_t h, int32_t w, bool has_residual, const TensorView& residual,
              const TensorView& y) {
  int32_t ho = 0, wo = 0;
  output_size(conv, h, w, &ho, &wo);
  if (ho != y.size(2) || wo != y.size(3))
    TVM_FFI_THROW(ValueError) << "spe." << op << ": output must be " << ho << "x" << wo;
  if (has_residual) {
    check_f32(residual, 4, "residual");
    for (int d = 0; d < 4; ++d)
      if (residual.size(d) != y.size(d))
        TVM_FFI_THROW(ValueError) << "spe." << op << ": residual must have the output's shape";
  }
  ProfileScope prof(conv, op, Profile::get() ? kernel_of(conv, h, w) : nullptr, y.size(1), ho, wo);
  const spe_status s = run(conv, data<float>(x), n, h, w,
                           has_residual ? data<float>(residual) : nullptr, mutable_data<float>(y));
  if (s != SPE_OK) TVM_FFI_THROW(ValueError) << "spe." << op << ": " << spe_last_error();
}

void sparse_conv2d(TensorView x, TensorView meta, TensorView row0, TensorView rows,
                   TensorView gptr, TensorView cols, TensorView values, TensorView bias,
                   TensorView residual, TensorView y) {
  check_f32(x, 4, "x");
  check_f32(y, 4, "y");
  check_meta(meta, 13, "sparse_conv2d");
  const int32_t* m = data<int32_t>(meta);
  if (x.size(1) != m[1] || y.size(1) != m[0] || x.size(0) != y.size(0))
    TVM_FFI_THROW(ValueError) << "spe.sparse_conv2d: x/y shapes do not match the layer";
  const int32_t n = dim32(x, 0, "sparse_conv2d"), h = dim32(x, 2, "sparse_conv2d"),
                w = dim32(x, 3, "sparse_conv2d");
  spe_sparse_conv* conv = get_conv(meta, row0, rows, gptr, cols, values, bias);
  run_conv("sparse_conv2d", conv, spe_sparse_conv_output_size, spe_sparse_conv_run, x, n, h, w,
           m[12] != 0, residual, y);
}

// A depthwise layer and the fingerprint of its constants, keyed by the weight's address and
// checked as sparse layers are (meta, the weight's and bias' addresses, sizes and samples):
// comparing a kept copy of the weight read two cold arrays, up to 3 us a call at 960 channels.
struct DwEntry {
  spe_depthwise_conv* conv = nullptr;
  std::vector<int64_t> sig;
};

using DwCache = LayerCache<DwEntry>;

DwCache& dw_cache() {
  static DwCache* c = new DwCache();
  return *c;
}

// The fused blocks' cache (spe.v1.inverted_block, below).
struct BlockEntry {
  spe_inverted_block* conv = nullptr;
  std::vector<int64_t> sig;
};
using BlockCache = LayerCache<BlockEntry>;

BlockCache& block_cache() {
  static BlockCache* c = new BlockCache();
  return *c;
}

// A dense layer (spe.v1.dense_conv2d, below) and the fingerprint of its constants (meta, the
// weight's and bias' addresses and sizes, kSamples weights): a dense weight is megabytes, too
// much to copy and compare on every call as the depthwise cache does.
struct DenseEntry {
  spe_dense_conv* conv = nullptr;
  std::vector<int64_t> sig;
};

LayerCache<DenseEntry>& dense_cache() {
  static auto* c = new LayerCache<DenseEntry>();
  return *c;
}

// All caches, always in this order (no getter ever holds two).
struct QConvEntry {
  spe_qconv* conv = nullptr;
  std::vector<int64_t> sig;
};
using QConvCache = LayerCache<QConvEntry>;

QConvCache& qconv_cache() {
  static QConvCache* c = new QConvCache();
  return *c;
}

struct QDwEntry {
  spe_qdepthwise* conv = nullptr;
  std::vector<int64_t> sig;
};
using QDwCache = LayerCache<QDwEntry>;

QDwCache& qdw_cache() {
  static QDwCache* c = new QDwCache();
  return *c;
}

void lock_caches_for_fork() {
  cache().mu.lock();
  dw_cache().mu.lock();
  block_cache().mu.lock();
  dense_cache().mu.lock();
  qconv_cache().mu.lock();
  qdw_cache().mu.lock();
}

void unlock_caches_after_fork() {
  qdw_cache().mu.unlock();
  qconv_cache().mu.unlock();
  dense_cache().mu.unlock();
  block_cache().mu.unlock();
  dw_cache().mu.unlock();
  cache().mu.unlock();
}

spe_depthwise_conv* get_depthwise(const TensorView& meta, const TensorView& weight,
                                  const TensorView& bias) {
  const int32_t* m = data<int32_t>(meta);
  const int64_t nw = int64_t(m[1]) * m[2] * m[3];
  if (weight.dtype().code != kDLFloat || weight.dtype().bits != 32 || weight.numel() != nw)
    TVM_FFI_THROW(ValueError) << "spe.depthwise_conv2d: weight must be float32 with C*kh*kw = "
                              << nw << " elements, got " << weight.numel();
  const int64_t nb = m[11] ? m[1] : 0;
  if (m[11] && (bias.dtype().code != kDLFloat || bias.dtype().bits != 32 || bias.numel() != nb))
    TVM_FFI_THROW(ValueError) << "spe.depthwise_conv2d: bias must be float32[" << nb << "]";
  const float* w = data<float>(weight);
  const float* b = m[11] ? data<float>(bias) : nullptr;
  std::vector<int64_t> sig(m, m + 13);
  sample<float>(sig, weight);
  if (b) sample<float>(sig, bias);
  auto& c = dw_cache();
  std::lock_guard<std::mutex> lk(c.mu);
  auto it = c.layers.find(w);
  if (it != c.layers.end() && it->second.sig == sig) return it->second.conv;
  spe_conv_params p{m[0], m[1], m[2], m[3], m[4], m[5], m[6], m[7], m[8], m[9]};
  DwEntry e;
  const spe_status s = spe_depthwise_conv_create(&p, w, b, spe_activation(m[10]), "auto", &e.conv);
  if (s != SPE_OK) TVM_FFI_THROW(ValueError) << "spe.depthwise_conv2d: " << spe_last_error();
  e.sig = std::move(sig);
  return c.put(it, w, std::move(e));
}

void depthwise_conv2d(TensorView x, TensorView meta, TensorView weight, TensorView bias,
                      TensorView residual, TensorView y) {
  check_f32(x, 4, "x");
  check_f32(y, 4, "y");
  check_meta(meta, 13, "depthwise_conv2d");
  const int32_t* m = data<int32_t>(meta);
  if (m[0] != m[1])
    TVM_FFI_THROW(ValueError) << "spe.depthwise_conv2d: meta says " << m[0] << " output and "
                              << m[1] << " input channels; a depthwise conv has C of each";
  if (x.size(1) != m[1] || y.size(1) != m[1] || x.size(0) != y.size(0))
    TVM_FFI_THROW(ValueError) << "spe.depthwise_conv2d: x/y shapes do not match the layer ("
                              << m[1] << " channels)";
  const int32_t n = dim32(x, 0, "depthwise_conv2d"), h = dim32(x, 2, "depthwise_conv2d"),
                w = dim32(x, 3, "depthwise_conv2d");
  spe_depthwise_conv* conv = get_depthwise(meta, weight, bias);
  run_conv("depthwise_conv2d", conv, spe_depthwise_conv_output_size, spe_depthwise_conv_run, x, n,
           h, w, m[12] != 0, residual, y);
}

// ------------------------------------------------------------------------- dense conv (P7)

spe_dense_conv* get_dense(const TensorView& meta, const TensorView& weight,
                          const TensorView& bias) {
  const int32_t* m = data<int32_t>(meta);
  const int64_t nw = int64_t(m[0]) * m[1] * m[2] * m[3];
  if (weight.dtype().code != kDLFloat || weight.dtype().bits != 32 || weight.numel() != nw)
    TVM_FFI_THROW(ValueError) << "spe.dense_conv2d: weight must be float32 with O*C*kh*kw = "
                              << nw << " elements, got " << weight.numel();
  if (m[11] && (bias.dtype().code != kDLFloat || bias.dtype().bits != 32 || bias.numel() != m[0]))
    TVM_FFI_THROW(ValueError) << "spe.dense_conv2d: bias must be float32[" << m[0] << "]";
  if (m[13] != 0 && m[13] != 1)
    TVM_FFI_THROW(ValueError) << "spe.dense_conv2d: algorithm " << m[13] << " (0 gemm, 1 winograd)";
  std::vector<int64_t> sig(m, m + 14);
  sample<float>(sig, weight);
  sig.push_back(m[11] ? int64_t(reinterpret_cast<uintptr_t>(data<float>(bias))) : 0);
  auto& c = dense_cache();
  std::lock_guard<std::mutex> lk(c.mu);
  const float* w = data<float>(weight);
  auto it = c.layers.find(w);
  if (it != c.layers.end() && it->second.sig == sig) return it->second.conv;
  const spe_conv_params p{m[0], m[1], m[2], m[3], m[4], m[5], m[6], m[7], m[8], m[9]};
  DenseEntry e;
  e.sig = std::move(sig);
  const spe_status s = spe_dense_conv_create(&p, w, m[11] ? data<float>(bias) : nullptr,
                                             spe_activation(m[10]), "auto",
                                             m[13] ? "winograd" : "gemm", &e.conv);
  if (s != SPE_OK) TVM_FFI_THROW(ValueError) << "spe.dense_conv2d: " << spe_last_error();
  return c.put(it, w, std::move(e));
}

// A linear layer on the dense conv (engine/codegen/native_replace.py): x (N, C) -> y (N, O), a
// 1x1 stride-1 unpadded layer over N one-pixel images (the GEMV at N = 1).
void dense_linear(const TensorView& x, const int32_t* m, spe_dense_conv* conv,
                  const TensorView& residual, const TensorView& y) {
  check_f32(x, 2, "x");
  check_f32(y, 2, "y");
  const bool flat = m[2] == 1 && m[3] == 1 && m[4] == 1 && m[5] == 1 && m[6] == 0 && m[7] == 0;
  if (!flat || x.size(0) != y.size(0) || x.size(1) != m[1] || y.size(1) != m[0])
    TVM_FFI_THROW(ValueError) << "spe.dense_conv2d: 2-D x/y need a 1x1 layer, (N, " << m[1]
                              << ") / (N, " << m[0] << ")";
  if (m[12] != 0) {
    check_f32(residual, 2, "residual");
    if (residual.size(0) != y.size(0) || residual.size(1) != y.size(1))
      TVM_FFI_THROW(ValueError) << "spe.dense_conv2d: residual must have the output's shape";
  }
  ProfileScope prof(conv, "dense_linear", Profile::get() ? spe_dense_conv_kernel_name(conv, 1, 1) : nullptr,
                    y.size(1), 1, 1);
  const spe_status s = spe_dense_conv_run(conv, data<float>(x), dim32(x, 0, "dense_conv2d"), 1,
                                          1, m[12] ? data<float>(residual) : nullptr,
                                          mutable_data<float>(y));
  if (s != SPE_OK) TVM_FFI_THROW(ValueError) << "spe.dense_conv2d: " << spe_last_error();
}

void dense_conv2d(TensorView x, TensorView meta, TensorView weight, TensorView bias,
                  TensorView residual, TensorView y) {
  constexpr const char* kOp = "dense_conv2d";
  check_meta(meta, 14, kOp);
  const int32_t* m = data<int32_t>(meta);
  if (x.ndim() == 2) {
    dense_linear(x, m, get_dense(meta, weight, bias), residual, y);
    return;
  }
  check_f32(x, 4, "x");
  check_f32(y, 4, "y");
  if (x.size(0) != y.size(0) || x.size(1) != m[1] || y.size(1) != m[0])
    TVM_FFI_THROW(ValueError) << "spe.dense_conv2d: x/y must be (N, " << m[1] << ", H, W) / (N, "
                              << m[0] << ", Ho, Wo)";
  spe_dense_conv* conv = get_dense(meta, weight, bias);
  run_conv(kOp, conv, spe_dense_conv_output_size, spe_dense_conv_run, x, dim32(x, 0, kOp),
           dim32(x, 2, kOp), dim32(x, 3, kOp), m[12] != 0, residual, y);
}

void max_pool2d(TensorView x, TensorView meta, TensorView y) {
  check_f32(x, 4, "x");
  check_f32(y, 4, "y");
  check_meta(meta, 6, "max_pool2d");
  const int32_t* m = data<int32_t>(meta);
  const int32_t n = dim32(x, 0, "max_pool2d"), c = dim32(x, 1, "max_pool2d"),
                h = dim32(x, 2, "max_pool2d"), w = dim32(x, 3, "max_pool2d");
  int32_t ho = 0, wo = 0;
  if (spe_max_pool2d_output_size(h, w, m[0], m[1], m[2], m[3], m[4], m[5], &ho, &wo) != SPE_OK)
    TVM_FFI_THROW(ValueError) << "spe." << spe_last_error();
  if (y.size(0) != n || y.size(1) != c || y.size(2) != ho || y.size(3) != wo)
    TVM_FFI_THROW(ValueError) << "spe.max_pool2d: output must be (" << n << ", " << c << ", "
                              << ho << ", " << wo << ")";
  ProfileScope prof(meta.data_ptr(), "max_pool2d", nullptr, c, ho, wo);
  const spe_status s = spe_max_pool2d(data<float>(x), n, c, h, w, m[0], m[1], m[2], m[3], m[4],
                                      m[5], mutable_data<float>(y));
  if (s != SPE_OK) TVM_FFI_THROW(ValueError) << "spe." << spe_last_error();
}

// ------------------------------------------------------------------ int8

bool is_u8(const TensorView& t) { return t.dtype().code == kDLUInt && t.dtype().bits == 8; }

// An int8 tensor of `layout` (SPE_QLAYOUT_*) with `channels` channels: (N, C, H, W) or
// (N, ceil(C / 4), H, W, 4) uint8.
void check_u8(const TensorView& t, int32_t layout, int64_t channels, const char* what, const char* op) {
  const bool q4 = layout == SPE_QLAYOUT_NCHW4;
  if (!is_u8(t) || t.ndim() != (q4 ? 5 : 4) || t.size(1) != (q4 ? (channels + 3) / 4 : channels) ||
      (q4 && t.size(4) != 4))
    TVM_FFI_THROW(ValueError) << "spe." << op << ": " << what << " must be uint8 "
                              << (q4 ? "(N, ceil(C / 4), H, W, 4)" : "(N, C, H, W)") << " with C = " << channels;
}

spe_qconv* get_qconv(const TensorView& meta, const TensorView& row0, const TensorView& rows,
                     const TensorView& gptr, const TensorView& quads, const TensorView& values,
                     const TensorView& wscale, const TensorView& bias, const TensorView& qscale) {
  constexpr const char* kOp = "qconv2d";
  for (const TensorView* t : {&row0, &rows, &quads})
    if (t->dtype().code != kDLInt || t->dtype().bits != 32)
      TVM_FFI_THROW(ValueError) << "spe.qconv2d: group_row0/group_rows/entry_quad must be int32";
  if (values.dtype().code != kDLInt || values.dtype().bits != 8)
    TVM_FFI_THROW(ValueError) << "spe.qconv2d: values must be int8";
  const int32_t* m = data<int32_t>(meta);
  check_f32(wscale, 1, "wscale");
  check_f32(qscale, 1, "qscale");
  if (wscale.numel() != m[0] || qscale.numel() < 3 || (m[11] && bias.numel() != m[0]))
    TVM_FFI_THROW(ValueError) << "spe.qconv2d: wscale / bias must hold O floats, qscale 3";
  std::vector<int64_t> sig;
  sig.insert(sig.end(), m, m + 18);
  for (const TensorView* t : {&row0, &rows, &gptr, &bias, &wscale, &qscale}) {
    sig.push_back(int64_t(reinterpret_cast<uintptr_t>(t->data_ptr())) + t->byte_offset());
    sig.push_back(t->numel());
  }
  sample<int32_t>(sig, quads);
  sample<int8_t>(sig, values);
  const void* key = data<int8_t>(values);
  auto& c = qconv_cache();
  std::lock_guard<std::mutex> lk(c.mu);
  auto it = c.layers.find(key);
  if (it != c.layers.end() && it->second.sig == sig) return it->second.conv;
  spe_conv_params p{m[0], m[1], m[2], m[3], m[4], m[5], m[6], m[7], m[8], m[9]};
  const int64_t n_groups = row0.size(0);
  if (gptr.ndim() != 1 || gptr.size(0) != n_groups + 1 || gptr.dtype().code != kDLInt ||
      rows.numel() != n_groups)
    TVM_FFI_THROW(ValueError) << "spe.qconv2d: group_rows must be int32[n_groups], group_ptr int[n_groups + 1]";
  std::vector<int64_t> ptr(size_t(n_groups + 1));
  for (int64_t g = 0; g <= n_groups; ++g)
    ptr[g] = gptr.dtype().bits == 64 ? data<int64_t>(gptr)[g] : data<int32_t>(gptr)[g];
  // the arrays' lengths against the groups (spe_qconv_create reads them by these)
  int64_t nvals = 0;
  for (int64_t g = 0; g < n_groups; ++g) {
    const int32_t r = data<int32_t>(rows)[g];
    if (ptr[g] < 0 || ptr[g + 1] < ptr[g] || r < 1 || r > 8)
      TVM_FFI_THROW(ValueError) << "spe.qconv2d: group " << g << " out of range";
    nvals += (ptr[g + 1] - ptr[g]) * r * 4;
  }
  if (quads.numel() != ptr[n_groups] || values.numel() != nvals)
    TVM_FFI_THROW(ValueError) << "spe.qconv2d: entry_quad / values lengths do not match the groups";
  const float* qs = data<float>(qscale);
  spe_qconv_quant q{};
  q.input = {qs[0], m[15]};
  q.output = {qs[1], m[16]};
  q.residual = {qs[2], m[17]};
  q.weight_scale = data<float>(wscale);
  q.bias = m[11] ? data<float>(bias) : nullptr;
  q.input_layout = m[13];
  q.output_layout = m[14];
  QConvEntry e;
  e.sig = std::move(sig);
  const spe_status s = spe_qconv_create(&p, int32_t(n_groups), data<int32_t>(row0), data<int32_t>(rows),
                                        ptr.data(), data<int32_t>(quads), data<int8_t>(values), &q,
                                        spe_activation(m[10]), "auto", &e.conv);
  if (s != SPE_OK) TVM_FFI_THROW(ValueError) << "spe." << kOp << ": " << spe_last_error();
  return c.put(it, key, std::move(e));
}

void qconv2d(TensorView x, TensorView meta, TensorView row0, TensorView rows, TensorView gptr,
             TensorView quads, TensorView values, TensorView wscale, TensorView bias,
             TensorView qscale, TensorView residual, TensorView y) {
  constexpr const char* kOp = "qconv2d";
  check_meta(meta, 18, kOp);
  const int32_t* m = data<int32_t>(meta);
  check_u8(x, m[13], m[1], "x", kOp);
  check_u8(y, m[14], m[0], "y", kOp);
  if (x.size(0) != y.size(0)) TVM_FFI_THROW(ValueError) << "spe.qconv2d: x and y batch differ";
  const int32_t n = dim32(x, 0, kOp), h = dim32(x, 2, kOp), w = dim32(x, 3, kOp);
  spe_qconv* conv = get_qconv(meta, row0, rows, gptr, quads, values, wscale, bias, qscale);
  int32_t ho = 0, wo = 0;
  spe_qconv_output_size(conv, h, w, &ho, &wo);
  if (ho != y.size(2) || wo != y.size(3))
    TVM_FFI_THROW(ValueError) << "spe.qconv2d: output must be " << ho << "x" << wo;
  if (m[12]) {
    check_u8(residual, m[14], m[0], "residual", kOp);
    for (int d = 0; d < y.ndim(); ++d)
      if (residual.size(d) != y.size(d))
        TVM_FFI_THROW(ValueError) << "spe.qconv2d: residual must have the output's shape";
  }
  ProfileScope prof(conv, kOp, Profile::get() ? spe_qconv_kernel_name(conv) : nullptr, m[0], ho, wo);
  const spe_status s = spe_qconv_run(conv, data<uint8_t>(x), n, h, w,
                                     m[12] ? data<uint8_t>(residual) : nullptr, mutable_data<uint8_t>(y));
  if (s != SPE_OK) TVM_FFI_THROW(ValueError) << "spe.qconv2d: " << spe_last_error();
}

// An int8 linear layer on float rows (spe_qconv_run_linear): qconv2d's constants (a 1x1 layer,
// NCHW4 in and out, no residual), x float32 (rows, C) -> y float32 (rows, O).
void qlinear(TensorView x, TensorView meta, TensorView row0, TensorView rows, TensorView gptr,
             TensorView quads, TensorView values, TensorView wscale, TensorView bias,
             TensorView qscale, TensorView y) {
  constexpr const char* kOp = "qlinear";
  check_meta(meta, 18, kOp);
  const int32_t* m = data<int32_t>(meta);
  check_f32(x, 2, "x");
  check_f32(y, 2, "y");
  if (x.size(1) != m[1] || y.size(1) != m[0] || x.size(0) != y.size(0))
    TVM_FFI_THROW(ValueError) << "spe.qlinear: x / y must be (rows, " << m[1] << ") / (rows, " << m[0] << ")";
  spe_qconv* conv = get_qconv(meta, row0, rows, gptr, quads, values, wscale, bias, qscale);
  const int32_t n = dim32(x, 0, kOp);
  ProfileScope prof(conv, kOp, Profile::get() ? spe_qconv_kernel_name(conv) : nullptr, m[0], 1, n);
  const spe_status s = spe_qconv_run_linear(conv, data<float>(x), n, mutable_data<float>(y));
  if (s != SPE_OK) TVM_FFI_THROW(ValueError) << "spe.qlinear: " << spe_last_error();
}

// An int8 layer on float NCHW (spe_qconv_run_float): qconv2d's constants, NCHW4 layouts, no u8
// residual; meta[18] a float activation after dequantizing, meta[19] 1 if `residual` is a float
// tensor of y's shape added before it (else a placeholder).
void qconv2d_float(TensorView x, TensorView meta, TensorView row0, TensorView rows, TensorView gptr,
                   TensorView quads, TensorView values, TensorView wscale, TensorView bias,
                   TensorView qscale, TensorView residual, TensorView y) {
  constexpr const char* kOp = "qconv2d_float";
  check_meta(meta, 18, kOp);
  const int32_t* m = data<int32_t>(meta);
  check_f32(x, 4, "x");
  check_f32(y, 4, "y");
  if (m[12] || m[13] != SPE_QLAYOUT_NCHW4 || m[14] != SPE_QLAYOUT_NCHW4)
    TVM_FFI_THROW(ValueError) << "spe.qconv2d_float: the layer must have NCHW4 layouts and no residual";
  const int32_t post_act = meta.size(0) > 18 ? m[18] : 0;
  const bool has_res = meta.size(0) > 19 && m[19] != 0;
  if (has_res) {
    check_f32(residual, 4, "residual");
    for (int d = 0; d < 4; ++d)
      if (residual.size(d) != y.size(d))
        TVM_FFI_THROW(ValueError) << "spe.qconv2d_float: residual must have the output's shape";
  }
  if (x.size(1) != m[1] || y.size(1) != m[0] || x.size(0) != y.size(0))
    TVM_FFI_THROW(ValueError) << "spe.qconv2d_float: x / y must be (N, " << m[1] << ", H, W) / (N, " << m[0]
                              << ", Ho, Wo)";
  const int32_t n = dim32(x, 0, kOp), h = dim32(x, 2, kOp), w = dim32(x, 3, kOp);
  spe_qconv* conv = get_qconv(meta, row0, rows, gptr, quads, values, wscale, bias, qscale);
  int32_t ho = 0, wo = 0;
  spe_qconv_output_size(conv, h, w, &ho, &wo);
  if (ho != y.size(2) || wo != y.size(3))
    TVM_FFI_THROW(ValueError) << "spe.qconv2d_float: output must be " << ho << "x" << wo;
  ProfileScope prof(conv, kOp, Profile::get() ? spe_qconv_kernel_name(conv) : nullptr, m[0], ho, wo);
  const spe_status s = spe_qconv_run_float(conv, data<float>(x), n, h, w, has_res ? data<float>(residual) : nullptr,
                                           spe_activation(post_act), mutable_data<float>(y));
  if (s != SPE_OK) TVM_FFI_THROW(ValueError) << "spe.qconv2d_float: " << spe_last_error();
}

spe_qdepthwise* get_qdepthwise(const TensorView& meta, const TensorView& weight, const TensorView& wscale,
                               const TensorView& bias, const TensorView& qscale) {
  const int32_t* m = data<int32_t>(meta);
  if (weight.dtype().code != kDLInt || weight.dtype().bits != 8 ||
      weight.numel() != int64_t(m[0]) * m[1] * m[2])
    TVM_FFI_THROW(ValueError) << "spe.qdepthwise2d: weight must be int8 with C*kh*kw values";
  check_f32(wscale, 1, "wscale");
  check_f32(qscale, 1, "qscale");
  if (wscale.numel() != m[0] || qscale.numel() < 3 || (m[10] && bias.numel() != m[0]))
    TVM_FFI_THROW(ValueError) << "spe.qdepthwise2d: wscale / bias must hold C floats, qscale 3";
  std::vector<int64_t> sig(m, m + 15);
  for (const TensorView* t : {&bias, &wscale, &qscale}) {
    sig.push_back(int64_t(reinterpret_cast<uintptr_t>(t->data_ptr())) + t->byte_offset());
    sig.push_back(t->numel());
  }
  sample<int8_t>(sig, weight);
  const void* key = data<int8_t>(weight);
  auto& c = qdw_cache();
  std::lock_guard<std::mutex> lk(c.mu);
  auto it = c.layers.find(key);
  if (it != c.layers.end() && it->second.sig == sig) return it->second.conv;
  const spe_conv_params p{m[0], m[0], m[1], m[2], m[3], m[4], m[5], m[6], m[7], m[8]};
  const float* qs = data<float>(qscale);
  spe_qconv_quant q{};
  q.input = {qs[0], m[12]};
  q.output = {qs[1], m[13]};
  q.residual = {qs[2], m[14]};
  q.weight_scale = data<float>(wscale);
  q.bias = m[10] ? data<float>(bias) : nullptr;
  q.input_layout = q.output_layout = SPE_QLAYOUT_NCHW4;
  QDwEntry e;
  e.sig = std::move(sig);
  const spe_status s = spe_qdepthwise_create(&p, data<int8_t>(weight), &q, spe_activation(m[9]), "auto", &e.conv);
  if (s != SPE_OK) TVM_FFI_THROW(ValueError) << "spe.qdepthwise2d: " << spe_last_error();
  return c.put(it, key, std::move(e));
}

void qdepthwise2d(TensorView x, TensorView meta, TensorView weight, TensorView wscale, TensorView bias,
                  TensorView qscale, TensorView residual, TensorView y) {
  constexpr const char* kOp = "qdepthwise2d";
  check_meta(meta, 15, kOp);
  const int32_t* m = data<int32_t>(meta);
  check_u8(x, SPE_QLAYOUT_NCHW4, m[0], "x", kOp);
  check_u8(y, SPE_QLAYOUT_NCHW4, m[0], "y", kOp);
  const int32_t n = dim32(x, 0, kOp), h = dim32(x, 2, kOp), w = dim32(x, 3, kOp);
  spe_qdepthwise* conv = get_qdepthwise(meta, weight, wscale, bias, qscale);
  int32_t ho = 0, wo = 0;
  spe_qdepthwise_output_size(conv, h, w, &ho, &wo);
  if (y.size(0) != n || ho != y.size(2) || wo != y.size(3))
    TVM_FFI_THROW(ValueError) << "spe.qdepthwise2d: output must be " << ho << "x" << wo;
  if (m[11]) {
    check_u8(residual, SPE_QLAYOUT_NCHW4, m[0], "residual", kOp);
    for (int d = 0; d < 5; ++d)
      if (residual.size(d) != y.size(d))
        TVM_FFI_THROW(ValueError) << "spe.qdepthwise2d: residual must have the output's shape";
  }
  ProfileScope prof(conv, kOp, Profile::get() ? spe_qdepthwise_kernel_name(conv) : nullptr, m[0], ho, wo);
  const spe_status s = spe_qdepthwise_run(conv, data<uint8_t>(x), n, h, w,
                                          m[11] ? data<uint8_t>(residual) : nullptr, mutable_data<uint8_t>(y));
  if (s != SPE_OK) TVM_FFI_THROW(ValueError) << "spe.qdepthwise2d: " << spe_last_error();
}

void quantize(TensorView x, TensorView meta, TensorView scale, TensorView y) {
  check_f32(x, 4, "x");
  check_meta(meta, 2, "quantize");
  check_f32(scale, 1, "scale");
  if (scale.numel() < 1) TVM_FFI_THROW(ValueError) << "spe.quantize: scale must hold 1 float";
  const int32_t* m = data<int32_t>(meta);
  const int32_t n = dim32(x, 0, "quantize"), c = dim32(x, 1, "quantize"), h = dim32(x, 2, "quantize"),
                w = dim32(x, 3, "quantize");
  check_u8(y, m[1], c, "y", "quantize");
  if (y.size(0) != n || y.size(2) != h || y.size(3) != w)
    TVM_FFI_THROW(ValueError) << "spe.quantize: y must have x's batch and size";
  ProfileScope prof(meta.data_ptr(), "quantize", nullptr, c, h, w);
  const spe_status s = spe_quantize(data<float>(x), n, c, h, w, spe_qparams{data<float>(scale)[0], m[0]},
                                    m[1], mutable_data<uint8_t>(y));
  if (s != SPE_OK) TVM_FFI_THROW(ValueError) << "spe." << spe_last_error();
}

void dequantize(TensorView x, TensorView meta, TensorView scale, TensorView y) {
  check_meta(meta, 3, "dequantize");
  check_f32(scale, 1, "scale");
  if (scale.numel() < 1) TVM_FFI_THROW(ValueError) << "spe.dequantize: scale must hold 1 float";
  check_f32(y, 4, "y");
  const int32_t* m = data<int32_t>(meta);
  check_u8(x, m[2], m[0], "x", "dequantize");
  const int32_t n = dim32(x, 0, "dequantize"), h = dim32(x, 2, "dequantize"), w = dim32(x, 3, "dequantize");
  if (y.size(0) != n || y.size(1) != m[0] || y.size(2) != h || y.size(3) != w)
    TVM_FFI_THROW(ValueError) << "spe.dequantize: y must be (N, " << m[0] << ", H, W)";
  ProfileScope prof(meta.data_ptr(), "dequantize", nullptr, m[0], h, w);
  const spe_status s = spe_dequantize(data<uint8_t>(x), n, m[0], h, w, spe_qparams{data<float>(scale)[0], m[1]},
                                      m[2], mutable_data<float>(y));
  if (s != SPE_OK) TVM_FFI_THROW(ValueError) << "spe." << spe_last_error();
}

void max_pool2d_u8(TensorView x, TensorView meta, TensorView y) {
  check_meta(meta, 8, "max_pool2d_u8");
  const int32_t* m = data<int32_t>(meta);
  check_u8(x, m[7], m[6], "x", "max_pool2d_u8");
  check_u8(y, m[7], m[6], "y", "max_pool2d_u8");
  const int32_t n = dim32(x, 0, "max_pool2d_u8"), h = dim32(x, 2, "max_pool2d_u8"), w = dim32(x, 3, "max_pool2d_u8");
  int32_t ho = 0, wo = 0;
  if (spe_max_pool2d_output_size(h, w, m[0], m[1], m[2], m[3], m[4], m[5], &ho, &wo) != SPE_OK)
    TVM_FFI_THROW(ValueError) << "spe." << spe_last_error();
  if (y.size(0) != n || y.size(2) != ho || y.size(3) != wo)
    TVM_FFI_THROW(ValueError) << "spe.max_pool2d_u8: output must be " << ho << "x" << wo;
  ProfileScope prof(meta.data_ptr(), "max_pool2d_u8", nullptr, m[6], ho, wo);
  const spe_status s = spe_max_pool2d_u8(data<uint8_t>(x), n, m[6], h, w, m[0], m[1], m[2], m[3], m[4], m[5],
                                         m[7], mutable_data<uint8_t>(y));
  if (s != SPE_OK) TVM_FFI_THROW(ValueError) << "spe." << spe_last_error();
}

// One thread pool per model: the kernels run on TVM's workers, the ones the generated layers
// and the glue use (TVMBackendParallelLaunch is libtvm_runtime's, the entry point every
// TVM-generated parallel loop calls). With a pool each, the idle workers of one spin on the
// cores the next layer's pool needs. The ABI below is TVM's C backend API
// (tvm/runtime/c_backend_api.h, stable since TVM 0.6), declared here because the bridge builds
// against the tvm_ffi headers alone.
struct TVMParallelGroupEnv {
  void* sync_handle;
  int32_t num_task;
};
using FTVMParallelLambda = int (*)(int task_id, TVMParallelGroupEnv* penv, void* cdata);
extern "C" int TVMBackendParallelLaunch(FTVMParallelLambda flambda, void* cdata, int num_task);

struct SpeJob {
  spe_task_fn body;
  void* job;
};

int run_spe_task(int task_id, TVMParallelGroupEnv*, void* cdata) {
  const SpeJob* j = static_cast<const SpeJob*>(cdata);
  return j->body(task_id, j->job);
}

int32_t tvm_launch(spe_task_fn body, void* job, void*) {
  SpeJob j{body, job};
  return TVMBackendParallelLaunch(run_spe_task, &j, 0);  // 0: every thread of TVM's pool
}

int32_t tvm_num_threads(void*) {
  static const auto fn = tvm::ffi::Function::GetGlobal("runtime.NumThreads");
  if (!fn.has_value()) return 1;
  try {
    return int32_t((*fn)().cast<int64_t>());
  } catch (...) {  // never reached in practice; the kernels then run on the caller alone
    return 1;
  }
}

void use_tvm_thread_pool() {
  static const spe_parallel_runtime rt{tvm_launch, tvm_num_threads, nullptr};
  spe_set_parallel_runtime(&rt);
}

// The kernels' thread count is TVM's: this sets TVM's pool (runtime.config_threadpool, as
// tvm.runtime.config_threadpool does) so one knob sizes every layer's threads.
void set_num_threads(int64_t n) {
  const auto config = tvm::ffi::Function::GetGlobal("runtime.config_threadpool");
  if (!config.has_value()) TVM_FFI_THROW(RuntimeError) << "spe: no runtime.config_threadpool";
  (*config)(1, std::clamp<int64_t>(n, 1, 1024));
}

// ---- spe.v1.inverted_block (kernels/src/mobile/) ----

// One 1x1 conv's six tables (group_row0, group_rows, group_ptr, entry_col, values, bias).
struct PointwiseTables {
  const TensorView* t[6];
};

// The C API's view of a 1x1 conv's tables (group_ptr widened to int64 into ptr).
spe_pointwise_weights pointwise_view(const PointwiseTables& pt, bool has_bias,
                                     std::vector<int64_t>& ptr, const char* which) {
  for (int i : {0, 1, 3})
    if (pt.t[i]->dtype().code != kDLInt || pt.t[i]->dtype().bits != 32)
      TVM_FFI_THROW(ValueError) << "spe.inverted_block: " << which << " row0/rows/entry_col must be int32";
  for (int i : {4, 5})
    if (pt.t[i]->dtype().code != kDLFloat || pt.t[i]->dtype().bits != 32)
      TVM_FFI_THROW(ValueError) << "spe.inverted_block: " << which << " values/bias must be float32";
  const TensorView& gptr = *pt.t[2];
  const int64_t g = pt.t[0]->numel();
  if (gptr.ndim() != 1 || gptr.size(0) != g + 1 || gptr.dtype().code != kDLInt || pt.t[1]->numel() != g)
    TVM_FFI_THROW(ValueError) << "spe.inverted_block: " << which << " group arrays disagree";
  ptr.resize(size_t(g + 1));
  for (int64_t i = 0; i <= g; ++i)
    ptr[i] = gptr.dtype().bits == 64 ? data<int64_t>(gptr)[i] : data<int32_t>(gptr)[i];
  if (ptr[g] != pt.t[3]->numel())
    TVM_FFI_THROW(ValueError) << "spe.inverted_block: " << which << " entry_col has "
                              << pt.t[3]->numel() << " entries, group_ptr says " << ptr[g];
  return {int32_t(g), data<int32_t>(*pt.t[0]), data<int32_t>(*pt.t[1]), ptr.data(),
          data<int32_t>(*pt.t[3]), data<float>(*pt.t[4]), has_bias ? data<float>(*pt.t[5]) : nullptr};
}

spe_inverted_block* get_block(const TensorView& meta, const PointwiseTables& ex,
                              const TensorView& dw_w, const TensorView& dw_b,
                              const PointwiseTables& pr) {
  const int32_t* m = data<int32_t>(meta);
  std::vector<int64_t> sig(m, m + 12);
  for (const PointwiseTables* pt : {&ex, &pr}) {
    for (int i : {0, 1, 3}) sample<int32_t>(sig, *pt->t[i]);
    sample<float>(sig, *pt->t[4]);
    sample<float>(sig, *pt->t[5]);
  }
  sample<float>(sig, dw_w);
  sample<float>(sig, dw_b);
  const void* key = data<float>(*pr.t[4]);
  auto& c = block_cache();
  std::lock_guard<std::mutex> lk(c.mu);
  auto it = c.layers.find(key);
  if (it != c.layers.end() && it->second.sig == sig) return it->second.conv;
  if (dw_w.dtype().code != kDLFloat || dw_w.dtype().bits != 32 ||
      dw_w.numel() != int64_t(m[1]) * m[3] * m[3] ||
      (m[10] && (dw_b.dtype().code != kDLFloat || dw_b.numel() != m[1])))
    TVM_FFI_THROW(ValueError) << "spe.inverted_block: dw weight / bias do not match meta";
  std::vector<int64_t> eptr, pptr;
  const spe_pointwise_weights pv = pointwise_view(pr, m[11] != 0, pptr, "project");
  spe_pointwise_weights ev{};
  if (m[8]) ev = pointwise_view(ex, m[9] != 0, eptr, "expand");
  const spe_inverted_block_params p{m[0], m[1], m[2], m[3], m[4], spe_activation(m[5]),
                                    spe_activation(m[6]), m[7], 0, 0, 0};
  BlockEntry e;
  e.sig = std::move(sig);
  const spe_status s = spe_inverted_block_create(&p, m[8] ? &ev : nullptr, data<float>(dw_w),
                                                 m[10] ? data<float>(dw_b) : nullptr, &pv, "auto", &e.conv);
  if (s != SPE_OK) TVM_FFI_THROW(ValueError) << "spe.inverted_block: " << spe_last_error();
  return c.put(it, key, std::move(e));
}

void inverted_block(TensorView x, TensorView meta, TensorView e0, TensorView e1, TensorView e2,
                    TensorView e3, TensorView e4, TensorView e5, TensorView dw_w, TensorView dw_b,
                    TensorView p0, TensorView p1, TensorView p2, TensorView p3, TensorView p4,
                    TensorView p5, TensorView /*residual placeholder*/, TensorView y) {
  check_f32(x, 4, "x");
  check_f32(y, 4, "y");
  check_meta(meta, 12, "inverted_block");
  const int32_t* m = data<int32_t>(meta);
  if (x.size(1) != m[0] || y.size(1) != m[2] || x.size(0) != y.size(0))
    TVM_FFI_THROW(ValueError) << "spe.inverted_block: x/y shapes do not match the block";
  const int32_t n = dim32(x, 0, "inverted_block"), h = dim32(x, 2, "inverted_block"),
                w = dim32(x, 3, "inverted_block");
  spe_inverted_block* b = get_block(meta, {{&e0, &e1, &e2, &e3, &e4, &e5}}, dw_w, dw_b,
                                    {{&p0, &p1, &p2, &p3, &p4, &p5}});
  int32_t ho = 0, wo = 0;
  spe_inverted_block_output_size(b, h, w, &ho, &wo);
  if (ho != y.size(2) || wo != y.size(3))
    TVM_FFI_THROW(ValueError) << "spe.inverted_block: output must be " << ho << "x" << wo;
  ProfileScope prof(b, "inverted_block", Profile::get() ? spe_inverted_block_kernel_name(b) : nullptr,
                    y.size(1), ho, wo);
  if (spe_inverted_block_run(b, data<float>(x), n, h, w, mutable_data<float>(y)) != SPE_OK)
    TVM_FFI_THROW(ValueError) << "spe.inverted_block: " << spe_last_error();
}

}  // namespace

// Every loaded model.so carries a copy of the bridge; the first one loaded registers the
// functions and later ones keep it (re-registering would throw during dlopen). Any copy serves
// any module: layers are cached per constant, and the names carry the bridge ABI version.
TVM_FFI_STATIC_INIT_BLOCK() {
  using tvm::ffi::Function;
  auto def = [](const char* name, auto fn) {
    if (!Function::GetGlobal(name).has_value())
      Function::SetGlobal(name, Function::FromTyped(fn, std::string(name)), false);
  };
  def("spe.v1.sparse_conv2d", sparse_conv2d);
  def("spe.v1.depthwise_conv2d", depthwise_conv2d);
  def("spe.v1.max_pool2d", max_pool2d);
  def("spe.v1.inverted_block", inverted_block);
  def("spe.v1.dense_conv2d", dense_conv2d);
  def("spe.v1.qconv2d", qconv2d);
  def("spe.v1.qlinear", qlinear);
  def("spe.v1.qconv2d_float", qconv2d_float);
  def("spe.v1.qdepthwise2d", qdepthwise2d);
  def("spe.v1.quantize", quantize);
  def("spe.v1.dequantize", dequantize);
  def("spe.v1.max_pool2d_u8", max_pool2d_u8);
  def("spe.v1.set_num_threads", set_num_threads);
  def("spe.v1.num_threads", [] { return int64_t(spe_get_num_threads()); });
  use_tvm_thread_pool();
}
