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

using f32 = py::array_t<float, py::array::c_style | py::array::forcecast>;
using i32 = py::array_t<int32_t, py::array::c_style | py::array::forcecast>;
using i64 = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;

// A failed status as the Python exception that fits it, carrying spe_last_error(): MemoryError
// for SPE_ERR_OUT_OF_MEMORY, RuntimeError for SPE_ERR_INTERNAL, ValueError otherwise (bad
// arguments, an ISA this CPU lacks). Called with the GIL held.
void check(spe_status s);
// A numpy dimension as the int32 the C API takes, or a ValueError naming it (a zero-size
// array may have any dimension, e.g. (0, 3, 2**40, 1)).
int32_t dim32(const py::array& a, int axis, const char* what);
spe_activation parse_act(const std::string& a);
// The packed row-group arrays agree in size (C reads them by the lengths group_ptr implies):
// the number of groups, or a ValueError naming the mismatch. n_entries: the entry array's
// length (named entry_name); n_values: the values', which must be values_per_row per entry
// and row of its group (`unit` names them in the message).
py::ssize_t check_groups(const i32& group_row0, const i32& group_rows, const i64& group_ptr,
                         py::ssize_t n_entries, const char* entry_name, py::ssize_t n_values,
                         int values_per_row, const char* unit);

// engine._kernels.QConv (qconv_binding.cc).
void bind_qconv(py::module_& m);

}  // namespace spe_py
#endif  // SPE_PYTHON_BINDING_UTIL_H_
