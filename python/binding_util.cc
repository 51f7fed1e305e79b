// The shared binding helpers (binding_util.h).
#include "binding_util.h"

#include <limits>
#include <stdexcept>

namespace spe_py {

void check(spe_status s) {
  if (s == SPE_OK) return;
  const std::string msg = spe_last_error();
  if (s == SPE_ERR_OUT_OF_MEMORY) {
    PyErr_SetString(PyExc_MemoryError, msg.c_str());
    throw py::error_already_set();
  }
  if (s == SPE_ERR_INTERNAL) throw std::runtime_error(msg);
  throw std::invalid_argument(msg);
}

int32_t dim32(const py::array& a, int axis, const char* what) {
  const auto d = a.shape(axis);
  if (d > std::numeric_limits<int32_t>::max())
    throw std::invalid_argument(std::string(what) + " dimension " + std::to_string(axis) + " (" +
                                std::to_string(d) + ") exceeds 2^31 - 1");
  return int32_t(d);
}

spe_activation parse_act(const std::string& a) {
  if (a == "none") return SPE_ACT_NONE;
  if (a == "relu") return SPE_ACT_RELU;
  if (a == "relu6") return SPE_ACT_RELU6;
  if (a == "hardswish") return SPE_ACT_HARDSWISH;
  if (a == "silu") return SPE_ACT_SILU;
  if (a == "gelu") return SPE_ACT_GELU;
  if (a == "gelu_tanh") return SPE_ACT_GELU_TANH;
  throw std::invalid_argument("unknown activation '" + a +
                              "' (none, relu, relu6, hardswish, silu, gelu, gelu_tanh)");
}

py::ssize_t check_groups(const i32& group_row0, const i32& group_rows, const i64& group_ptr,
                         py::ssize_t n_entries_given, const char* entry_name, py::ssize_t n_values,
                         int values_per_row, const char* unit) {
  const auto G = group_row0.size();
  if (group_rows.size() != G || group_ptr.size() != G + 1)
    throw std::invalid_argument("group_row0/group_rows/group_ptr sizes disagree");
  if (G > py::ssize_t(std::numeric_limits<int32_t>::max()))
    throw std::invalid_argument("more than 2^31 - 1 row groups");
  const int64_t n_entries = group_ptr.at(G);
  if (n_entries_given != n_entries)
    throw std::invalid_argument(std::string(entry_name) + " has " + std::to_string(n_entries_given) +
                                " entries, group_ptr says " + std::to_string(n_entries));
  // group_ptr rises from 0 to n_entries and group rows are 1..8 (checked here, before the
  // products below, so that they cannot overflow; the C API checks the rest)
  int64_t nvals = 0;
  for (py::ssize_t g = 0; g < G; ++g) {
    const int64_t a = group_ptr.at(g), b = group_ptr.at(g + 1);
    const int32_t r = group_rows.at(g);
    if (a < 0 || b < a || b > n_entries || r < 1 || r > 8)
      throw std::invalid_argument("group " + std::to_string(g) +
                                  " out of range (rows 1..8, group_ptr monotone from 0)");
    nvals += (b - a) * r * values_per_row;
  }
  if (n_values != nvals)
    throw std::invalid_argument("values has " + std::to_string(n_values) + " " + unit +
                                ", the groups need " + std::to_string(nvals));
  return G;
}

}  // namespace spe_py
