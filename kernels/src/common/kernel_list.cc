// The kernel catalog, read from the families' lists (through their headers' constexpr arrays,
// so a name is composed in one place).
#include "kernel_list.h"

#include <cstring>

#include "../dense/dense.h"
#include "../dwconv/dwconv.h"
#include "../mobile/invres.h"
#include "../qspmm/qspmm.h"
#include "../spmm/spmm.h"

namespace spe {
namespace {

std::vector<KernelInfo> collect() {
  std::vector<KernelInfo> out;
  for (const SpmmUkernel& u : kSpmmUkernels)
    out.push_back({u.name, "f32_spmm", u.isa, 2, {{"rows", u.rows}, {"pixels", u.pixels}}});
  for (const DwUkernel& u : kDwUkernels)
    out.push_back({u.name, "f32_dwconv", u.isa, u.k ? 2 : 0, {{"kernel", u.k}, {"stride", u.s}}});
  for (const InvresUkernel& u : kInvresUkernels)
    out.push_back({u.name, "f32_invres", u.isa, 2, {{"kernel", u.k}, {"stride", u.s}}});
  for (const DenseUkernel& u : kDenseUkernels)
    out.push_back({u.name, "f32_gemm", u.isa, 2, {{"rows", u.rows}, {"pixels", u.pixels}}});
  for (const DenseUkernel& u : kConvUkernels)
    out.push_back({u.name, "f32_conv", u.isa, 2, {{"rows", u.rows}, {"pixels", u.pixels}}});
  for (const QSpmmUkernel& u : kQSpmmUkernels) {
    const QVariant v = u.variant;
    const Isa isa = v == QVariant::avx2 ? Isa::avx2 : v == QVariant::avx512vnni ? Isa::avx512
                  : v == QVariant::neon || v == QVariant::neondot ? Isa::neon : Isa::scalar;
    out.push_back({u.name, "qs8_spmm", isa, 2, {{"rows", u.rows}, {"pixels", u.pixels}}, qvariant_name(v)});
  }
  return out;
}

}  // namespace

const char* kernel_variant(const KernelInfo& info) {
  return info.variant ? info.variant : isa_name(info.isa);
}

bool kernel_available(const KernelInfo& info) {
  QVariant v;
  if (std::strcmp(info.family, "qs8_spmm") == 0)
    return parse_qvariant(info.variant, &v) && qspmm_kernels(v) != nullptr;
  return isa_runs(info.isa);
}

const std::vector<KernelInfo>& kernel_list() {
  static const std::vector<KernelInfo> list = collect();
  return list;
}

}  // namespace spe
