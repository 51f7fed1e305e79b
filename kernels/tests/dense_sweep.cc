// The dense conv sweep of the kernel test runner (kernel_tests.cc), through the C API: the packed
// dense conv (spe_dense_conv_*, implicit GEMM and Winograd) of every ISA this CPU runs against
// the plain-loop direct convolution of test_support.h (double accumulation) plus bias, residual
// and activation.
//
// Per ISA: 1x1 at stride 1 (the flat input: the pointwise path, and the packed one forced) and
// 2, 3x3 at stride 1 and 2, a 7x7 stem, an asymmetric kernel / stride / padding / dilation;
// output channels below, on and past the panel heights; input channels past one K block (256)
// and one Winograd channel chunk; every epilogue; Winograd F(4x4) and F(2x2) on 3x3 stride-1
// layers at padding 0, 1, 2 with partial tiles, tile blocks that span tile rows and channel
// chunks; the direct path (few input channels) over 1..4 channels, strides 1..3, padding 0..3,
// dilation and every epilogue; the phase and gathered pointwise paths of strided convs; 1 vs
// 3 threads bit for bit. Per listed f32_gemm and f32_conv
// kernel: the layer forced onto it, output rows and pixels on and around its tile. Then the
// error statuses.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "runner.h"
#include "spe/spe.h"
#include "test_support.h"

