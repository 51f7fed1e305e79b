// What the binding files share (bindings.cc, qconv_binding.cc): statuses as Python exceptions,
// checked dimensions, activation names.
#ifndef SPE_PYTHON_BINDING_UTIL_H_
#define SPE_PYTHON_BINDING_UTIL_H_

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "spe/spe.h"

namespace spe_py {

namespace py = pybind11;

// A failed status as the Python exception that fits it, carrying spe_last_error(): MemoryError
// for SPE_ERR_OUT_OF_MEMORY, RuntimeError for SPE_ERR_INTERNAL, ValueError otherwise (bad
// arguments, an ISA this CPU lacks). Called with the GIL held.
void check(spe_status s);
// A numpy dimension as the int32 the C API takes, or a ValueError naming it (a zero-size
// array may have any dimension, e.g. (0, 3, 2**40, 1)).
int32_t dim32(const py::array& a, int axis, const char* what);
spe_activation parse_act(const std::string& a);

// engine._kernels.QConv (qconv_binding.cc).
void bind_qconv(py::module_& m);

}  // namespace spe_py
#endif  // SPE_PYTHON_BINDING_UTIL_H_
