// The int8 conv sweep of the kernel test runner (kernel_tests.cc), through the C API: every
// int8 variant this CPU runs (qspmm/qspmm_list.h) against an independent reference, a direct
// convolution of the dequantized-by-zero-point input, sum (x - zx) * w over the window with the
// padding contributing nothing, exact in int64, then the requantization spe.h specifies. Every
// variant must give the reference's bytes exactly (the scalar one included).
//
// Cases: kernel sizes, strides, padding and dilation; channel counts that are and are not
// multiples of 4; group heights 1..8 and mixed; sparsity 0 / 0.6 / 0.95 / 1 in blocks of
// (rows x 4 channels) and unstructured; bias, ReLU / ReLU6, a u8 residual; zero points at 0,
// mid and 255; batch 1 and 2; 1 and 3 threads (alike byte for byte); one layer over two input
// sizes; NCHW and NCHW4 inputs and outputs (an NCHW4 input of a 1x1 read in place, at the end
// of a guarded buffer: the last tile's loads must stop at its last pixel). Per variant and row count: pixel counts on and around multiples of the listed tile, so
// every tail runs, and the layer must name that kernel.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "common/kernel_list.h"  // kernels/src: the catalog
#include "qspmm/qspmm.h"  // kernels/src: the int8 variants
#include "runner.h"
#include "spe/spe.h"
#include "qconv_support.h"
#include "test_support.h"