namespace spe_test {
namespace {

struct DenseCase {
  std::string name;
  int o = 8, c = 3, h = 9, w = 11, kh = 3, kw = 3, sh = 1, sw = 1, ph = 1, pw = 1, dh = 1, dw = 1;
  int batch = 1, act = SPE_ACT_NONE;
  bool residual = false, bias = true;
  std::string algo = "gemm";
  int threads = 1;
  bool cross_threads = false;
};

DenseCase geom(DenseCase c, int k, int s, int p, int d = 1) {
  c.kh = c.kw = k, c.sh = c.sw = s, c.ph = c.pw = p, c.dh = c.dw = d;
  return c;
}

std::vector<DenseCase> make_dense_cases(bool quick) {
  std::vector<DenseCase> cs;
  struct G { const char* name; int k, s, p, d; };
  const G geoms[] = {{"1x1s1", 1, 1, 0, 1}, {"1x1s2", 1, 2, 0, 1}, {"3x3s1", 3, 1, 1, 1},
                     {"3x3s2", 3, 2, 1, 1}, {"7x7s2", 7, 2, 3, 1}, {"3x3d2p0", 3, 1, 0, 2}};
  const int outs[] = {1, 5, 16, 33};
  const int ins[] = {1, 7, 300};
  for (const G& g : geoms)
    for (int o : outs)
      for (int c : ins) {
        if (quick && c == 300 && o != 33) continue;
        DenseCase d = geom(DenseCase{}, g.k, g.s, g.p, g.d);
        d.o = o, d.c = c, d.h = 13 + o % 3, d.w = 11 + c % 4;
        d.name = fmt("%s-o%d-c%d-%dx%d", g.name, o, c, d.h, d.w);
        cs.push_back(d);
      }
  {
    DenseCase d;  // asymmetric everything
    d.kh = 3, d.kw = 5, d.sh = 2, d.sw = 1, d.ph = 2, d.pw = 1, d.dh = 2, d.dw = 3, d.o = 9, d.c = 5;
    d.h = 16, d.w = 19, d.name = "3x5-s2x1-p2x1-d2x3";
    cs.push_back(d);
  }
  for (const Epilogue& e : every_epilogue()) {
    DenseCase d = geom(DenseCase{}, 1, 1, 0);
    d.o = 19, d.c = 270, d.h = 7, d.w = 9;  // two K blocks: partial sums, then the epilogue
    d.batch = e.batch, d.act = e.act, d.residual = e.residual, d.bias = e.bias;
    d.name = "epilogue-" + e.name;
    cs.push_back(d);
    if (quick) continue;
    d.algo = "winograd", d.kh = d.kw = 3, d.ph = d.pw = 1, d.c = 11;
    d.name = "winograd-epilogue-" + e.name;
    cs.push_back(d);
  }
  // The pointwise path (a flat 1x1 on "gemm"): pixel counts below, on and past whole vectors
  // and tiles (the remainder kernel: 1, 7, 15, 17, 49 = 3 x 16 + 1, 50, 196 = 12 x 16 + 4),
  // rows below a tile, within one panel and across the remainder kernel's panel groups (70:
  // 4 panels, then 6 rows: the tile cut to 6 rows), K = 1 and 37,
  // every activation, with and without the residual; K past 256 forced onto the path; the
  // packed path forced on a flat conv.
  for (int px : {1, 7, 15, 16, 17, 49, 50, 196})
    for (int o : {1, 12, 17, 70})
      for (int c : {1, 37}) {
        if ((quick || o == 12) && c == 1 && o != 17) continue;
        DenseCase d = geom(DenseCase{}, 1, 1, 0);
        d.o = o, d.c = c, d.h = px % 7 ? 1 : 7, d.w = px % 7 ? px : px / 7;
        d.act = (px + o) % 5, d.residual = (px + o + c) % 2 == 1, d.bias = o != 1;
        d.name = fmt("pointwise-o%d-c%d-%dx%d", o, c, d.h, d.w);
        cs.push_back(d);
      }
  for (const char* algo : {"gemm-pointwise", "gemm-packed"}) {
    DenseCase d = geom(DenseCase{}, 1, 1, 0);
    d.o = 33, d.c = 300, d.h = d.w = 14, d.algo = algo, d.act = SPE_ACT_RELU6, d.residual = true;
    d.name = fmt("%s-o33-c300-14x14", algo);
    cs.push_back(d);
  }
  // The direct path (few input channels: "gemm" picks it up to K = 64, "gemm-direct" forces
  // it): 1..4 input channels (the stems: 3), 3x3 at stride 1 and 2 and padding 0 and 1, odd
  // sizes (row tails of every vector count), stride 3, a dilated and an asymmetric kernel, every
  // epilogue, batch 2; the packed path forced on the same small K.
  for (int c = 1; c <= 4; ++c)
    for (int s : {1, 2})
      for (int p : {0, 1}) {
        DenseCase d = geom(DenseCase{}, 3, s, p);
        d.o = c == 3 ? 32 : 5 + 4 * c, d.c = c, d.h = 9 + 6 * c + s, d.w = 13 + 22 * c + p;
        d.act = (c + s + p) % 5, d.residual = (c + p) % 2 == 1, d.bias = c != 2, d.batch = 1 + p;
        d.name = fmt("direct-c%d-3x3s%dp%d-o%d-%dx%d", c, s, p, d.o, d.h, d.w);
        cs.push_back(d);
      }
  for (const Epilogue& e : every_epilogue()) {
    if (quick && e.batch != 1) continue;
    DenseCase d = geom(DenseCase{}, 3, 2, 1);
    d.o = 16, d.c = 3, d.h = 31, d.w = 45, d.algo = "gemm-direct";
    d.batch = e.batch, d.act = e.act, d.residual = e.residual, d.bias = e.bias;
    d.name = "direct-epilogue-" + e.name;
    cs.push_back(d);
  }
  {
    DenseCase d = geom(DenseCase{}, 3, 3, 2);  // stride 3: the generic phase split
    d.o = 7, d.c = 2, d.h = 20, d.w = 37, d.name = "direct-3x3s3p2";
    cs.push_back(d);
    d = geom(DenseCase{}, 5, 2, 2);  // stride 2, even padding: the columns land one slot in
    d.o = 6, d.c = 2, d.h = 14, d.w = 33, d.act = SPE_ACT_RELU6, d.name = "direct-5x5s2p2";
    cs.push_back(d);
    d = geom(DenseCase{}, 3, 1, 2, 2);  // dilated: taps spread over more rows
    d.o = 9, d.c = 3, d.h = 15, d.w = 17, d.act = SPE_ACT_SILU, d.name = "direct-3x3d2p2";
    cs.push_back(d);
    d.kh = 2, d.kw = 5, d.sh = 1, d.sw = 2, d.ph = 0, d.pw = 3, d.dh = 1, d.dw = 1;  // asymmetric
    d.name = "direct-2x5-s1x2-p0x3";
    cs.push_back(d);
    d.algo = "gemm-direct", d.c = 20, d.kh = d.kw = 3, d.ph = d.pw = 1, d.name = "direct-forced-k180";
    cs.push_back(d);
    d.algo = "gemm-packed", d.c = 3, d.name = "packed-forced-k27";
    cs.push_back(d);
  }
  // The phase path ("gemm" on a strided conv past 1x1 with K > 64 and an output of 64 pixels or
  // more; "gemm-phase" forces it) and the gathered pointwise path (a strided or padded 1x1, or
  // a strided conv with a smaller output; "gemm-pointwise" forces it), each on every shape:
  // strides 2 and 3, an asymmetric stride and kernel, a 7x7 stem, dilation, odd sizes, output
  // channels off the tile heights, bands that start inside an output row (threads), epilogues.
  struct S { const char* name; int o, c, kh, kw, sh, sw, ph, pw, dh, dw, h, w; };
  const S strided[] = {{"3x3s2", 20, 40, 3, 3, 2, 2, 1, 1, 1, 1, 30, 25},
                       {"7x7s2", 12, 3, 7, 7, 2, 2, 3, 3, 1, 1, 40, 37},
                       {"3x3s3d2", 9, 16, 3, 3, 3, 3, 2, 2, 2, 2, 31, 29},
                       {"5x3s2x1", 10, 20, 5, 3, 2, 1, 2, 1, 1, 1, 20, 19},
                       {"3x3s2-7x7out", 17, 80, 3, 3, 2, 2, 1, 1, 1, 1, 14, 13},
                       {"1x1s2", 40, 70, 1, 1, 2, 2, 0, 0, 1, 1, 15, 13},
                       {"1x1s2p1", 24, 80, 1, 1, 2, 2, 1, 1, 1, 1, 9, 12}};
  for (const S& v : strided)
    for (const char* algo : {"gemm", "gemm-phase", "gemm-pointwise"}) {
      if (quick && std::strcmp(algo, "gemm") != 0 && v.c != 40) continue;
      DenseCase d;
      d.o = v.o, d.c = v.c, d.kh = v.kh, d.kw = v.kw, d.sh = v.sh, d.sw = v.sw, d.ph = v.ph;
      d.pw = v.pw, d.dh = v.dh, d.dw = v.dw, d.h = v.h, d.w = v.w, d.algo = algo;
      d.act = (v.o + v.c) % 5, d.residual = v.o % 2 == 0, d.batch = 1 + v.kh % 2;
      d.name = fmt("strided-%s-%s", v.name, algo);
      cs.push_back(d);
    }
  // Winograd, each variant forced (F(4x4) and F(2x2)): padding 0..2, sizes with partial
  // tiles, blocks across tile rows, channel chunks (500: two for F(4x4) on 16-tile blocks),
  // two images (rows read in place up to the image's end); then both variants past one chunk
  // with output channels across panels, and the size-picked "winograd" at 7x7 and 14x14.
  const int wsizes[][2] = {{3, 3}, {6, 6}, {9, 30}, {14, 14}, {23, 17}};
  for (const char* algo : {"winograd-f4", "winograd-f2"})
    for (int p = 0; p <= 2; ++p)
      for (const auto& s : wsizes)
        for (int c : {3, 70, 500}) {
          if (s[0] + 2 * p < 3 || (quick && c == 500 && s[0] != 9)) continue;
          DenseCase d = geom(DenseCase{}, 3, 1, p);
          d.algo = algo, d.o = c == 500 ? 3 : 20, d.c = c, d.h = s[0], d.w = s[1];
          d.act = SPE_ACT_RELU, d.residual = p == 1, d.batch = p == 0 ? 2 : 1;
          d.name = fmt("%s-p%d-%dx%d-c%d", algo, p, s[0], s[1], c);
          cs.push_back(d);
        }
  struct W { const char* algo; int hw, c; };
  for (const W& v : {W{"winograd-f2", 7, 700}, W{"winograd-f4", 14, 300}, W{"winograd", 7, 40},
                     W{"winograd", 14, 40}}) {
    DenseCase d = geom(DenseCase{}, 3, 1, 1);
    d.algo = v.algo, d.o = 20, d.c = v.c, d.h = d.w = v.hw, d.act = SPE_ACT_RELU6;
    d.name = fmt("%s-o20-c%d-%dx%d", v.algo, v.c, v.hw, v.hw);
    cs.push_back(d);
  }
  assign_threads(cs);
  return cs;
}

struct DenseLayer {
  spe_dense_conv* conv = nullptr;
  ~DenseLayer() { spe_dense_conv_destroy(conv); }
};

std::string run_dense_case(const DenseCase& cs, const char* isa) {
  Lcg rng(seed_of(cs.name));
  const Geom g{cs.o, cs.c, cs.kh, cs.kw, cs.sh, cs.sw, cs.ph, cs.pw, cs.dh, cs.dw};
  const int ncols = cs.c * cs.kh * cs.kw;
  std::vector<float> w(size_t(cs.o) * ncols), bias;
  for (float& v : w) v = rng.sym(1.0f);
  if (cs.bias)
    for (int o = 0; o < cs.o; ++o) bias.push_back(rng.sym(4.0f));
  const spe_conv_params params = {cs.o, cs.c, cs.kh, cs.kw, cs.sh, cs.sw, cs.ph, cs.pw, cs.dh, cs.dw};
  DenseLayer l;
  const spe_status st = spe_dense_conv_create(&params, w.data(), cs.bias ? bias.data() : nullptr,
                                              spe_activation(cs.act), isa, cs.algo.c_str(), &l.conv);
  if (st != SPE_OK) return fmt("create returned %d: %s", int(st), spe_last_error());
  const std::string kname = spe_dense_conv_kernel_name(l.conv, cs.h, cs.w);
  const std::string suffix = std::string("__") + isa;
  const bool direct = kname.rfind("f32_conv_", 0) == 0;
  // one pixel of a flat 1x1 on the pointwise path: the GEMV (checked below)
  const bool gemv = kname.rfind("f32_gemv_", 0) == 0;
  if ((!direct && !gemv && kname.rfind("f32_gemm_", 0) != 0) || kname.size() < suffix.size() ||
      kname.compare(kname.size() - suffix.size(), suffix.size(), suffix) != 0)
    return "kernel name " + kname + " does not name the ISA";
  if (cs.algo.rfind("f32_", 0) == 0 && kname != cs.algo) return "ran " + kname + ", not " + cs.algo;
  int32_t ho = 0, wo = 0;
  spe_dense_conv_output_size(l.conv, cs.h, cs.w, &ho, &wo);
  // the direct tiles: the direct path (forced, and on "gemm" for a small K or up to 4 input
  // channels, not a flat 1x1) and the phase path (forced, and on "gemm" for a strided conv past 1x1 with a larger K
  // and an output of 64 pixels or more)
  const bool flat = cs.kh == 1 && cs.kw == 1 && cs.sh == 1 && cs.sw == 1 && !cs.ph && !cs.pw;
  if (gemv != ((cs.algo == "gemm" || cs.algo == "gemm-pointwise") && flat && cs.h * cs.w == 1))
    return "kernel name " + kname + ": the GEMV runs a flat 1x1 on one pixel, and only that";
  const bool phase = (cs.sh > 1 || cs.sw > 1) && (cs.kh > 1 || cs.kw > 1) && ho * wo >= 64;
  const bool want_direct = cs.algo == "gemm-direct" || cs.algo == "gemm-phase" ||
                           cs.algo.rfind("f32_conv_", 0) == 0 ||
                           (cs.algo == "gemm" && (ncols <= 64 || cs.c <= 4 ? !flat : phase));
  if (direct != want_direct) return "ran " + kname + " on " + cs.algo;
  if ((cs.algo.rfind("winograd", 0) == 0) != (spe_dense_conv_is_winograd(l.conv) == 1))
    return "winograd flag";
  const size_t in_n = size_t(cs.batch) * cs.c * cs.h * cs.w, out_n = size_t(cs.batch) * cs.o * ho * wo;
  auto run = [&](const float* x, const float* res, float* y) {
    return spe_dense_conv_run(l.conv, x, cs.batch, cs.h, cs.w, res, y);
  };
  auto check = [&](const float* x, const float* res, const float* y) {
    const auto ref = ref_conv(g, false, w, cs.bias ? bias.data() : nullptr, x, cs.batch, cs.h,
                              cs.w, res, cs.act);
    return compare(y, ref, ncols, cs.o, ho, wo);
  };
  const std::string err = checked_run(in_n, out_n, cs.residual, cs.threads, cs.cross_threads, rng, run, check);
  return err.empty() ? "" : err + " [" + kname + "]";
}

// A listed tile: rows and pixels below, on and past it (and past the ISA's panel height).
std::vector<DenseCase> dense_kernel_cases(const spe::KernelInfo& k, bool quick) {
  const int R = tile_param(k, "rows"), NR = tile_param(k, "pixels");
  std::vector<DenseCase> cs;
  for (int o : {R - 1, R, 16 + R + 1})
    for (int px : {NR - 1, NR, 2 * NR + 3}) {
      if (o < 1 || (quick && o == R - 1 && px != NR)) continue;
      DenseCase d = geom(DenseCase{}, 1, 1, 0);
      d.o = o, d.c = 37, d.h = 1, d.w = px, d.algo = k.name, d.residual = true, d.act = SPE_ACT_RELU6;
      d.name = fmt("o%d-pixels%d", o, px);
      cs.push_back(d);
    }
  DenseCase d = geom(DenseCase{}, 3, 2, 1);  // a gathered input through the forced tile
  d.o = R + 3, d.c = 40, d.h = 2 * NR / 3 + 5, d.w = 9, d.algo = k.name, d.name = "3x3s2";
  cs.push_back(d);
  assign_threads(cs);
  return cs;
}

// A listed direct conv tile: output rows below, on and past it, output row widths below, on
// and past its pixels (every partial chunk), stride 1 and 2.
std::vector<DenseCase> conv_kernel_cases(const spe::KernelInfo& k, bool quick) {
  const int R = tile_param(k, "rows"), NR = tile_param(k, "pixels");
  std::vector<DenseCase> cs;
  for (int o : {R - 1, R, 2 * R + 1})
    for (int wo : {NR - 1, NR, 2 * NR + 3})
      for (int s : {1, 2}) {
        if (o < 1 || (quick && o == R - 1 && wo != NR)) continue;
        DenseCase d = geom(DenseCase{}, 3, s, 1);
        d.o = o, d.c = 3, d.h = 5, d.w = wo * s, d.algo = k.name, d.residual = true;
        d.act = SPE_ACT_RELU6;
        d.name = fmt("o%d-wo%d-s%d", o, wo, s);
        cs.push_back(d);
      }
  assign_threads(cs);
  return cs;
}

}  // namespace

size_t dense_isa_sweep(const std::string& isa, bool quick) {
  return sweep("dense " + isa, make_dense_cases(quick),
               [&](const DenseCase& c) { return run_dense_case(c, isa.c_str()); });
}

size_t dense_kernel_sweep(const spe::KernelInfo& k, bool quick) {
  const char* isa = spe::isa_name(k.isa);
  return sweep(k.name, dense_kernel_cases(k, quick),
               [&](const DenseCase& c) { return run_dense_case(c, isa); });
}

size_t conv_kernel_sweep(const spe::KernelInfo& k, bool quick) {
  const char* isa = spe::isa_name(k.isa);
  return sweep(k.name, conv_kernel_cases(k, quick),
               [&](const DenseCase& c) { return run_dense_case(c, isa); });
}

void dense_error_cases() {
  const float w[27] = {};
  const spe_conv_params ok = {1, 3, 3, 3, 1, 1, 1, 1, 1, 1};
  auto create = [&](const spe_conv_params& p, const float* wt, int act, const char* isa,
                    const char* algo, spe_dense_conv** out) {
    return spe_dense_conv_create(&p, wt, nullptr, spe_activation(act), isa, algo, out);
  };
  spe_dense_conv* c = nullptr;
  spe_conv_params s2 = ok;
  s2.stride_h = 2;
  spe_conv_params neg = ok;
  neg.pad_w = -1;
  spe_conv_params big = ok;
  big.kh = 65;
  struct E { const char* name; spe_status got; spe_status want; };
  const E es[] = {
      {"dense-null-weight", create(ok, nullptr, 0, "auto", "gemm", &c), SPE_ERR_INVALID_ARGUMENT},
      {"dense-bad-act", create(ok, w, 7, "auto", "gemm", &c), SPE_ERR_INVALID_ARGUMENT},
      {"dense-bad-isa", create(ok, w, 0, "sse9000", "gemm", &c), SPE_ERR_UNSUPPORTED_ISA},
      {"dense-bad-algo", create(ok, w, 0, "auto", "fft", &c), SPE_ERR_INVALID_ARGUMENT},
      {"dense-other-isa-tile", create(ok, w, 0, "scalar", "f32_gemm_8x48__avx512", &c), SPE_ERR_INVALID_ARGUMENT},
      {"dense-other-isa-conv-tile", create(ok, w, 0, "scalar", "f32_conv_4x96__avx512", &c), SPE_ERR_INVALID_ARGUMENT},
      {"dense-winograd-stride2", create(s2, w, 0, "auto", "winograd", &c), SPE_ERR_INVALID_ARGUMENT},
      {"dense-negative-pad", create(neg, w, 0, "auto", "gemm", &c), SPE_ERR_INVALID_ARGUMENT},
      {"dense-kernel-65", create(big, w, 0, "auto", "gemm", &c), SPE_ERR_INVALID_ARGUMENT},
  };
  for (const E& e : es) {
    set_current(e.name);
    record(e.got == e.want && std::strlen(spe_last_error()) > 0, e.name, fmt("status %d", int(e.got)));
  }
  set_current("dense-run-errors");
  spe_dense_conv* l = nullptr;
  float x[9] = {}, y[9] = {};
  const bool made = create(ok, w, 0, "auto", "winograd", &l) == SPE_OK;
  spe_conv_params one = ok;
  one.in_channels = 1, one.pad_h = one.pad_w = 0;
  spe_dense_conv* l0 = nullptr;
  const bool made0 = create(one, w, 0, "auto", "gemm", &l0) == SPE_OK;
  record(made && made0 && spe_dense_conv_run(l0, x, 1, 2, 2, nullptr, y) == SPE_ERR_INVALID_ARGUMENT &&
             spe_dense_conv_run(l, nullptr, 1, 3, 3, nullptr, y) == SPE_ERR_INVALID_ARGUMENT &&
             spe_dense_conv_run(nullptr, x, 1, 3, 3, nullptr, y) == SPE_ERR_INVALID_ARGUMENT &&
             spe_dense_conv_run(l0, x, -1, 3, 3, nullptr, y) == SPE_ERR_INVALID_ARGUMENT &&
             spe_dense_conv_run(l0, x, 0, 3, 3, nullptr, y) == SPE_OK &&
             std::string(spe_dense_conv_kernel_name(l0, 2, 2)).empty() &&
             std::string(spe_dense_conv_kernel_name(nullptr, 9, 9)).empty(),
         "dense-run-errors");
  spe_dense_conv_destroy(l);
  spe_dense_conv_destroy(l0);
}

}  // namespace spe_test
