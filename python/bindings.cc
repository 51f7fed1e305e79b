// pybind11 bindings: engine._kernels. Buffers cross as numpy arrays (zero-copy from torch via
// Tensor.numpy()); nothing here links against libtorch.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

#include "spe/spe.h"

namespace py = pybind11;
using f32 = py::array_t<float, py::array::c_style | py::array::forcecast>;
using i32 = py::array_t<int32_t, py::array::c_style | py::array::forcecast>;
using i64 = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;

namespace {

void check(spe_status s) {
  if (s != SPE_OK) throw std::invalid_argument(spe_last_error());
}

spe_activation parse_act(const std::string& a) {
  if (a == "none") return SPE_ACT_NONE;
  if (a == "relu") return SPE_ACT_RELU;
  if (a == "relu6") return SPE_ACT_RELU6;
  throw std::invalid_argument("unknown activation '" + a + "' (none, relu, relu6)");
}

class SparseConv {
 public:
  SparseConv(int out_channels, int in_channels, std::pair<int, int> kernel,
             std::pair<int, int> stride, std::pair<int, int> padding,
             std::pair<int, int> dilation, i32 group_row0, i32 group_rows, i64 group_ptr,
             i32 entry_col, f32 values, std::optional<f32> bias, const std::string& act,
             const std::string& isa)
      : isa_(isa) {
    spe_conv_params p{out_channels, in_channels, kernel.first, kernel.second, stride.first,
                      stride.second, padding.first, padding.second, dilation.first,
                      dilation.second};
    const auto G = group_row0.size();
    if (group_rows.size() != G || group_ptr.size() != G + 1)
      throw std::invalid_argument("group_row0/group_rows/group_ptr sizes disagree");
    const int64_t n_entries = group_ptr.at(G);
    if (entry_col.size() != n_entries)
      throw std::invalid_argument("entry_col has " + std::to_string(entry_col.size()) +
                                  " entries, group_ptr says " + std::to_string(n_entries));
    int64_t nvals = 0;
    for (size_t g = 0; g < G; ++g) nvals += (group_ptr.at(g + 1) - group_ptr.at(g)) * group_rows.at(g);
    if (values.size() != nvals)
      throw std::invalid_argument("values has " + std::to_string(values.size()) +
                                  " floats, the groups need " + std::to_string(nvals));
    if (bias && bias->size() != out_channels)
      throw std::invalid_argument("bias must have out_channels elements");
    spe_sparse_conv* c = nullptr;
    check(spe_sparse_conv_create(&p, int32_t(G), group_row0.data(), group_rows.data(),
                                 group_ptr.data(), entry_col.data(), values.data(),
                                 bias ? bias->data() : nullptr, parse_act(act), isa.c_str(), &c));
    conv_.reset(c);
    out_channels_ = out_channels;
    in_channels_ = in_channels;
  }

  py::array_t<float> run(f32 x, std::optional<f32> residual) {
    if (x.ndim() != 4 || x.shape(1) != in_channels_)
      throw std::invalid_argument("x must be (N, " + std::to_string(in_channels_) +
                                  ", H, W) float32");
    const int n = int(x.shape(0)), h = int(x.shape(2)), w = int(x.shape(3));
    int ho, wo;
    spe_sparse_conv_output_size(conv_.get(), h, w, &ho, &wo);
    if (ho <= 0 || wo <= 0) throw std::invalid_argument("input spatial size too small");
    py::array_t<float> y({n, out_channels_, ho, wo});
    const float* res = nullptr;
    if (residual) {
      if (residual->ndim() != 4 || residual->shape(0) != n || residual->shape(1) != out_channels_ ||
          residual->shape(2) != ho || residual->shape(3) != wo)
        throw std::invalid_argument("residual must have the output's shape");
      res = residual->data();
    }
    const float* xp = x.data();
    float* yp = y.mutable_data();
    spe_status s;
    {
      py::gil_scoped_release nogil;
      s = spe_sparse_conv_run(conv_.get(), xp, n, h, w, res, yp);
    }
    check(s);
    return y;
  }

  std::pair<int, int> output_size(int h, int w) const {
    int ho, wo;
    spe_sparse_conv_output_size(conv_.get(), h, w, &ho, &wo);
    return {ho, wo};
  }
  int64_t nnz() const { return spe_sparse_conv_nnz(conv_.get()); }
  std::string kernel_name() const { return spe_sparse_conv_kernel_name(conv_.get()); }

