// The depthwise sweep of the kernel test runner (kernel_tests.cc), through the C API: the
// direct depthwise kernels (spe_depthwise_conv_*) of every ISA this CPU runs against the plain
// depthwise reference of test_support.h, swept like tests/kernels/test_depthwise.py.
//
// Per listed kernel (dwconv_list.h): a specialised one at padding 0, 1, 2 and larger than its
// kernel; the generic one over other kernels, strides, dilations and asymmetric geometries. Per
// ISA: tiny images, output widths on and around every vector width and unrolled block, wide /
// tall images (several row blocks), the flat method's planes, 1 and odd channels, batch, the
// epilogue, the parallel splits, the per-row tap copies of a huge dilated span, and 1 vs 3
// threads bit for bit. Every layer must pick the kernel the list has for its geometry. Then
// the error statuses.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "runner.h"
#include "spe/spe.h"
#include "test_support.h"

namespace spe_test {
namespace {

struct DwCase {
  std::string name;
  int c = 5, h = 11, w = 13, kh = 3, kw = 3, sh = 1, sw = 1, ph = 1, pw = 1, dh = 1, dw = 1;
  int batch = 1, act = SPE_ACT_NONE;
  bool residual = false, bias = true;
  int wo = 0, ho = 0;  // > 0: pick the input size that gives this output
  int threads = 1;
  bool cross_threads = false;
};

struct DwGeomSpec {
  const char* name;
  int kh, kw, sh, sw, ph, pw, dh, dw;
};
const DwGeomSpec kDwGeoms[] = {
    {"3x3s1", 3, 3, 1, 1, 1, 1, 1, 1},    {"3x3s2", 3, 3, 2, 2, 1, 1, 1, 1},
    {"5x5s1", 5, 5, 1, 1, 2, 2, 1, 1},    {"5x5s2", 5, 5, 2, 2, 2, 2, 1, 1},
    {"3x5gen", 3, 5, 1, 1, 1, 2, 1, 1},   {"7x7s3gen", 7, 7, 3, 3, 3, 3, 1, 1},
    {"3x3d2gen", 3, 3, 1, 1, 2, 2, 2, 2},
};
constexpr int kNumDwGeoms = int(sizeof kDwGeoms / sizeof kDwGeoms[0]);

DwCase with_dw_geom(DwCase c, const DwGeomSpec& g) {
  c.kh = g.kh, c.kw = g.kw, c.sh = g.sh, c.sw = g.sw, c.ph = g.ph, c.pw = g.pw, c.dh = g.dh,
  c.dw = g.dw;
  return c;
}

// The smallest input size with `out` outputs (at least 1).
int dw_in_dim(int out, int k, int s, int p, int d) {
  return std::max(1, (out - 1) * s + d * (k - 1) + 1 - 2 * p);
}

std::vector<DwCase> make_dw_cases(bool quick) {
  std::vector<DwCase> cs;
  const DwCase base;
  // tiny images (the geometries' padding makes every size valid)
  const int tiny[][2] = {{1, 1}, {2, 3}, {3, 2}, {1, 5}};
  for (const auto& t : tiny)
    for (const DwGeomSpec& g : kDwGeoms) {
      DwCase c = with_dw_geom(base, g);
      c.h = t[0], c.w = t[1], c.c = 3;
      c.name = fmt("dw-tiny-%dx%d-%s", t[0], t[1], g.name);
      cs.push_back(c);
    }
  // output widths on and around every vector width (4, 8, 16) and unrolled block (up to 4
  // vectors; 24 = avx2's 3-vector two-row block); output heights 1..3 (row pairs + a single)
  const int widths[] = {1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 23, 24, 25, 31, 32, 33, 47, 48, 49,
                        63, 64, 65, 127, 128, 129};
  for (int i = 0; i < int(sizeof widths / sizeof widths[0]); ++i)
    for (int j = 0; j < 2; ++j) {
      if (quick && j == 1 && i % 2) continue;
      const DwGeomSpec& g = kDwGeoms[(2 * i + j) % kNumDwGeoms];
      DwCase c = with_dw_geom(base, g);
      c.wo = widths[i], c.ho = 1 + (i + j) % 3, c.c = 2;
      c.name = fmt("dw-width-wo%d-%s", widths[i], g.name);
      cs.push_back(c);
    }
  // wide and tall: several row blocks per plane (blocks are sized to an L1 budget)
  for (const DwGeomSpec& g : kDwGeoms) {
    DwCase c = with_dw_geom(base, g);
    c.c = 2, c.h = 23, c.w = quick ? 301 : 733;
    c.name = fmt("dw-wide-%s", g.name);
    cs.push_back(c);
    c.h = quick ? 41 : 97, c.w = 61;
    c.name = fmt("dw-tall-%s", g.name);
    cs.push_back(c);
  }
  // channels: 1 and odd counts
  {
    int i = 0;
    for (int ch : {1, 3, 7, 13}) {
      const DwGeomSpec& g = kDwGeoms[i++ % kNumDwGeoms];
      DwCase c = with_dw_geom(base, g);
      c.c = ch, c.h = 9, c.w = 10;
      c.name = fmt("dw-chan-c%d-%s", ch, g.name);
      cs.push_back(c);
    }
  }
  // batch x activation x residual x bias, cycling through the geometries
  {
    int i = 0;
    for (const Epilogue& e : every_epilogue()) {
      const DwGeomSpec& g = kDwGeoms[i++ % kNumDwGeoms];
      DwCase c = with_dw_geom(base, g);
      c.batch = e.batch, c.act = e.act, c.residual = e.residual, c.bias = e.bias;
      c.c = 6, c.h = 12, c.w = 20;
      c.name = "dw-epilogue-" + e.name + "-" + g.name;
      cs.push_back(c);
    }
  }
  // the flat method's planes (specialised kernels at padding k / 2 where the ISA has it): the
  // MobileNet sizes, odd ones, both sides of its size limits (dwconv.h kDwFlatMaxFloats: 128x128
  // outputs at stride 1, 64x64 at stride 2), 1 and 3 channels, every activation, residual
  {
    const int planes[][2] = {{7, 7},   {14, 14},  {13, 17},  {17, 13},
                             {28, 28}, {56, 56},  {127, 127}, {129, 127}, {129, 129}};
    int i = 0;
    for (const auto& pl : planes)
      for (const DwGeomSpec& g : kDwGeoms) {
        if (g.kh != g.kw || g.sh != g.sw || g.sh > 2 || g.dh != 1) continue;
        DwCase c = with_dw_geom(base, g);
        c.h = pl[0], c.w = pl[1], c.c = i % 3 ? 3 : 1, c.act = i % 5, c.residual = i % 2;
        c.bias = i % 4 != 3;
        c.name = fmt("dw-flat-%dx%d-%s", pl[0], pl[1], g.name);
        cs.push_back(c);
        ++i;
      }
  }
  // the parallel splits: many planes (an item each) and few planes (rows split into blocks)
  const int thr[][7] = {{24, 2, 29, 31, 3, 1, 1}, {1, 1, 53, 41, 3, 1, 1}, {3, 1, 64, 70, 5, 2, 1},
                        {2, 1, 45, 33, 3, 1, 2}, {5, 1, 30, 30, 7, 3, 1}};
  for (const auto& t : thr) {
    DwCase c = base;
    c.c = t[0], c.batch = t[1], c.h = t[2], c.w = t[3], c.kh = c.kw = t[4], c.sh = c.sw = t[5];
    c.dh = c.dw = t[6], c.ph = c.pw = t[6] * (t[4] / 2), c.act = SPE_ACT_RELU6, c.residual = true;
    c.cross_threads = true;
    c.name = fmt("dw-threads-c%dn%d-%dx%d-k%ds%dd%d", t[0], t[1], t[2], t[3], t[4], t[5], t[6]);
    cs.push_back(c);
  }
  // one output row spanning more than 8 MiB of row buffers: per-row tap copies (block == 0)
  {
    DwCase c = base;
    c.c = 2, c.h = 3, c.w = quick ? 8200 : 9001, c.kh = 5, c.kw = 3, c.dh = 64, c.ph = 128,
    c.pw = 1, c.act = SPE_ACT_RELU;
    c.name = "dw-huge-dilated-span";
    cs.push_back(c);
  }
  assign_threads(cs);
  return cs;
}

// A specialised kernel k x k, stride s: padding 0, 1, 2 and larger than the kernel. The generic
// kernel: other kernels, strides, dilations, asymmetric everything.
std::vector<DwCase> kernel_dw_cases(const spe::KernelInfo& k) {
  std::vector<DwCase> cs;
  const DwCase base;
  const int kk = tile_param(k, "kernel"), s = tile_param(k, "stride");
  if (kk > 0)
    for (int p : {0, 1, 2, 7}) {
      DwCase c = base;
      c.kh = c.kw = kk, c.sh = c.sw = s, c.ph = c.pw = p, c.h = 14, c.w = 17;
      c.name = fmt("dw-spec-k%ds%dp%d", kk, s, p);
      cs.push_back(c);
    }
  const int gen[][8] = {{1, 1, 1, 1, 0, 0, 1, 1}, {1, 1, 2, 2, 0, 0, 1, 1}, {1, 1, 1, 1, 1, 1, 1, 1},
                        {2, 2, 2, 2, 0, 0, 1, 1}, {3, 5, 1, 1, 1, 2, 1, 1}, {5, 3, 2, 1, 2, 1, 1, 1},
                        {7, 7, 1, 1, 3, 3, 1, 1}, {7, 7, 2, 2, 3, 3, 1, 1}, {3, 3, 3, 3, 1, 1, 1, 1},
                        {5, 5, 3, 3, 0, 0, 1, 1}, {3, 3, 1, 1, 2, 2, 2, 2}, {3, 3, 2, 2, 2, 2, 2, 2},
                        {5, 5, 1, 1, 4, 4, 2, 2}, {3, 3, 1, 2, 1, 1, 1, 1}, {3, 3, 2, 1, 1, 1, 1, 1},
                        {5, 5, 1, 2, 2, 2, 1, 1}, {3, 3, 1, 1, 0, 3, 1, 1}, {3, 3, 1, 1, 1, 1, 1, 3},
                        {3, 1, 1, 1, 1, 0, 1, 1}, {1, 7, 1, 1, 0, 3, 1, 1}, {3, 3, 4, 4, 1, 1, 1, 1},
                        {2, 3, 1, 3, 0, 1, 2, 1}, {11, 11, 1, 1, 5, 5, 1, 1}, {3, 3, 1, 1, 9, 9, 1, 1}};
  if (kk == 0)
    for (const auto& g : gen) {
      DwCase c = base;
      c.kh = g[0], c.kw = g[1], c.sh = g[2], c.sw = g[3], c.ph = g[4], c.pw = g[5], c.dh = g[6],
      c.dw = g[7], c.h = 16, c.w = 19;
      c.name = fmt("dw-gen-k%dx%ds%dx%dp%dx%dd%dx%d", g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7]);
      cs.push_back(c);
    }
  assign_threads(cs);
  return cs;
}

// The kernel create() should pick: the listed specialised kernel of isa for a square kernel
// and stride at dilation 1, else isa's generic kernel (dwconv_list.h).
std::string expected_dw_kernel(const DwCase& c, const char* isa) {
  const bool square = c.kh == c.kw && c.sh == c.sw && c.dh == 1 && c.dw == 1;
  std::string generic;
  for (const spe::KernelInfo& k : spe::kernel_list()) {
    if (std::strcmp(k.family, "f32_dwconv") != 0 || std::strcmp(spe::isa_name(k.isa), isa) != 0)
      continue;
    const int kk = tile_param(k, "kernel");
    if (kk == 0) generic = k.name;
    else if (square && kk == c.kh && tile_param(k, "stride") == c.sh) return k.name;
  }
  return generic;
}

struct DwLayer {
  spe_depthwise_conv* conv = nullptr;
  ~DwLayer() { spe_depthwise_conv_destroy(conv); }
};

std::string run_dw_case(const DwCase& cs0, const char* isa) {
  DwCase cs = cs0;
  if (cs.wo > 0) {
    cs.w = dw_in_dim(cs.wo, cs.kw, cs.sw, cs.pw, cs.dw);
    cs.h = dw_in_dim(cs.ho, cs.kh, cs.sh, cs.ph, cs.dh);
  }
  Lcg rng(seed_of(cs.name));
  std::vector<float> w(size_t(cs.c) * cs.kh * cs.kw), bias;
  for (float& v : w) v = rng.sym(1.5f);
  if (cs.bias)
    for (int c = 0; c < cs.c; ++c) bias.push_back(rng.sym(4.0f));
  const spe_conv_params params = {cs.c, cs.c, cs.kh, cs.kw, cs.sh, cs.sw, cs.ph, cs.pw, cs.dh, cs.dw};
  DwLayer l;
  spe_status st = spe_depthwise_conv_create(&params, w.data(), cs.bias ? bias.data() : nullptr,
                                            spe_activation(cs.act), isa, &l.conv);
  if (st != SPE_OK) return fmt("create returned %d: %s", int(st), spe_last_error());
  const std::string kname = spe_depthwise_conv_kernel_name(l.conv), want = expected_dw_kernel(cs, isa);
  if (kname != want) return "kernel " + kname + ", expected " + want;

  const int n = cs.batch, h = cs.h, wd = cs.w;
  const int ho = out_dim(h, cs.ph, cs.dh, cs.kh, cs.sh), wo = out_dim(wd, cs.pw, cs.dw, cs.kw, cs.sw);
  int aho = -1, awo = -1;
  spe_depthwise_conv_output_size(l.conv, h, wd, &aho, &awo);
  if (aho != ho || awo != wo) return fmt("output size %dx%d, expected %dx%d", aho, awo, ho, wo);
  if (cs.wo > 0 && (ho != cs.ho || wo != cs.wo))
    return fmt("input %dx%d gives %dx%d outputs, wanted %dx%d", h, wd, ho, wo, cs.ho, cs.wo);
  const size_t in_n = size_t(n) * cs.c * h * wd, out_n = size_t(n) * cs.c * ho * wo;
  const Geom gd{cs.c, cs.c, cs.kh, cs.kw, cs.sh, cs.sw, cs.ph, cs.pw, cs.dh, cs.dw};
  return checked_run(
      in_n, out_n, cs.residual, cs.threads, cs.cross_threads, rng,
      [&](const float* x, const float* res, float* y) {
        return spe_depthwise_conv_run(l.conv, x, n, h, wd, res, y);
      },
      [&](const float* x, const float* res, const float* y) {
        const auto ref = ref_conv(gd, true, w, cs.bias ? bias.data() : nullptr, x, n, h, wd, res, cs.act);
        const std::string err = compare(y, ref, cs.kh * cs.kw, cs.c, ho, wo);
        if (err.empty()) return err;
        return err + fmt(" [%s, input %dx%d, threads %d]", kname.c_str(), h, wd, cs.threads);
      });
}

}  // namespace

