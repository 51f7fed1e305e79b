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

}  // namespace spe_py
