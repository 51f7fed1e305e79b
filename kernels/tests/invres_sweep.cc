// The fused inverted-residual block's sweep in the kernel test runner (kernel_tests.cc): each
// listed f32_invres kernel (mobile/invres_list.h) through the C API against the plain unfused
// reference of test_support.h (1x1 conv -> act -> depthwise -> act -> 1x1 conv [+ x], double
// accumulation), over dense, block-sparse (empty groups too) and absent expand convs, mixed
// group heights, odd image sizes, both schedules, bands of 1 and 2 rows and the automatic choice,
// the depthwise conv flat on the SpMM tiles (small stride-1 planes) and on its plane kernel,
// batch 2, residual or not; every third case also at the other thread count, bit for bit.
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "runner.h"
#include "spe/spe.h"
#include "test_support.h"

namespace spe_test {
namespace {

struct InvresCase {
  std::string name;
  int cin = 8, t = 3, cout = 8, h = 9, w = 11;
  double sparsity = 0.0;  // of whole (group x input channel) blocks; 1.0 leaves groups empty
  int heights = 8;        // group height of the packs (0: mixed 1..8)
  int schedule = 0, band = 0, batch = 1;
  int flags = 0;  // SPE_INVRES_*
  int threads = 1;
  bool cross_threads = false;
};

std::string run_invres_case(const InvresCase& c, int k, int s, const char* isa) {
  Lcg rng(seed_of(c.name + isa));
  const int ce = c.cin * c.t, pad = k / 2;
  const bool residual = s == 1 && c.cin == c.cout;
  Conv1x1 ex;
  if (c.t > 1) ex = random_1x1(ce, c.cin, c.sparsity, c.heights, rng);
  const Conv1x1 pr = random_1x1(c.cout, ce, c.sparsity, c.heights, rng);
  std::vector<float> dw(size_t(ce) * k * k), dwb(static_cast<size_t>(ce));
  for (float& v : dw) v = rng.sym(0.5f);
  for (float& v : dwb) v = rng.sym(0.5f);
  const spe_inverted_block_params p{c.cin, ce, c.cout, k, s, SPE_ACT_RELU6, SPE_ACT_RELU6,
                                    int32_t(residual), c.band, c.schedule, c.flags};
  const spe_pointwise_weights exv = pointwise_view(ex), prv = pointwise_view(pr);
  spe_inverted_block* b = nullptr;
  if (spe_inverted_block_create(&p, c.t > 1 ? &exv : nullptr, dw.data(), dwb.data(), &prv, isa,
                                &b) != SPE_OK)
    return fmt("create failed: %s", spe_last_error());
  const int ho = int(out_dim(c.h, pad, 1, k, s)), wo = int(out_dim(c.w, pad, 1, k, s));
  const size_t in_n = size_t(c.batch) * c.cin * c.h * c.w, out_n = size_t(c.batch) * c.cout * ho * wo;
  const std::string err = checked_run(
      in_n, out_n, false, c.threads, c.cross_threads, rng,
      [&](const float* x, const float*, float* y) { return spe_inverted_block_run(b, x, c.batch, c.h, c.w, y); },
      [&](const float* x, const float*, const float* y) {
        const InvresGeom ig{c.cin, ce, c.cout, k, s, c.batch, c.h, c.w};
        const auto ref = ref_inverted_block(ig, c.t > 1 ? &ex : nullptr, dw, dwb, pr, x, residual);
        return compare(y, ref, std::max(c.cin, ce) + k * k, c.cout, ho, wo);
      });
  spe_inverted_block_destroy(b);
  return err;
}

std::vector<InvresCase> invres_cases(bool quick) {
  std::vector<InvresCase> cs;
  auto add = [&](InvresCase c) { cs.push_back(c); };
  for (int sched : {1, 2}) {
    const std::string sn = sched == 1 ? "rows" : "channels";
    add({sn + "-dense", 8, 3, 8, 9, 11, 0.0, 8, sched});
    add({sn + "-sparse-mixed-heights", 6, 4, 10, 7, 13, 0.6, 0, sched});
    add({sn + "-empty-groups", 8, 2, 8, 6, 5, 1.0, 4, sched});
    add({sn + "-no-expand", 12, 1, 7, 10, 9, 0.0, 8, sched});
    add({sn + "-band1-batch2", 5, 3, 5, 8, 7, 0.3, 4, sched, 1, 2});
    if (!quick) add({sn + "-band2-wide", 4, 6, 9, 5, 37, 0.5, 2, sched, 2});
  }
  for (int flags : {SPE_INVRES_PLANE_DEPTHWISE, SPE_INVRES_BALANCED_TILES, 3}) {
    InvresCase c{fmt("channels-flags%d", flags), 8, 4, 8, 14, 14, 0.5, 4, 2};
    c.flags = flags;
    add(c);
  }
  add({"auto-one-row", 8, 3, 8, 1, 17, 0.0, 8});
  add({"auto-tall", 3, 5, 3, 23, 4, 0.2, 0});
  assign_threads(cs);
  return cs;
}

}  // namespace

size_t invres_kernel_sweep(const spe::KernelInfo& k, bool quick) {
  const char* isa = spe::isa_name(k.isa);
  const int kk = tile_param(k, "kernel"), s = tile_param(k, "stride");
  return sweep(k.name, invres_cases(quick),
               [&](const InvresCase& c) { return run_invres_case(c, kk, s, isa); });
}

}  // namespace spe_test