 private:
  struct Deleter {
    void operator()(spe_sparse_conv* c) const { spe_sparse_conv_destroy(c); }
  };
  std::unique_ptr<spe_sparse_conv, Deleter> conv_;
  std::string isa_;
  int out_channels_ = 0, in_channels_ = 0;
};

// A float32, C-contiguous array, or a ValueError naming what is wrong with it.
void check_f32_c(const py::array& a, const char* what) {
  if (!a.dtype().is(py::dtype::of<float>()))
    throw std::invalid_argument(std::string(what) + " must be float32, got " +
                                std::string(py::str(a.dtype())));
  if (!(a.flags() & py::array::c_style))
    throw std::invalid_argument(std::string(what) +
                                " must be C-contiguous (np.ascontiguousarray / Tensor.contiguous)");
}

class DepthwiseConv {
 public:
  DepthwiseConv(int channels, std::pair<int, int> kernel, std::pair<int, int> stride,
                std::pair<int, int> padding, std::pair<int, int> dilation, f32 weight,
                std::optional<f32> bias, const std::string& act, const std::string& isa)
      : channels_(channels) {
    const auto kh = kernel.first, kw = kernel.second;
    const bool shape4 = weight.ndim() == 4 && weight.shape(0) == channels && weight.shape(1) == 1 &&
                        weight.shape(2) == kh && weight.shape(3) == kw;
    const bool shape3 = weight.ndim() == 3 && weight.shape(0) == channels &&
                        weight.shape(1) == kh && weight.shape(2) == kw;
    if (!shape4 && !shape3) {
      std::string got = "(";
      for (py::ssize_t i = 0; i < weight.ndim(); ++i)
        got += (i ? ", " : "") + std::to_string(weight.shape(i));
      got += weight.ndim() == 1 ? ",)" : ")";
      const std::string c = std::to_string(channels), k = std::to_string(kh) + ", " + std::to_string(kw);
      throw std::invalid_argument("weight must be (" + c + ", 1, " + k + ") or (" + c + ", " + k +
                                  ") float32, got shape " + got);
    }
    if (bias && (bias->ndim() != 1 || bias->shape(0) != channels))
      throw std::invalid_argument("bias must have channels (" + std::to_string(channels) +
                                  ") elements");
    spe_conv_params p{channels, channels, kh, kw, stride.first, stride.second, padding.first,
                      padding.second, dilation.first, dilation.second};
    spe_depthwise_conv* c = nullptr;
    check(spe_depthwise_conv_create(&p, weight.data(), bias ? bias->data() : nullptr,
                                    parse_act(act), isa.c_str(), &c));
    conv_.reset(c);
  }

  // x and residual are taken as they come, not force-cast: a float64 or strided array would
  // otherwise be copied (converted) on every call, a hidden cost the caller should see.
  py::array_t<float> run(py::array x, std::optional<py::array> residual) {
    if (x.ndim() != 4 || x.shape(1) != channels_)
      throw std::invalid_argument("x must be (N, " + std::to_string(channels_) +
                                  ", H, W) float32");
    check_f32_c(x, "x");
    const int n = int(x.shape(0)), h = int(x.shape(2)), w = int(x.shape(3));
    int ho, wo;
    spe_depthwise_conv_output_size(conv_.get(), h, w, &ho, &wo);
    if (ho <= 0 || wo <= 0)
      throw std::invalid_argument("input " + std::to_string(h) + "x" + std::to_string(w) +
                                  " too small for the kernel/padding");
    py::array_t<float> y({n, channels_, ho, wo});
    const float* res = nullptr;
    if (residual) {
      if (residual->ndim() != 4 || residual->shape(0) != n || residual->shape(1) != channels_ ||
          residual->shape(2) != ho || residual->shape(3) != wo)
        throw std::invalid_argument("residual must have the output's shape");
      check_f32_c(*residual, "residual");
      res = static_cast<const float*>(residual->data());
    }
    const float* xp = static_cast<const float*>(x.data());
    float* yp = y.mutable_data();
    spe_status s;
    {
      py::gil_scoped_release nogil;
      s = spe_depthwise_conv_run(conv_.get(), xp, n, h, w, res, yp);
    }
    check(s);
    return y;
  }

  std::pair<int, int> output_size(int h, int w) const {
    int ho, wo;
    spe_depthwise_conv_output_size(conv_.get(), h, w, &ho, &wo);
    return {ho, wo};
  }
  std::string kernel_name() const { return spe_depthwise_conv_kernel_name(conv_.get()); }

 private:
  struct Deleter {
    void operator()(spe_depthwise_conv* c) const { spe_depthwise_conv_destroy(c); }
  };
  std::unique_ptr<spe_depthwise_conv, Deleter> conv_;
  int channels_ = 0;
};

}  // namespace

