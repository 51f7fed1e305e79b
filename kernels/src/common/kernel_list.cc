// The kernel catalog, read from the families' lists (through their headers' constexpr arrays,
// so a name is composed in one place).
#include "kernel_list.h"

#include "../dense/dense.h"
#include "../dwconv/dwconv.h"
#include "../mobile/invres.h"
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
  return out;
}

}  // namespace

const std::vector<KernelInfo>& kernel_list() {
  static const std::vector<KernelInfo> list = collect();
  return list;
}

}  // namespace spe
