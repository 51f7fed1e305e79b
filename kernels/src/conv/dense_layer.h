// The packed dense conv layer (spe_dense_conv, spe.h) shared by its two algorithms: the
// implicit GEMM (dense_conv.cc) and Winograd F(4x4, 3x3) (winograd.cc). Both run the dense GEMM
// microkernels (dense/dense_list.h) on weights packed once at create time; "gemm" also has a
// direct path for convs with few input channels (direct_conv.cc; its tiles: dense/dense_list.h).
#ifndef SPE_CONV_DENSE_LAYER_H_
#define SPE_CONV_DENSE_LAYER_H_

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "../dense/dense.h"
#include "spe/spe.h"

struct spe_dense_conv {
  spe_conv_params p{};
  int64_t K = 0;             // GEMM depth: C * kh * kw (Winograd: C)
  int act = 0;
  bool winograd = false;
  int wino_m = 0;            // Winograd F(m x m, 3x3) forced: 4 or 2; 0: picked per input size
  int forced_tile = -1;      // a tile named at create time, else -1 (chosen per input size)
  // a 1x1 stride-1 unpadded conv: the pointwise path (the input read in place, dense_conv.cc)
  // or the packed one; kAuto picks per input size
  // kDirect: the direct path (few input channels: a mobile stem), forced or picked by kAuto
  enum Path { kAuto, kPacked, kPointwise, kDirect, kPhase } path = kAuto;
  int conv_tile = -1;        // the direct path's tile in the ISA's f32_conv list (-1: not named)
  std::vector<float> conv_w; // its weights: ceil(O / rows) tiles of K x rows floats, or empty
  const spe::DenseKernels* k = nullptr;
  // GEMM: (ceil(O / panel), K, panel) floats, zero rows past O. Winograd: the 3x3 weight
  // (O, C, 3, 3); its transformed filters, F(4x4) and F(2x2), are packed by the first run
  // that needs them (winograd.cc) and freed with the layer.
  std::vector<float> w;
  mutable std::atomic<float*> wino_u[2] = {nullptr, nullptr};
  std::vector<float> bias;   // O, or empty
  spe_dense_conv() = default;
  spe_dense_conv(const spe_dense_conv&) = delete;
  spe_dense_conv& operator=(const spe_dense_conv&) = delete;
  ~spe_dense_conv();
};

namespace spe {

// A 64-byte aligned float buffer a thread keeps between calls (the packed input panels), grown
// on demand; throws std::bad_alloc like a vector would.
class ThreadBuffer {
 public:
  float* get(int64_t floats);
 private:
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  std::unique_ptr<float, Free> p_;
  int64_t n_ = 0;
};
float* thread_buffer(int slot, int64_t floats);  // slot 0, 1: this thread's two buffers

// The input geometry of one run.
struct Geo {
  int64_t h, w, ho, wo, P;
  bool flat;  // 1x1, stride 1, no padding: im2col(x) is x, read as one flat row per channel
};
Geo make_geo(const spe_conv_params& p, int h, int w);

// Packs rows [k0, k0 + kc) x pixels [p0, p0 + np) of im2col(x) into panels of NR pixels:
// buf[(j / NR) * kc * NR + (k - k0) * NR + j % NR], zeros past np and outside the image.
void pack_input(const DenseKernels* k, const spe_conv_params& p, const Geo& g, const float* x,
                int64_t k0, int64_t kc, int64_t p0, int64_t np, int NR, float* buf);

// The index of the tile of c's table that wastes the least work on an O x P output (the rows
// and pixels padded to whole tiles), or the forced tile.
int pick_tile(const spe_dense_conv* c, int64_t P);

// The pointwise path of spe_dense_conv (dense_pointwise.cc): whether c runs a flat conv (1x1,
// stride 1, no padding) on it (unless forced onto the packed path), and the run.
bool use_pointwise(const spe_dense_conv* c, int h, int w);
spe_status pointwise_run(const spe_dense_conv* c, const float* x, int n, int h, int w,
                         const float* res, float* y);

// The direct path of spe_dense_conv (direct_conv.cc): pack its weights at create (if the layer
// may take it: forced, or "gemm" with a small K), whether it runs an input of width w, the run.
void direct_pack(spe_dense_conv* c, const float* weight);
bool use_direct(const spe_dense_conv* c, int w);
const float** conv_taps(int64_t K);  // this thread's K tap pointers (direct and phase paths)
spe_status direct_run(const spe_dense_conv* c, const float* x, int n, int h, int w,
                      const float* res, float* y);

// The phase path of spe_dense_conv (phase_conv.cc): whether a conv's geometry suits it (a
// stride, a kernel past 1x1), whether c runs an h x w input on it, the run (on the direct
// path's weights).
bool phase_fits(const spe_conv_params& p);
bool use_phase(const spe_dense_conv* c, int h, int w);
spe_status phase_run(const spe_dense_conv* c, const float* x, int n, int h, int w,
                     const float* res, float* y);

// The Winograd half of spe_dense_conv (winograd.cc): keep the 3x3 weight at create, the tile
// (index into c->k) an ho x wo output runs on, run an input.
void winograd_pack(spe_dense_conv* c, const float* weight);
int winograd_tile(const spe_dense_conv* c, int64_t ho, int64_t wo);
spe_status winograd_run(const spe_dense_conv* c, const float* x, int n, int h, int w,
                        const float* res, float* y);

}  // namespace spe
#endif  // SPE_CONV_DENSE_LAYER_H_
