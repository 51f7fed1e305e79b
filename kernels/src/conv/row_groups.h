// The checks the packed row-group layers share (the f32 sparse conv, the int8 conv): their conv
// parameters and their group arrays, each failure recorded with a message that names it.
#ifndef SPE_CONV_ROW_GROUPS_H_
#define SPE_CONV_ROW_GROUPS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "../common/error.h"
#include "spe/spe.h"

namespace spe {

// Channels, kernel, strides (at most 8: the phase planes), padding, dilations (kernel and
// dilation at most 64).
inline spe_status check_packed_conv_params(const spe_conv_params& p) {
  if (p.out_channels <= 0 || p.in_channels <= 0 || p.kh <= 0 || p.kw <= 0 || p.stride_h <= 0 ||
      p.stride_w <= 0 || p.pad_h < 0 || p.pad_w < 0 || p.dil_h <= 0 || p.dil_w <= 0)
    return fail(SPE_ERR_INVALID_ARGUMENT, "invalid conv params (channels, kernel, stride, pad, dilation)");
  if (p.stride_h > 8 || p.stride_w > 8) return fail(SPE_ERR_INVALID_ARGUMENT, "stride too large (max 8 per dimension)");
  if (p.kh > 64 || p.kw > 64 || p.dil_h > 64 || p.dil_w > 64)
    return fail(SPE_ERR_INVALID_ARGUMENT, "kernel size or dilation too large (max 64)");
  return SPE_OK;
}

// The groups cover every output row exactly once with 1..max_rows rows each, their entry
// pointers rise from 0 to at most max_entries. On success *value_units is the sum over groups of
// entries x rows, and hist[r] the number of groups of r rows (hist has max_rows + 1 counts).
inline spe_status check_row_groups(int32_t out_channels, int32_t n_groups, const int32_t* group_row0,
                                   const int32_t* group_rows, const int64_t* group_ptr, int max_rows,
                                   int64_t max_entries, int64_t* value_units, std::vector<int>* hist) {
  if (n_groups < 0 || (n_groups > 0 && (!group_row0 || !group_rows || !group_ptr)))
    return fail(SPE_ERR_INVALID_ARGUMENT, "bad group arrays");
  // fewer groups than this cannot cover the rows (checked before anything of out_channels'
  // size is allocated)
  if (int64_t(n_groups) * max_rows < out_channels)
    return fail(SPE_ERR_INVALID_ARGUMENT, std::to_string(n_groups) + " groups of at most " + std::to_string(max_rows) +
                                              " rows cannot cover " + std::to_string(out_channels) + " output rows");
  std::vector<int> row_count(size_t(out_channels), 0);
  hist->assign(size_t(max_rows) + 1, 0);
  *value_units = 0;
  for (int g = 0; g < n_groups; ++g) {
    const int r0 = group_row0[g], r = group_rows[g];
    if (r < 1 || r > max_rows || r0 < 0 || r0 > out_channels - r || group_ptr[g] < 0 ||
        group_ptr[g + 1] < group_ptr[g] || group_ptr[g + 1] > max_entries)
      return fail(SPE_ERR_INVALID_ARGUMENT, "group " + std::to_string(g) + " out of range (rows 1.." + std::to_string(max_rows) +
                                                " within out_channels, ptr monotone, at most 2^40 entries)");
    for (int i = r0; i < r0 + r; ++i) row_count[size_t(i)]++;
    (*hist)[size_t(r)]++;
    *value_units += (group_ptr[g + 1] - group_ptr[g]) * r;  // < 8 * 2^40: no overflow
  }
  for (int i = 0; i < out_channels; ++i)
    if (row_count[size_t(i)] != 1)
      return fail(SPE_ERR_INVALID_ARGUMENT, "output row " + std::to_string(i) + " is covered by " +
                                                std::to_string(row_count[size_t(i)]) + " groups (must be exactly 1)");
  return SPE_OK;
}

}  // namespace spe
#endif  // SPE_CONV_ROW_GROUPS_H_