PYBIND11_MODULE(_kernels, m) {
  m.doc() = "Block-sparse conv / linear and depthwise conv kernels (AVX2, AVX-512, NEON, scalar).";
  py::class_<SparseConv>(m, "SparseConv", "A packed sparse conv layer (see kernels/include/spe/spe.h).")
      .def(py::init<int, int, std::pair<int, int>, std::pair<int, int>, std::pair<int, int>,
                    std::pair<int, int>, i32, i32, i64, i32, f32, std::optional<f32>,
                    const std::string&, const std::string&>(),
           py::arg("out_channels"), py::arg("in_channels"), py::arg("kernel"), py::arg("stride"),
           py::arg("padding"), py::arg("dilation"), py::arg("group_row0"), py::arg("group_rows"),
           py::arg("group_ptr"), py::arg("entry_col"), py::arg("values"),
           py::arg("bias") = py::none(), py::arg("act") = "none", py::arg("isa") = "auto")
      .def("run", &SparseConv::run, py::arg("x"), py::arg("residual") = py::none(),
           "y = act(conv(x) + bias [+ residual]); x (N, C, H, W) float32 C-contiguous.")
      .def("output_size", &SparseConv::output_size, py::arg("h"), py::arg("w"))
      .def_property_readonly("nnz", &SparseConv::nnz, "stored weights (incl. zeros inside blocks)")
      .def_property_readonly("kernel_name", &SparseConv::kernel_name);
  py::class_<DepthwiseConv>(m, "DepthwiseConv",
                            "A dense depthwise conv layer, groups == channels (see spe.h).")
      .def(py::init<int, std::pair<int, int>, std::pair<int, int>, std::pair<int, int>,
                    std::pair<int, int>, f32, std::optional<f32>, const std::string&,
                    const std::string&>(),
           py::arg("channels"), py::arg("kernel"), py::arg("stride"), py::arg("padding"),
           py::arg("dilation"), py::arg("weight"), py::arg("bias") = py::none(),
           py::arg("act") = "none", py::arg("isa") = "auto",
           "weight (C, 1, kh, kw) as torch stores it, or (C, kh, kw); bias (C,) or None.")
      .def("run", &DepthwiseConv::run, py::arg("x"), py::arg("residual") = py::none(),
           "y = act(conv2d(x, weight, bias, groups=C) [+ residual]); x (N, C, H, W) and the "
           "residual float32 C-contiguous (other arrays raise ValueError, never a silent copy).")
      .def("output_size", &DepthwiseConv::output_size, py::arg("h"), py::arg("w"))
      .def_property_readonly("kernel_name", &DepthwiseConv::kernel_name,
                             "f32_dwconv_{k}x{k}s{s}__{isa} or f32_dwconv_generic__{isa}");
  m.def(
      "max_pool2d",
      [](f32 x, std::pair<int, int> k, std::pair<int, int> s, std::pair<int, int> p) {
        if (x.ndim() != 4) throw std::invalid_argument("x must be (N, C, H, W) float32");
        const int n = int(x.shape(0)), c = int(x.shape(1)), h = int(x.shape(2)), w = int(x.shape(3));
        if (2 * p.first > k.first || 2 * p.second > k.second)
          throw std::invalid_argument("padding must be at most half the kernel size");
        const int ho = (h + 2 * p.first - k.first) / s.first + 1;
        const int wo = (w + 2 * p.second - k.second) / s.second + 1;
        if (ho <= 0 || wo <= 0 || s.first <= 0 || s.second <= 0)
          throw std::invalid_argument("input too small for the pooling window");
        py::array_t<float> y({n, c, ho, wo});
        const float* xp = x.data();
        float* yp = y.mutable_data();
        spe_status st;
        {
          py::gil_scoped_release nogil;
          st = spe_max_pool2d(xp, n, c, h, w, k.first, k.second, s.first, s.second, p.first,
                              p.second, yp);
        }
        if (st != SPE_OK) throw std::invalid_argument("invalid max_pool2d arguments");
        return y;
      },
      py::arg("x"), py::arg("kernel"), py::arg("stride"), py::arg("padding"),
      "Max pooling, NCHW float32, floor mode (torch semantics).");
  m.def("set_num_threads", &spe_set_num_threads, py::arg("n"), "Threads used by the kernels.");
  m.def("get_num_threads", &spe_get_num_threads);
  m.def("isa_available", [](const std::string& s) { return spe_isa_available(s.c_str()) != 0; },
        py::arg("isa"));
  m.def("best_isa", [] { return std::string(spe_best_isa()); });
  m.def("available_isas", [] {
    py::list out;
    for (const char* s : {"scalar", "avx2", "avx512", "neon"})
      if (spe_isa_available(s)) out.append(s);
    return out;
  });
}
