// pybind11 bindings: engine._kernels. Buffers cross as numpy arrays (zero-copy from torch via
// Tensor.numpy()); nothing here links against libtorch.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <limits>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/kernel_list.h"  // kernels/src: the catalog of every family's list
#include "binding_util.h"
#include "machine_probe.h"
#include "spe/spe.h"

namespace py = pybind11;
using spe_py::f32;
using spe_py::i32;
using spe_py::i64;

namespace {

using spe_py::check;
using spe_py::dim32;
using spe_py::parse_act;

py::ssize_t check_groups(const i32& group_row0, const i32& group_rows, const i64& group_ptr,
                         const i32& entry_col, const f32& values) {
  return spe_py::check_groups(group_row0, group_rows, group_ptr, entry_col.size(), "entry_col",
                              values.size(), 1, "floats");
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
    const auto G = check_groups(group_row0, group_rows, group_ptr, entry_col, values);
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
    const int n = dim32(x, 0, "x"), h = dim32(x, 2, "x"), w = dim32(x, 3, "x");
    // The C API checks the input size (too small, too large) on a call with no images, before
    // y is allocated; it names the problem.
    float none = 0.0f;
    check(spe_sparse_conv_run(conv_.get(), &none, 0, h, w, nullptr, &none));
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

// Runs a layer on an NCHW input (the direct depthwise and the dense conv): x (N, in_ch, H, W)
// and the residual (N, out_ch, Ho, Wo) are taken as they come, not force-cast (a float64 or
// strided array would otherwise be copied on every call, a hidden cost the caller should see),
// y is allocated, and run(layer, x, n, h, w, residual, y) called without the GIL.
template <class Layer, class SizeFn, class RunFn>
py::array_t<float> run_nchw(Layer* layer, int in_ch, int out_ch, const py::array& x,
                            const std::optional<py::array>& residual, SizeFn size, RunFn run) {
  if (x.ndim() != 4 || x.shape(1) != in_ch)
    throw std::invalid_argument("x must be (N, " + std::to_string(in_ch) + ", H, W) float32");
  check_f32_c(x, "x");
  const int n = dim32(x, 0, "x"), h = dim32(x, 2, "x"), w = dim32(x, 3, "x");
  int ho, wo;
  size(layer, h, w, &ho, &wo);
  if (ho <= 0 || wo <= 0)
    throw std::invalid_argument("input " + std::to_string(h) + "x" + std::to_string(w) +
                                " too small for the kernel/padding");
  const std::vector<py::ssize_t> out_shape = {n, out_ch, ho, wo};
  const float* res = nullptr;
  if (residual) {
    const std::vector<py::ssize_t> got(residual->shape(), residual->shape() + residual->ndim());
    if (got != out_shape) throw std::invalid_argument("residual must have the output's shape");
    check_f32_c(*residual, "residual");
    res = static_cast<const float*>(residual->data());
  }
  py::array_t<float> y(out_shape);
  const float* xp = static_cast<const float*>(x.data());
  float* yp = y.mutable_data();
  spe_status s;
  {
    py::gil_scoped_release nogil;
    s = run(layer, xp, n, h, w, res, yp);
  }
  check(s);
  return y;
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

  py::array_t<float> run(py::array x, std::optional<py::array> residual) {
    return run_nchw(conv_.get(), channels_, channels_, x, residual,
                    spe_depthwise_conv_output_size, spe_depthwise_conv_run);
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

// ---- the fused inverted-residual block (kernels/src/mobile/) ----

// One 1x1 conv's packed arrays, held while the C API copies them.
struct PackedPointwise {
  i32 row0, rows;
  i64 ptr;
  i32 col;
  f32 values;
  std::optional<f32> bias;
  spe_pointwise_weights view(int out_rows, const char* what) const {
    const auto G = check_groups(row0, rows, ptr, col, values);
    if (bias && bias->size() != out_rows)
      throw std::invalid_argument(std::string(what) + " bias must have " + std::to_string(out_rows) +
                                  " elements");
    return {int32_t(G), row0.data(), rows.data(), ptr.data(), col.data(), values.data(),
            bias ? bias->data() : nullptr};
  }
};

PackedPointwise packed_from(const py::tuple& t, const char* what) {
  if (t.size() != 6)
    throw std::invalid_argument(std::string(what) + " must be (group_row0, group_rows, group_ptr, "
                                "entry_col, values, bias or None)");
  PackedPointwise p{t[0].cast<i32>(), t[1].cast<i32>(), t[2].cast<i64>(), t[3].cast<i32>(),
                    t[4].cast<f32>(), std::nullopt};
  if (!t[5].is_none()) p.bias = t[5].cast<f32>();
  return p;
}

class InvertedBlock {
 public:
  InvertedBlock(int in_channels, int expanded, int out_channels, int kernel, int stride,
                std::optional<py::tuple> expand, f32 dw_weight, std::optional<f32> dw_bias,
                py::tuple project, bool residual, const std::string& expand_act,
                const std::string& dw_act, int band_rows, int schedule, int flags,
                const std::string& isa)
      : in_(in_channels), out_(out_channels) {
    spe_inverted_block_params p{in_channels, expanded, out_channels, kernel, stride,
                                parse_act(expand_act), parse_act(dw_act), int32_t(residual),
                                band_rows, schedule, flags};
    if (dw_weight.size() != py::ssize_t(expanded) * kernel * kernel)
      throw std::invalid_argument("dw_weight must hold expanded * kernel * kernel floats");
    if (dw_bias && dw_bias->size() != expanded)
      throw std::invalid_argument("dw_bias must have expanded elements");
    std::optional<PackedPointwise> ex;
    spe_pointwise_weights exv{}, prv{};
    if (expand) {
      ex = packed_from(*expand, "expand");
      exv = ex->view(expanded, "expand");
    }
    const PackedPointwise pr = packed_from(project, "project");
    prv = pr.view(out_channels, "project");
    spe_inverted_block* b = nullptr;
    check(spe_inverted_block_create(&p, expand ? &exv : nullptr, dw_weight.data(),
                                    dw_bias ? dw_bias->data() : nullptr, &prv, isa.c_str(), &b));
    block_.reset(b);
  }

  py::array_t<float> run(py::array x) {
    if (x.ndim() != 4 || x.shape(1) != in_)
      throw std::invalid_argument("x must be (N, " + std::to_string(in_) + ", H, W) float32");
    check_f32_c(x, "x");
    const int n = dim32(x, 0, "x"), h = dim32(x, 2, "x"), w = dim32(x, 3, "x");
    float none = 0.0f;
    check(spe_inverted_block_run(block_.get(), &none, 0, h, w, &none));  // the size, named
    int ho, wo;
    spe_inverted_block_output_size(block_.get(), h, w, &ho, &wo);
    py::array_t<float> y({n, out_, ho, wo});
    const float* xp = static_cast<const float*>(x.data());
    float* yp = y.mutable_data();
    spe_status s;
    {
      py::gil_scoped_release nogil;
      s = spe_inverted_block_run(block_.get(), xp, n, h, w, yp);
    }
    check(s);
    return y;
  }

  std::string kernel_name() const { return spe_inverted_block_kernel_name(block_.get()); }

 private:
  struct Deleter {
    void operator()(spe_inverted_block* b) const { spe_inverted_block_destroy(b); }
  };
  std::unique_ptr<spe_inverted_block, Deleter> block_;
  int in_ = 0, out_ = 0;
};

// ---------------------------------------------------------------------------- dense conv (P7)

class DenseConv {
 public:
  DenseConv(int out_channels, int in_channels, std::pair<int, int> kernel,
            std::pair<int, int> stride, std::pair<int, int> padding,
            std::pair<int, int> dilation, f32 weight, std::optional<f32> bias,
            const std::string& act, const std::string& isa, const std::string& algo)
      : out_channels_(out_channels), in_channels_(in_channels) {
    const int64_t want = int64_t(out_channels) * in_channels * kernel.first * kernel.second;
    if (out_channels <= 0 || in_channels <= 0 || kernel.first <= 0 || kernel.second <= 0 ||
        weight.size() != want || weight.ndim() != 4 || weight.shape(0) != out_channels)
      throw std::invalid_argument("weight must be (" + std::to_string(out_channels) + ", " +
                                  std::to_string(in_channels) + ", " + std::to_string(kernel.first) +
                                  ", " + std::to_string(kernel.second) + ") float32");
    if (bias && (bias->ndim() != 1 || bias->shape(0) != out_channels))
      throw std::invalid_argument("bias must have out_channels (" + std::to_string(out_channels) +
                                  ") elements");
    const spe_conv_params p = {out_channels, in_channels, kernel.first, kernel.second,
                               stride.first, stride.second, padding.first, padding.second,
                               dilation.first, dilation.second};
    spe_dense_conv* c = nullptr;
    const spe_status st = spe_dense_conv_create(&p, weight.data(), bias ? bias->data() : nullptr,
                                                parse_act(act), isa.c_str(), algo.c_str(), &c);
    conv_.reset(c);
    check(st);
  }

  py::array_t<float> run(py::array x, std::optional<py::array> residual) {
    return run_nchw(conv_.get(), in_channels_, out_channels_, x, residual,
                    spe_dense_conv_output_size, spe_dense_conv_run);
  }

  std::pair<int, int> output_size(int h, int w) const {
    std::pair<int, int> out;
    spe_dense_conv_output_size(conv_.get(), h, w, &out.first, &out.second);
    return out;
  }
  std::string kernel_name(int h, int w) const { return spe_dense_conv_kernel_name(conv_.get(), h, w); }
  bool winograd() const { return spe_dense_conv_is_winograd(conv_.get()) != 0; }

 private:
  struct Deleter {
    void operator()(spe_dense_conv* c) const { spe_dense_conv_destroy(c); }
  };
  std::unique_ptr<spe_dense_conv, Deleter> conv_;
  int out_channels_ = 0, in_channels_ = 0;
};

void bind_dense_conv(py::module_& m) {
  py::class_<DenseConv>(m, "DenseConv", "A packed dense conv layer, groups 1 (see spe.h).")
      .def(py::init<int, int, std::pair<int, int>, std::pair<int, int>, std::pair<int, int>,
                    std::pair<int, int>, f32, std::optional<f32>, const std::string&,
                    const std::string&, const std::string&>(),
           py::arg("out_channels"), py::arg("in_channels"), py::arg("kernel"), py::arg("stride"),
           py::arg("padding"), py::arg("dilation"), py::arg("weight"), py::arg("bias") = py::none(),
           py::arg("act") = "none", py::arg("isa") = "auto", py::arg("algo") = "gemm",
           "weight (O, C, kh, kw) float32 as torch stores it; algo 'gemm' (a 1x1 conv: the "
           "pointwise path; C*kh*kw <= 64 or C <= 4: the direct path; other strided convs: "
           "the phase path, or pointwise on gathered im2col below 64 output pixels), "
           "'gemm-packed' / 'gemm-pointwise' / 'gemm-direct' / 'gemm-phase' (one path "
           "forced), 'winograd' (3x3 stride 1 "
           "only), or an f32_gemm kernel name of the ISA (that tile for every input, packed) "
           "or an f32_conv one (that direct tile).")
      .def("run", &DenseConv::run, py::arg("x"), py::arg("residual") = py::none(),
           "y = act(conv2d(x, weight, bias) [+ residual]); x and the residual float32 "
           "C-contiguous (other arrays raise ValueError, never a silent copy).")
      .def("output_size", &DenseConv::output_size, py::arg("h"), py::arg("w"))
      .def("kernel_name", &DenseConv::kernel_name, py::arg("h"), py::arg("w"),
           "the f32_gemm (direct path: f32_conv) microkernel an h x w input runs on")
      .def_property_readonly("winograd", &DenseConv::winograd);
}

constexpr const char* kListKernelsDoc =
    "Every kernel the library lists (kernels/src/<family>/<family>_list.h), family by family "
    "in list order, as dicts: name (the tile, then '__', then the ISA: f32_spmm_4x96__avx512, "
    "f32_dwconv_3x3s2__neon, f32_dwconv_generic__scalar), family ('f32_spmm', 'f32_dwconv', "
    "'f32_invres', 'f32_gemm', 'f32_conv', 'qs8_spmm'), isa (the instruction set), variant "
    "(the ISA variant the name ends with: the isa, or for int8 avx512vnni / neondot), tile "
    "(f32_spmm, f32_gemm, f32_conv, qs8_spmm: rows, pixels; f32_dwconv, f32_invres: kernel, "
    "stride; {} for a generic kernel) and available (this build and CPU can run it).";

py::list list_kernels() {
  py::list out;
  for (const spe::KernelInfo& k : spe::kernel_list()) {
    py::dict tile, d;
    for (int i = 0; i < k.n_params; ++i) tile[k.params[i].key] = k.params[i].value;
    d["name"] = k.name;
    d["family"] = k.family;
    d["isa"] = spe::isa_name(k.isa);
    d["variant"] = spe::kernel_variant(k);
    d["tile"] = tile;
    d["available"] = spe::kernel_available(k);
    out.append(d);
  }
  return out;
}

}  // namespace

PYBIND11_MODULE(_kernels, m) {
  spe_py::bind_qconv(m);
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
  py::class_<InvertedBlock>(m, "InvertedBlock",
                            "A fused inverted-residual block: expand 1x1 -> depthwise -> project "
                            "1x1 (see spe.h, kernels/src/mobile/).")
      .def(py::init<int, int, int, int, int, std::optional<py::tuple>, f32, std::optional<f32>,
                    py::tuple, bool, const std::string&, const std::string&, int, int, int,
                    const std::string&>(),
           py::arg("in_channels"), py::arg("expanded"), py::arg("out_channels"), py::arg("kernel"),
           py::arg("stride"), py::arg("expand"), py::arg("dw_weight"), py::arg("dw_bias"),
           py::arg("project"), py::arg("residual") = false, py::arg("expand_act") = "relu6",
           py::arg("dw_act") = "relu6", py::arg("band_rows") = 0, py::arg("schedule") = 0,
           py::arg("flags") = 0, py::arg("isa") = "auto",
           "expand / project: (group_row0, group_rows, group_ptr, entry_col, values, bias or "
           "None) as SparseConv takes them (expand None: no expand conv); dw_weight "
           "(expanded, 1, k, k); schedule 0 auto, 1 bands of rows, 2 groups of channels; flags "
           "1 depthwise on its plane kernel, 2 balanced 1x1 tiles (spe.h SPE_INVRES_*).")
      .def("run", &InvertedBlock::run, py::arg("x"),
           "x (N, C, H, W) float32 C-contiguous -> y (N, out_channels, Ho, Wo).")
      .def_property_readonly("kernel_name", &InvertedBlock::kernel_name,
                             "f32_invres_{k}x{k}s{s}__{isa}");
  m.def(
      "max_pool2d",
      [](f32 x, std::pair<int, int> k, std::pair<int, int> s, std::pair<int, int> p) {
        // torch's checks, in the C API (spe_max_pool2d_output_size): kernel and stride > 0,
        // 0 <= padding <= kernel / 2, a non-empty C x H x W input, an output of at least 1x1
        if (x.ndim() != 4) throw std::invalid_argument("max_pool2d: x must be (N, C, H, W) float32");
        const int n = dim32(x, 0, "x"), c = dim32(x, 1, "x"), h = dim32(x, 2, "x"), w = dim32(x, 3, "x");
        int32_t ho = 0, wo = 0;
        check(spe_max_pool2d_output_size(h, w, k.first, k.second, s.first, s.second, p.first,
                                         p.second, &ho, &wo));
        if (c <= 0) throw std::invalid_argument("max_pool2d: x has no channels");
        py::array_t<float> y({n, c, int(ho), int(wo)});
        const float* xp = x.data();
        float* yp = y.mutable_data();
        spe_status st;
        {
          py::gil_scoped_release nogil;
          st = spe_max_pool2d(xp, n, c, h, w, k.first, k.second, s.first, s.second, p.first,
                              p.second, yp);
        }
        check(st);
        return y;
      },
      py::arg("x"), py::arg("kernel"), py::arg("stride"), py::arg("padding"),
      "Max pooling, NCHW float32, floor mode, dilation 1: torch's max_pool2d, with its "
      "validation (ValueError where torch raises) and output size.");
  m.def("set_num_threads", &spe_set_num_threads, py::arg("n"),
        "Threads used by the kernels, clamped to 1..1024.");
  m.def("get_num_threads", &spe_get_num_threads);
  m.def("isa_available", [](const std::string& s) { return spe_isa_available(s.c_str()) != 0; },
        py::arg("isa"));
  m.def("best_isa", [] { return std::string(spe_best_isa()); });
  m.def("available_isas", [] {
    py::list out;
    for (int i = 0; i < spe::kNumIsas; ++i)
      if (spe_isa_available(spe::isa_name(spe::Isa(i)))) out.append(spe::isa_name(spe::Isa(i)));
    return out;
  });
  m.def("list_kernels", &list_kernels, kListKernelsDoc);
  m.def(
      "core_to_core_ns",
      [](int cpu_a, int cpu_b, int64_t iters) {
        py::gil_scoped_release nogil;
        return spe_probe::core_to_core_round_trip_ns(cpu_a, cpu_b, iters);
      },
      py::arg("cpu_a"), py::arg("cpu_b"), py::arg("iters") = 20000,
      "Nanoseconds per cache-line round trip between two threads pinned to the two CPUs "
      "(a benchmark's probe of where the hypervisor put the vCPUs; see machine_probe.cc).");
  bind_dense_conv(m);
}