size_t dwconv_isa_sweep(const std::string& isa, bool quick) {
  return sweep(isa, make_dw_cases(quick), [&](const DwCase& c) { return run_dw_case(c, isa.c_str()); });
}

size_t dwconv_kernel_sweep(const spe::KernelInfo& k, bool) {
  const char* isa = spe::isa_name(k.isa);
  return sweep(k.name, kernel_dw_cases(k), [&](const DwCase& c) { return run_dw_case(c, isa); });
}

void dw_error_cases(const std::vector<std::string>& isas_missing) {
  const spe_conv_params good = {4, 4, 3, 3, 1, 1, 1, 1, 1, 1};
  const std::vector<float> w(4 * 65 * 65, 0.5f);  // room for any kernel the checks describe
  auto expect = [&](const char* what, spe_conv_params p, int act, const char* isa,
                    spe_status want, const char* message_part) {
    const std::string name = std::string("dw-error-create-") + what;
    set_current(name);
    spe_depthwise_conv* out = nullptr;
    const spe_status st = spe_depthwise_conv_create(&p, w.data(), nullptr, spe_activation(act),
                                                    isa, &out);
    const bool message = std::strstr(spe_last_error(), message_part) != nullptr;
    record(st == want && out == nullptr && message, name,
           fmt("status %d (want %d), out %s, last error '%s' (want '%s')", int(st), int(want),
               out ? "set" : "untouched", spe_last_error(), message_part));
    if (out) spe_depthwise_conv_destroy(out);
  };
  auto edit = [&](auto f) {
    spe_conv_params p = good;
    f(p);
    return p;
  };
  const auto BAD = SPE_ERR_INVALID_ARGUMENT;
  {
    set_current("dw-error-create-null");
    spe_depthwise_conv* out = nullptr;
    record(spe_depthwise_conv_create(nullptr, w.data(), nullptr, SPE_ACT_NONE, "scalar", &out) ==
               BAD && !out, "dw-error-create-null-params");
    record(spe_depthwise_conv_create(&good, nullptr, nullptr, SPE_ACT_NONE, "scalar", &out) ==
               BAD && !out, "dw-error-create-null-weight");
    record(spe_depthwise_conv_create(&good, w.data(), nullptr, SPE_ACT_NONE, "scalar", nullptr) ==
               BAD, "dw-error-create-null-out");
  }
  expect("channels-mismatch", edit([](spe_conv_params& p) { p.out_channels = 5; }), 0, "scalar",
         BAD, "out_channels == in_channels, got 5 and 4");
  expect("zero-channels", edit([](spe_conv_params& p) { p.out_channels = p.in_channels = 0; }), 0,
         "scalar", BAD, "invalid conv params");
  expect("zero-kernel", edit([](spe_conv_params& p) { p.kw = 0; }), 0, "scalar", BAD,
         "invalid conv params");
  expect("zero-stride", edit([](spe_conv_params& p) { p.stride_h = 0; }), 0, "scalar", BAD,
         "invalid conv params");
  expect("negative-padding", edit([](spe_conv_params& p) { p.pad_w = -1; }), 0, "scalar", BAD,
         "invalid conv params");
  expect("zero-dilation", edit([](spe_conv_params& p) { p.dil_h = 0; }), 0, "scalar", BAD,
         "invalid conv params");
  expect("kernel-above-64", edit([](spe_conv_params& p) { p.kh = 65; }), 0, "scalar", BAD,
         "kernel size or dilation too large");
  expect("dilation-above-64", edit([](spe_conv_params& p) { p.dil_w = 65; }), 0, "scalar", BAD,
         "kernel size or dilation too large");
  expect("stride-above-64", edit([](spe_conv_params& p) { p.stride_w = 65; }), 0, "scalar", BAD,
         "stride too large");
  expect("padding-above-65536", edit([](spe_conv_params& p) { p.pad_h = 65537; }), 0, "scalar",
         BAD, "padding too large");
  expect("unknown-activation", good, SPE_ACT_LAST_ + 1, "scalar", BAD, "unknown activation");
  expect("unknown-isa", good, 0, "sse9000", SPE_ERR_UNSUPPORTED_ISA, "sse9000");
  expect("null-isa", good, 0, nullptr, SPE_ERR_UNSUPPORTED_ISA, "null");
  for (const std::string& isa : isas_missing)
    expect(("isa-not-available-" + isa).c_str(), good, 0, isa.c_str(), SPE_ERR_UNSUPPORTED_ISA,
           isa.c_str());

  // run(): bad calls return a status and leave the layer usable
  set_current("dw-error-run");
  DwLayer l;
  if (spe_depthwise_conv_create(&good, w.data(), nullptr, SPE_ACT_RELU, "auto", &l.conv) != SPE_OK) {
    record(false, "dw-error-run-setup", spe_last_error());
    return;
  }
  std::vector<float> x(2 * 4 * 5 * 5, 1.0f), y(2 * 4 * 5 * 5, -1.0f);
  record(spe_depthwise_conv_run(nullptr, x.data(), 1, 5, 5, nullptr, y.data()) == BAD, "dw-error-run-null-conv");
  record(spe_depthwise_conv_run(l.conv, nullptr, 1, 5, 5, nullptr, y.data()) == BAD, "dw-error-run-null-x");
  record(spe_depthwise_conv_run(l.conv, x.data(), 1, 5, 5, nullptr, nullptr) == BAD, "dw-error-run-null-y");
  record(spe_depthwise_conv_run(l.conv, x.data(), -1, 5, 5, nullptr, y.data()) == BAD, "dw-error-run-negative-batch");
  record(spe_depthwise_conv_run(l.conv, x.data(), 1, 0, 5, nullptr, y.data()) == BAD, "dw-error-run-zero-height");
  record(spe_depthwise_conv_run(l.conv, x.data(), 1, 5, -2, nullptr, y.data()) == BAD, "dw-error-run-negative-width");
  record(spe_depthwise_conv_run(l.conv, x.data(), 0, 5, 5, nullptr, y.data()) == SPE_OK && y[0] == -1.0f,
         "dw-error-run-zero-batch-is-a-no-op");
  {
    const spe_conv_params unpadded = {4, 4, 3, 3, 2, 2, 0, 0, 1, 1};
    DwLayer small;
    const bool made = spe_depthwise_conv_create(&unpadded, w.data(), nullptr, SPE_ACT_NONE,
                                                "scalar", &small.conv) == SPE_OK;
    record(made && spe_depthwise_conv_run(small.conv, x.data(), 1, 2, 5, nullptr, y.data()) == BAD &&
               std::strstr(spe_last_error(), "too small"),
           "dw-error-run-input-smaller-than-kernel", spe_last_error());
  }
  // still usable: all-ones input, 0.5 weights: the centre sees 9 taps, a corner 4
  const spe_status st = spe_depthwise_conv_run(l.conv, x.data(), 2, 5, 5, nullptr, y.data());
  record(st == SPE_OK && y[12] == 4.5f && y[7 * 25 + 12] == 4.5f && y[0] == 2.0f,
         "dw-error-run-layer-usable-afterwards",
         fmt("status %d, centre %g, corner %g", int(st), double(y[12]), double(y[0])));
}

}  // namespace spe_test