namespace spe_test {
namespace {

struct QCase {
  std::string name;
  int o = 8, c = 8, h = 7, w = 9, k = 3, s = 1, p = 1, d = 1;
  int rows = 4;            // group height; 0: mixed 1..8
  double sparsity = 0.5;
  bool blocks = true;      // (rows x 4 channels) blocks, else unstructured
  int batch = 1, act = SPE_ACT_NONE, zx = 3, zy = 7, zr = 128, threads = 1;
  bool residual = false, bias = true, resize = false;
  int in_layout = SPE_QLAYOUT_NCHW, out_layout = SPE_QLAYOUT_NCHW;
  const char* kernel = nullptr;  // the listed kernel the layer must pick
};

std::string run_case(const QCase& t, const char* variant) {
  Lcg rng(seed_of(t.name));
  const QLayer L = make_qlayer(QShape{t.o, t.c, t.k, t.k, t.rows, t.sparsity, t.blocks, t.bias}, rng);
  const spe_conv_params prm = {t.o, t.c, t.k, t.k, t.s, t.s, t.p, t.p, t.d, t.d};
  spe_qconv_quant q{};
  q.input = {0.02f, t.zx};
  q.output = {0.05f + 0.05f * float(rng.uniform()), t.zy};
  q.residual = {0.03f, t.zr};
  q.weight_scale = L.wscale.data();
  q.input_layout = t.in_layout;
  q.output_layout = t.out_layout;
  q.bias = t.bias ? L.bias.data() : nullptr;
  spe_qconv* conv = nullptr;
  if (spe_qconv_create(&prm, int32_t(L.row0.size()), L.row0.data(), L.rows.data(), L.ptr.data(),
                       L.quad.data(), L.values.data(), &q, spe_activation(t.act), variant, &conv) != SPE_OK)
    return std::string("create failed: ") + spe_last_error();
  std::string err;
  if (t.kernel && std::strcmp(spe_qconv_kernel_name(conv), t.kernel) != 0)
    err = fmt("picked %s, not %s", spe_qconv_kernel_name(conv), t.kernel);
  for (int pass = 0; pass < (t.resize ? 2 : 1) && err.empty(); ++pass) {
    const int h = t.h + 3 * pass, w = t.w + 2 * pass;
    int32_t ho = 0, wo = 0;
    spe_qconv_output_size(conv, h, w, &ho, &wo);
    const size_t in_n = size_t(t.batch) * t.c * h * w, out_n = size_t(t.batch) * t.o * ho * wo;
    const int64_t opx = int64_t(ho) * wo;
    const size_t out_q = size_t(t.batch) * ((t.o + 3) / 4) * opx * 4;
    const bool qin = t.in_layout == SPE_QLAYOUT_NCHW4, qout = t.out_layout == SPE_QLAYOUT_NCHW4;
    std::vector<uint8_t> xs(in_n), rs(out_n);
    for (auto& v : xs) v = uint8_t(rng.next() >> 24);
    for (auto& v : rs) v = uint8_t(rng.next() >> 24);
    // the layer's own layouts, in buffers that end at a guard page
    const std::vector<uint8_t> xl = qin ? to_quads(xs.data(), t.batch, t.c, int64_t(h) * w, 77) : xs;
    const std::vector<uint8_t> rl = qout ? to_quads(rs.data(), t.batch, t.o, opx, 99) : rs;
    const size_t yn = qout ? out_q : out_n;
    GuardedBytes x(xl.size()), y(yn), y2(yn), res(rl.size());
    std::memcpy(x.data(), xl.data(), xl.size());
    std::memcpy(res.data(), rl.data(), rl.size());
    const uint8_t* rp = t.residual ? res.data() : nullptr;
    std::memset(y.data(), 0xA5, yn);
    spe_set_num_threads(t.threads);
    if (spe_qconv_run(conv, x.data(), t.batch, h, w, rp, y.data()) != SPE_OK) {
      err = std::string("run failed: ") + spe_last_error();
      break;
    }
    spe_set_num_threads(t.threads == 1 ? 3 : 1);  // the other thread count: the same bytes
    if (spe_qconv_run(conv, x.data(), t.batch, h, w, rp, y2.data()) != SPE_OK ||
        std::memcmp(y.data(), y2.data(), yn) != 0)
      err = "differs across thread counts";
    std::vector<uint8_t> got(out_n);  // y as NCHW; an NCHW4 y's rows past O hold zy
    for (size_t at = 0; at < out_n; ++at) {
      const int64_t i = int64_t(at % opx);
      const int o = int(at / opx % t.o), n = int(at / (opx * t.o));
      got[at] = qout ? y.data()[((size_t(n) * ((t.o + 3) / 4) + o / 4) * opx + i) * 4 + o % 4] : y.data()[at];
    }
    for (int n = 0; qout && n < t.batch && err.empty(); ++n)
      for (int o = t.o; o < (t.o + 3) / 4 * 4 && err.empty(); ++o)
        for (int64_t i = 0; i < opx && err.empty(); ++i)
          if (y.data()[((size_t(n) * ((t.o + 3) / 4) + o / 4) * opx + i) * 4 + o % 4] != uint8_t(t.zy))
            err = fmt("NCHW4 pad channel %d at pixel %lld is not the zero point", o, (long long)i);
    const Geom g{t.o, t.c, t.k, t.k, t.s, t.s, t.p, t.p, t.d, t.d};
    const std::vector<uint8_t> want = ref_qconv(g, L, q, t.act, xs.data(), t.batch, h, w, rp ? rs.data() : nullptr);
    for (size_t at = 0; at < out_n && err.empty(); ++at)
      if (got[at] != want[at]) {
        const int ox = int(at % wo), oy = int(at / wo % ho), o = int(at / (size_t(wo) * ho) % t.o);
        err = fmt("y[n=%d,o=%d,y=%d,x=%d] = %d, reference %d", int(at / (size_t(wo) * ho * t.o)), o, oy, ox,
                  got[at], want[at]);
      }
  }
  spe_set_num_threads(1);
  spe_qconv_destroy(conv);
  return err;
}

std::vector<QCase> variant_cases(const spe::QSpmmKernels* kt, bool quick) {
  std::vector<QCase> cs;
  struct G { int k, s, p, d; };
  const G geoms[] = {{1, 1, 0, 1}, {3, 1, 1, 1}, {1, 2, 0, 1}, {3, 2, 1, 1}, {5, 1, 2, 1},
                     {3, 1, 2, 2}, {2, 2, 0, 1}, {7, 2, 3, 1}, {3, 3, 0, 1}};
  int i = 0;
  for (const G& g : geoms)
    for (int c : {3, 8, 13, 32})
      for (double sp : {0.0, 0.6, 0.95}) {
        ++i;
        if (quick && i % 3) continue;
        QCase t;
        t.k = g.k, t.s = g.s, t.p = g.p, t.d = g.d, t.c = c, t.sparsity = sp;
        t.o = 5 + i % 13;
        t.rows = i % 9;  // 0: mixed
        t.blocks = i % 4 != 3;
        t.h = 6 + i % 7, t.w = 5 + (3 * i) % 11;
        t.act = i % 3;
        t.residual = i % 5 == 1;
        t.bias = i % 7 != 2;
        t.batch = 1 + i % 2;
        t.zx = i % 6 == 0 ? 0 : i % 6 == 1 ? 255 : 3 + i;
        t.zy = i % 4 == 0 ? 0 : 100 + i % 50;
        t.threads = 1 + 2 * (i % 2);
        t.resize = i % 8 == 5;
        t.in_layout = i % 3 == 1 ? SPE_QLAYOUT_NCHW4 : SPE_QLAYOUT_NCHW;
        t.out_layout = i % 4 >= 2 ? SPE_QLAYOUT_NCHW4 : SPE_QLAYOUT_NCHW;
        t.name = fmt("qconv-%s-k%ds%dp%dd%d-c%d-o%d-sp%.2f-%s%s-%d", kt->variant, g.k, g.s, g.p, g.d, c,
                     t.o, sp, t.in_layout ? "q" : "n", t.out_layout ? "q" : "n", i);
        cs.push_back(t);
      }
  // one input quad, NCHW4 in and out (the stems: the variants' direct path where they have
  // one): wide rows (interior and border blocks, a tail of 1-3 pixels), 1 to 33 output quads
  const G stems[] = {{3, 2, 1, 1}, {3, 1, 1, 1}, {7, 2, 3, 1}, {5, 2, 2, 1}, {3, 2, 0, 1}, {2, 2, 0, 1}};
  for (const G& g : stems)
    for (int o : {4, 7, 32, 40, 72, 132}) {
      ++i;
      if (quick && i % 3) continue;
      QCase t;
      t.k = g.k, t.s = g.s, t.p = g.p, t.d = g.d, t.c = 1 + i % 4, t.o = o, t.sparsity = (i % 3) * 0.4;
      t.rows = i % 9;
      t.blocks = i % 4 != 3;
      t.h = 5 + i % 9, t.w = 17 + (13 * i) % 100;
      t.act = i % 3;
      t.residual = i % 2 == 1;
      t.bias = i % 5 != 2;
      t.batch = 1 + i % 2;
      t.zx = i % 4 == 0 ? 0 : 1 + (37 * i) % 255;
      t.zy = i % 3 == 0 ? 0 : 90 + i % 60;
      t.threads = 1 + 2 * (i % 2);
      t.resize = i % 5 == 1;
      t.in_layout = t.out_layout = SPE_QLAYOUT_NCHW4;
      t.name = fmt("qconv-%s-stem-k%ds%dp%d-c%d-o%d-%dx%d-%d", kt->variant, g.k, g.s, g.p, t.c, o, t.h, t.w, i);
      cs.push_back(t);
    }
  // a few output pixels (QSpmmKernels::gemv where the variant has it: the rows in the lanes):
  // every group height, 1 to 6 pixels (the gemv limit and past it), 1x1 (a linear layer's
  // rows), a padded 3x3 on a tiny map (cropped) and a strided 1x1; many entries (the unrolled
  // loop and its tail) and few
  for (int r = 1; r <= spe::kQMaxGroupRows; ++r)
    for (int px = 1; px <= 6; ++px) {
      ++i;
      if (quick && i % 2) continue;
      QCase t;
      const int shape = i % 3;
      t.k = shape == 1 ? 3 : 1, t.p = shape == 1 ? 1 : 0, t.s = shape == 2 ? 2 : 1;
      t.h = shape == 2 ? 2 : 1, t.w = shape == 2 ? 2 * px : px;
      t.c = i % 4 == 0 ? 3 : 4 * (1 + (5 * i) % 37) + i % 3;
      t.o = r * (1 + i % 3) + i % 2, t.rows = r, t.sparsity = (i % 3) * 0.35;
      t.blocks = i % 4 != 3;
      t.act = i % 3;
      t.residual = i % 4 == 1;
      t.bias = i % 5 != 2;
      t.batch = 1 + i % 2;
      t.zx = i % 5 == 0 ? 0 : i % 5 == 1 ? 255 : 1 + (29 * i) % 250;
      t.zy = i % 3 == 0 ? 0 : 80 + i % 90;
      t.threads = 1 + 2 * (i % 2);
      t.in_layout = i % 3 == 1 ? SPE_QLAYOUT_NCHW4 : SPE_QLAYOUT_NCHW;
      t.out_layout = i % 2 ? SPE_QLAYOUT_NCHW4 : SPE_QLAYOUT_NCHW;
      t.name = fmt("qconv-%s-gemv-r%d-px%d-k%ds%d-c%d-o%d-%d", kt->variant, r, px, t.k, t.s, t.c, t.o, i);
      cs.push_back(t);
    }
  // all-zero weights (a layer of empty groups): bias and activation only
  QCase z;
  z.sparsity = 1.0, z.name = fmt("qconv-%s-empty", kt->variant), z.act = SPE_ACT_RELU6;
  cs.push_back(z);
  return cs;
}

// The requantization alone at its edges, through every variant's epi_row (the vector
// variants' grouped and single stores and their partial tail; qspmm.h's qclamp): sums that put v
// on ties (x.5) and on both sides of each clamp, at every activation, zero points 0..255, with
// and without a residual, and sums that overflow float to +-inf; each byte against qrequant.
std::string requant_edges(const spe::QSpmmKernels* kt, int act, int32_t zy, bool with_res, Lcg& rng) {
  struct K { float scale, bias, six; };
  const K ks[] = {{0.5f, 0.0f, 120.0f}, {1.0f, 0.5f, 0.5f}, {1.0f, -0.5f, 6.25f}, {0.25f, 0.125f, 300.0f},
                  {1e-3f, -7.3f, 0.0f}, {3.0e38f, 0.0f, 12.0f}, {-3.0e38f, 1.0f, 2.5f}};
  const int n = 4 * 64 + 37;  // whole groups (64 and 16 outputs), single vectors and a partial one
  std::vector<int32_t> acc(n);
  std::vector<uint8_t> res(n), got(n);
  for (const K& k : ks)
    for (int pass = 0; pass < 3; ++pass) {
      const int32_t corr = pass == 2 ? 0 : int32_t(rng.uniform() * 200) - 100;
      for (int i = 0; i < n; ++i) {
        // pass 0: consecutive sums across both clamps of the small scales; pass 1: random
        // within +-2^20; pass 2: extremes (corr 0: no overflow in a + corr)
        acc[i] = pass == 0   ? (i - n / 2) * 3 - corr
                 : pass == 1 ? int32_t(rng.uniform() * 2097152.0) - 1048576
                             : (i % 4 == 0   ? INT32_MAX - i
                                : i % 4 == 1 ? INT32_MIN + i
                                : i % 4 == 2 ? (1 << 24) + i
                                             : -(1 << 24) - i);
        res[i] = uint8_t(rng.uniform() * 256);
      }
      std::vector<int32_t> corr_v(1, corr);
      std::vector<float> scale_v(1, k.scale), bias_v(1, k.bias);
      const spe::QEpilogue e{corr_v.data(), scale_v.data(), bias_v.data(), 0.37f, 128, k.six, zy, act};
      kt->epi_row(got.data(), acc.data(), with_res ? res.data() : nullptr, n, e, 0);
      for (int i = 0; i < n; ++i) {
        const uint8_t want = spe::qrequant(acc[i], with_res ? &res[i] : nullptr, e, 0);
        if (got[i] != want)
          return fmt("scale %g bias %g six %g corr %d: sum %d gave %d, reference %d (output %d)", k.scale,
                     k.bias, k.six, corr, acc[i], got[i], want, i);
      }
    }
  return "";
}

// spe_qconv_run_linear (a linear layer on float rows) against the reference: x quantized
// element by element as spe.h's quantize says (round half even of x * float(1 / scale)), the
// reference conv of the (1, C, 1, rows) image, dequantized as float(q - zy) * sy; floats equal
// bit for bit. Then its refusals: a non-finite input (named), a layer that is not 1x1 NCHW4.
std::string run_linear_case(const char* variant, int o, int c, int rows, int grp, int act, Lcg& rng) {
  const QLayer L = make_qlayer(QShape{o, c, 1, 1, grp, 0.5, true, true}, rng);
  const spe_conv_params prm = {o, c, 1, 1, 1, 1, 0, 0, 1, 1};
  spe_qconv_quant q{};
  q.input = {0.03f, int32_t(rng.uniform() * 256)};
  q.output = {0.04f + 0.05f * float(rng.uniform()), int32_t(rng.uniform() * 256)};
  q.residual = {1.0f, 0};
  q.weight_scale = L.wscale.data();
  q.bias = L.bias.data();
  q.input_layout = q.output_layout = SPE_QLAYOUT_NCHW4;
  spe_qconv* conv = nullptr;
  if (spe_qconv_create(&prm, int32_t(L.row0.size()), L.row0.data(), L.rows.data(), L.ptr.data(), L.quad.data(),
                       L.values.data(), &q, spe_activation(act), variant, &conv) != SPE_OK)
    return std::string("create failed: ") + spe_last_error();
  std::vector<float> x(size_t(rows) * c), y(size_t(rows) * o, -1.0f);
  std::vector<uint8_t> img(size_t(c) * rows);  // the reference's NCHW (1, C, 1, rows) codes
  const float inv = 1.0f / q.input.scale;
  for (int r = 0; r < rows; ++r)
    for (int ch = 0; ch < c; ++ch) {
      const float v = float((rng.uniform() - 0.5) * 12.0);  // past both ends of the grid too
      x[size_t(r) * c + ch] = v;
      const long code = std::lrint(std::min(std::max(v * inv, -512.0f), 512.0f)) + q.input.zero_point;
      img[size_t(ch) * rows + r] = uint8_t(std::min<long>(std::max<long>(code, 0), 255));
    }
  std::string err;
  spe_set_num_threads(1 + rows % 2);
  if (spe_qconv_run_linear(conv, x.data(), rows, y.data()) != SPE_OK) err = std::string("run failed: ") + spe_last_error();
  const Geom g{o, c, 1, 1, 1, 1, 0, 0, 1, 1};
  const std::vector<uint8_t> want = ref_qconv(g, L, q, act, img.data(), 1, 1, rows, nullptr);
  for (int r = 0; r < rows && err.empty(); ++r)
    for (int oo = 0; oo < o && err.empty(); ++oo) {
      const float ref = float(int(want[size_t(oo) * rows + r]) - q.output.zero_point) * q.output.scale;
      if (std::memcmp(&ref, &y[size_t(r) * o + oo], 4) != 0)
        err = fmt("y[%d, %d] = %g, reference %g", r, oo, double(y[size_t(r) * o + oo]), double(ref));
    }
  // spe_qconv_run_float on the transposed rows, (1, C, 1, rows) -> (1, O, 1, rows): the same
  // floats (the token-stream form of the layer)
  std::vector<float> xt(x.size()), yt(y.size(), -1.0f);
  for (int r = 0; r < rows; ++r)
    for (int ch = 0; ch < c; ++ch) xt[size_t(ch) * rows + r] = x[size_t(r) * c + ch];
  if (err.empty() && spe_qconv_run_float(conv, xt.data(), 1, 1, rows, nullptr, SPE_ACT_NONE, yt.data()) != SPE_OK)
    err = std::string("float run failed: ") + spe_last_error();
  for (int r = 0; r < rows && err.empty(); ++r)
    for (int oo = 0; oo < o && err.empty(); ++oo)
      if (std::memcmp(&yt[size_t(oo) * rows + r], &y[size_t(r) * o + oo], 4) != 0)
        err = fmt("float run: y[0, %d, 0, %d] = %g, run_linear's %g", oo, r, double(yt[size_t(oo) * rows + r]),
                  double(y[size_t(r) * o + oo]));
  // the float epilogue: y + residual exactly, then GELU within its documented bound (isa/
  // activation.h: 1e-6 |v| + 1e-37 of double precision)
  std::vector<float> res(yt.size()), ye(yt.size(), -1.0f);
  for (float& v : res) v = float((rng.uniform() - 0.5) * 4.0);
  for (const int pa : {int(SPE_ACT_NONE), int(SPE_ACT_GELU)}) {
    if (!err.empty()) break;
    if (spe_qconv_run_float(conv, xt.data(), 1, 1, rows, res.data(), spe_activation(pa), ye.data()) != SPE_OK) {
      err = std::string("float run with an epilogue failed: ") + spe_last_error();
      break;
    }
    for (size_t i = 0; i < ye.size() && err.empty(); ++i) {
      const float sum = yt[i] + res[i];
      if (pa == SPE_ACT_NONE ? std::memcmp(&sum, &ye[i], 4) != 0
                             : std::fabs(double(ye[i]) - 0.5 * double(sum) * (1.0 + std::erf(double(sum) / std::sqrt(2.0)))) >
                                   1e-6 * std::fabs(double(sum)) + 1e-30)
        err = fmt("float epilogue (act %d): y[%zu] = %g for %g", pa, i, double(ye[i]), double(sum));
    }
  }
  if (err.empty() && rows > 1) {
    xt[size_t(c / 2) * rows + rows - 1] = NAN;
    if (spe_qconv_run_float(conv, xt.data(), 1, 1, rows, nullptr, SPE_ACT_NONE, yt.data()) != SPE_ERR_INVALID_ARGUMENT ||
        !std::strstr(spe_last_error(), fmt("x[%d]", (c / 2) * rows + rows - 1).c_str()))
      err = std::string("a NaN input to the float run: ") + spe_last_error();
  }
  if (err.empty() && rows > 1) {
    x[size_t(rows - 1) * c + c / 2] = NAN;
    if (spe_qconv_run_linear(conv, x.data(), rows, y.data()) != SPE_ERR_INVALID_ARGUMENT ||
        !std::strstr(spe_last_error(), fmt("row %d, feature %d", rows - 1, c / 2).c_str()))
      err = std::string("a NaN input: ") + spe_last_error();
  }
  spe_set_num_threads(1);
  spe_qconv_destroy(conv);
  return err;
}

}  // namespace

size_t qlinear_sweep(bool quick) {
  size_t n = 0;
  for (int v = 0; v < spe::kNumQVariants; ++v) {
    const spe::QSpmmKernels* kt = spe::qspmm_kernels(spe::QVariant(v));
    if (!kt) continue;
    int i = 0;
    for (int rows : {1, 2, 3, 4, 5, 17, 100, 300})
      for (int grp : {4, 8, 3}) {
        ++i;
        if (quick && i % 2) continue;
        const int o = 5 + (7 * i) % 40, c = 3 + (11 * i) % 70;
        const std::string name = fmt("qlinear-%s-rows%d-g%d-o%d-c%d", kt->variant, rows, grp, o, c);
        set_current(name);
        Lcg rng(seed_of(name));
        const std::string err = run_linear_case(kt->variant, o, c, rows, grp, i % 3, rng);
        record(err.empty(), name, err);
        ++n;
      }
  }
  // a layer that is not a linear one: refused, named
  const spe_conv_params prm = {4, 4, 3, 3, 1, 1, 1, 1, 1, 1};
  Lcg rng(seed_of("qlinear-refused"));
  const QLayer L = make_qlayer(QShape{4, 4, 3, 3, 4, 0.0, true, false}, rng);
  spe_qconv_quant q{};
  q.input = q.output = q.residual = {0.1f, 0};
  q.weight_scale = L.wscale.data();
  q.input_layout = q.output_layout = SPE_QLAYOUT_NCHW4;
  spe_qconv* conv = nullptr;
  float x[8] = {}, y[8];
  const bool made = spe_qconv_create(&prm, int32_t(L.row0.size()), L.row0.data(), L.rows.data(), L.ptr.data(),
                                     L.quad.data(), L.values.data(), &q, SPE_ACT_NONE, "auto", &conv) == SPE_OK;
  set_current("qlinear-refused");
  record(made && spe_qconv_run_linear(conv, x, 2, y) == SPE_ERR_INVALID_ARGUMENT &&
             std::strstr(spe_last_error(), "1x1") && spe_qconv_run_linear(nullptr, x, 2, y) != SPE_OK,
         "qlinear-refused", spe_last_error());
  spe_qconv_destroy(conv);
  // a float run of a layer with NCHW layouts: refused, named; and an input too small
  conv = nullptr;
  q.input_layout = q.output_layout = SPE_QLAYOUT_NCHW;
  const bool made2 = spe_qconv_create(&prm, int32_t(L.row0.size()), L.row0.data(), L.rows.data(), L.ptr.data(),
                                      L.quad.data(), L.values.data(), &q, SPE_ACT_NONE, "auto", &conv) == SPE_OK;
  set_current("qfloat-refused");
  record(made2 && spe_qconv_run_float(conv, x, 1, 1, 2, nullptr, SPE_ACT_NONE, y) == SPE_ERR_INVALID_ARGUMENT &&
             std::strstr(spe_last_error(), "NCHW4") &&
             spe_qconv_run_float(nullptr, x, 1, 1, 2, nullptr, SPE_ACT_NONE, y) != SPE_OK,
         "qfloat-refused", spe_last_error());
  spe_qconv_destroy(conv);
  return n + 2;
}

// One listed int8 kernel (kernel_tests.cc's listed sweeps): 1x1 layers of its group height,
// pixel counts on and around multiples of its tile (every tail; 64 tiles and more: several whole
// tiles a call, QTileArgs::n_sub, at one thread), NCHW and NCHW4 (an NCHW4 input read in place at
// the end of a guarded buffer); the layer must pick that kernel. 0 cases if this CPU does not
// run its variant.
size_t qconv_kernel_sweep(const spe::KernelInfo& info, bool quick) {
  spe::QVariant v;
  if (!spe::kernel_available(info) || !spe::parse_qvariant(info.variant, &v)) return 0;
  const spe::QSpmmKernels* kt = spe::qspmm_kernels(v);
  const int r = tile_param(info, "rows"), tile = tile_param(info, "pixels");
  size_t n = 0;
  for (int px : {tile, tile + 1, 2 * tile - 1, tile - kt->width + 1, 3 * tile + kt->width, 64 * tile, 67 * tile + 5}) {
    if (px < 1 || (quick && px == 3 * tile + kt->width)) continue;
    QCase t;
    t.k = 1, t.s = 1, t.p = 0, t.o = r * 2, t.c = 4 * (1 + r % 3) + (r % 2), t.rows = r;
    t.h = 1, t.w = px, t.sparsity = 0.3, t.residual = r % 2 == 0, t.act = r % 3;
    t.kernel = info.name;
    t.in_layout = px % 2 ? SPE_QLAYOUT_NCHW4 : SPE_QLAYOUT_NCHW;
    t.out_layout = px % 3 ? SPE_QLAYOUT_NCHW4 : SPE_QLAYOUT_NCHW;
    t.name = fmt("%s-px%d-%s%s", info.name, px, t.in_layout ? "q" : "n", t.out_layout ? "q" : "n");
    set_current(t.name);
    const std::string err = run_case(t, kt->variant);
    record(err.empty(), t.name, err);
    ++n;
  }
  return n;
}

size_t qconv_sweep(bool quick) {
  size_t n = 0;
  for (int v = 0; v < spe::kNumQVariants; ++v) {
    const spe::QSpmmKernels* kt = spe::qspmm_kernels(spe::QVariant(v));
    if (!kt) continue;
    for (const QCase& t : variant_cases(kt, quick)) {
      set_current(t.name);
      const std::string err = run_case(t, kt->variant);
      record(err.empty(), t.name, err);
      ++n;
    }
    for (int act = 0; act < 3; ++act)
      for (int32_t zy : {0, 1, 127, 128, 254, 255})
        for (bool with_res : {false, true}) {
          const std::string name = fmt("qrequant-edges-%s-act%d-zy%d%s", kt->variant, act, zy, with_res ? "-res" : "");
          set_current(name);
          Lcg rng(seed_of(name));
          const std::string err = requant_edges(kt, act, zy, with_res, rng);
          record(err.empty(), name, err);
          ++n;
        }
  }
  return n;
}

}  // namespace spe_test

namespace spe_test {
namespace {

}  // namespace

size_t qdepthwise_sweep(bool quick) {
  size_t n = 0;
  for (int v = 0; v < spe::kNumQVariants; ++v) {
    const spe::QSpmmKernels* kt = spe::qspmm_kernels(spe::QVariant(v));
    if (!kt) continue;
    int i = 0;
    struct G { int k, s, p, d; };
    for (const G& g : {G{3, 1, 1, 1}, G{3, 2, 1, 1}, G{5, 1, 2, 1}, G{5, 2, 2, 1}, G{3, 1, 2, 2}, G{1, 1, 0, 1},
                       G{7, 3, 3, 1}, G{3, 2, 0, 1}})
      for (int c : {4, 7, 16, 33}) {
        ++i;
        if (quick && i % 2) continue;
        const std::string name = fmt("qdw-%s-k%ds%dp%dd%d-c%d-%d", kt->variant, g.k, g.s, g.p, g.d, c, i);
        set_current(name);
        Lcg rng(seed_of(name));
        const std::string err = run_dw_case(kt->variant, c, 5 + i % 9, 4 + (3 * i) % 17, g.k, g.s, g.p, g.d,
                                            i % 3, i % 4 == 1, 1 + i % 2, i % 5 == 0 ? 0 : 3 + 7 * i % 250,
                                            1 + 2 * (i % 2), rng);
        record(err.empty(), name, err);
        ++n;
      }
    // wide and tall planes: several 16-pixel column groups (the interior and border groups of a
    // row, and its tail of 1 to 15 pixels) and blocks of rows that split a plane
    for (const G& g : {G{3, 1, 1, 1}, G{3, 2, 1, 1}, G{3, 1, 0, 1}, G{3, 2, 0, 1}})
      for (int w : {31, 32, 33, 64, 66, 71, 130}) {
        ++i;
        if (quick && i % 2) continue;
        const int h = w == 130 ? 3 : 3 + (7 * i) % 70;
        const std::string name = fmt("qdw-%s-k%ds%dp%d-%dx%d-%d", kt->variant, g.k, g.s, g.p, h, w, i);
        set_current(name);
        Lcg rng(seed_of(name));
        const std::string err = run_dw_case(kt->variant, 4 + 2 * (i % 3), h, w, g.k, g.s, g.p, g.d, i % 3,
                                            i % 2 == 0, 1 + i % 2, i % 3 == 0 ? 0 : 1 + 37 * i % 255,
                                            1 + (i / 2) % 2, rng);
        record(err.empty(), name, err);
        ++n;
      }
  }
  return n;
}

}  // namespace spe_test
