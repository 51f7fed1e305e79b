// engine._kernels.QConv: the int8 conv / linear layer of spe.h (spe_qconv_*), u8 numpy arrays
// in and out. Nothing here links against libtorch.
#include <pybind11/stl.h>

#include <limits>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "binding_util.h"

namespace spe_py {
namespace {

using s8 = py::array_t<int8_t, py::array::c_style | py::array::forcecast>;
using u8 = py::array_t<uint8_t, py::array::c_style>;
using QP = std::pair<float, int>;  // (scale, zero point)

spe_qparams qparams(const QP& q) { return spe_qparams{q.first, int32_t(q.second)}; }

int32_t parse_layout(const std::string& s) {
  if (s == "nchw") return SPE_QLAYOUT_NCHW;
  if (s == "nchw4") return SPE_QLAYOUT_NCHW4;
  throw std::invalid_argument("unknown int8 layout '" + s + "' (nchw, nchw4)");
}

// y = run(x, residual or null, y) with the GIL released, the residual checked against y's shape
// first (and refused for a layer built without its qparams).
template <class Run>
u8 run_into(u8 y, const u8& x, const std::optional<u8>& residual, bool has_residual_qparams,
            Run run) {
  const uint8_t* res = nullptr;
  if (residual) {
    if (!has_residual_qparams)
      throw std::invalid_argument("a residual needs the layer built with residual=(scale, zero_point)");
    bool same = residual->ndim() == y.ndim();
    for (py::ssize_t d = 0; same && d < y.ndim(); ++d) same = residual->shape(d) == y.shape(d);
    if (!same) throw std::invalid_argument("residual must have the output's shape (and layout)");
    res = residual->data();
  }
  const uint8_t* xp = x.data();
  uint8_t* yp = y.mutable_data();
  spe_status s;
  {
    py::gil_scoped_release nogil;
    s = run(xp, res, yp);
  }
  check(s);
  return y;
}

class QConv {
 public:
  QConv(int out_channels, int in_channels, std::pair<int, int> kernel, std::pair<int, int> stride,
        std::pair<int, int> padding, std::pair<int, int> dilation, i32 group_row0,
        i32 group_rows, i64 group_ptr, i32 entry_quad, s8 values, f32 weight_scale,
        std::optional<f32> bias, QP input, QP output, std::optional<QP> residual,
        const std::string& act, const std::string& isa, const std::string& input_layout,
        const std::string& output_layout)
      : out_channels_(out_channels), in_channels_(in_channels),
        in_quads_(parse_layout(input_layout) == SPE_QLAYOUT_NCHW4),
        out_quads_(parse_layout(output_layout) == SPE_QLAYOUT_NCHW4) {
    const spe_conv_params p{out_channels, in_channels, kernel.first, kernel.second, stride.first,
                            stride.second, padding.first, padding.second, dilation.first,
                            dilation.second};
    const auto G = check_groups(group_row0, group_rows, group_ptr, entry_quad.size(), "entry_quad",
                                values.size(), 4, "int8 (rows x 4 per entry)");
    if (weight_scale.size() != out_channels || (bias && bias->size() != out_channels))
      throw std::invalid_argument("weight_scale and bias must have out_channels elements");
    spe_qconv_quant q{};
    q.input = qparams(input);
    q.output = qparams(output);
    q.residual = residual ? qparams(*residual) : spe_qparams{1.0f, 0};
    q.weight_scale = weight_scale.data();
    q.bias = bias ? bias->data() : nullptr;
    q.input_layout = in_quads_ ? SPE_QLAYOUT_NCHW4 : SPE_QLAYOUT_NCHW;
    q.output_layout = out_quads_ ? SPE_QLAYOUT_NCHW4 : SPE_QLAYOUT_NCHW;
    spe_qconv* c = nullptr;
    check(spe_qconv_create(&p, int32_t(G), group_row0.data(), group_rows.data(), group_ptr.data(),
                           entry_quad.data(), values.data(), &q, parse_act(act), isa.c_str(), &c));
    conv_.reset(c);
    has_residual_qparams_ = bool(residual);
  }

  // (N, C, H, W) NCHW, or (N, ceil(C / 4), H, W, 4) NCHW4.
  std::vector<py::ssize_t> shape_of(bool quads, int n, int c, int h, int w) const {
    if (quads) return {n, (c + 3) / 4, h, w, 4};
    return {n, c, h, w};
  }
  u8 run(u8 x, std::optional<u8> residual) {
    const int in_dims = in_quads_ ? 5 : 4;
    if (x.ndim() != in_dims || x.shape(1) != (in_quads_ ? (in_channels_ + 3) / 4 : in_channels_) ||
        (in_quads_ && x.shape(4) != 4))
      throw std::invalid_argument(in_quads_ ? "x must be (N, " + std::to_string((in_channels_ + 3) / 4) +
                                                  ", H, W, 4) uint8 (nchw4)"
                                            : "x must be (N, " + std::to_string(in_channels_) +
                                                  ", H, W) uint8, C-contiguous");
    const int n = dim32(x, 0, "x"), h = dim32(x, 2, "x"), w = dim32(x, 3, "x");
    uint8_t none = 0;
    check(spe_qconv_run(conv_.get(), &none, 0, h, w, nullptr, &none));  // checks the size
    int ho, wo;
    spe_qconv_output_size(conv_.get(), h, w, &ho, &wo);
    const auto yshape = shape_of(out_quads_, n, out_channels_, ho, wo);
    return run_into(u8(yshape), x, residual, has_residual_qparams_,
                    [&](const uint8_t* xp, const uint8_t* res, uint8_t* yp) {
                      return spe_qconv_run(conv_.get(), xp, n, h, w, res, yp);
                    });
  }

  // float32 (rows, C) -> float32 (rows, O): spe_qconv_run_linear
  py::array_t<float> run_linear(py::array_t<float, py::array::c_style | py::array::forcecast> x) {
    if (x.ndim() != 2 || x.shape(1) != in_channels_)
      throw std::invalid_argument("x must be (rows, " + std::to_string(in_channels_) + ") float32");
    const int rows = dim32(x, 0, "x");
    py::array_t<float> y(std::vector<py::ssize_t>{rows, out_channels_});
    const float* xp = x.data();
    float* yp = y.mutable_data();
    spe_status s;
    {
      py::gil_scoped_release nogil;
      s = spe_qconv_run_linear(conv_.get(), xp, rows, yp);
    }
    check(s);
    return y;
  }

  // float32 (N, C, H, W) -> float32 (N, O, Ho, Wo): spe_qconv_run_float, post_act(y + residual)
  py::array_t<float> run_float(py::array_t<float, py::array::c_style | py::array::forcecast> x,
                               std::optional<py::array_t<float, py::array::c_style | py::array::forcecast>> residual,
                               const std::string& post_act) {
    if (x.ndim() != 4 || x.shape(1) != in_channels_)
      throw std::invalid_argument("x must be (N, " + std::to_string(in_channels_) + ", H, W) float32");
    const int n = dim32(x, 0, "x"), h = dim32(x, 2, "x"), w = dim32(x, 3, "x");
    float none = 0;
    const spe_activation act = parse_act(post_act);
    check(spe_qconv_run_float(conv_.get(), &none, 0, h, w, nullptr, act, &none));  // layouts and size
    int ho, wo;
    spe_qconv_output_size(conv_.get(), h, w, &ho, &wo);
    if (residual && (residual->ndim() != 4 || residual->shape(0) != n || residual->shape(1) != out_channels_ ||
                     residual->shape(2) != ho || residual->shape(3) != wo))
      throw std::invalid_argument("residual must be the output's shape (N, " + std::to_string(out_channels_) + ", " +
                                  std::to_string(ho) + ", " + std::to_string(wo) + ") float32");
    py::array_t<float> y(std::vector<py::ssize_t>{n, out_channels_, ho, wo});
    const float* xp = x.data();
    const float* rp = residual ? residual->data() : nullptr;
    float* yp = y.mutable_data();
    spe_status s;
    {
      py::gil_scoped_release nogil;
      s = spe_qconv_run_float(conv_.get(), xp, n, h, w, rp, act, yp);
    }
    check(s);
    return y;
  }

  std::pair<int, int> output_size(int h, int w) const {
    int ho, wo;
    spe_qconv_output_size(conv_.get(), h, w, &ho, &wo);
    return {ho, wo};
  }
  int64_t nnz() const { return spe_qconv_nnz(conv_.get()); }
  std::string kernel_name() const { return spe_qconv_kernel_name(conv_.get()); }

 private:
  struct Deleter {
    void operator()(spe_qconv* c) const { spe_qconv_destroy(c); }
  };
  std::unique_ptr<spe_qconv, Deleter> conv_;
  int out_channels_ = 0, in_channels_ = 0;
  bool in_quads_ = false, out_quads_ = false;
  bool has_residual_qparams_ = false;
};

using f32a = py::array_t<float, py::array::c_style>;

// (N, C, H, W) for nchw; (N, ceil(C / 4), H, W, 4) for nchw4, C given (the shape holds 4Q).
std::vector<py::ssize_t> u8_shape(int layout, int n, int c, int h, int w) {
  if (layout == SPE_QLAYOUT_NCHW4) return {n, (c + 3) / 4, h, w, 4};
  return {n, c, h, w};
}

void check_u8(const u8& x, int layout, int c, const char* what) {
  const bool q4 = layout == SPE_QLAYOUT_NCHW4;
  if (x.ndim() != (q4 ? 5 : 4) || (q4 && (x.shape(4) != 4 || x.shape(1) != (c + 3) / 4)) || (!q4 && x.shape(1) != c))
    throw std::invalid_argument(std::string(what) + ": x must be " +
                                (q4 ? "(N, ceil(C / 4), H, W, 4)" : "(N, C, H, W)") + " uint8 with C = " +
                                std::to_string(c));
}

u8 quantize(f32a x, float scale, int zero_point, const std::string& layout) {
  if (x.ndim() != 4) throw std::invalid_argument("quantize: x must be (N, C, H, W) float32");
  const int l = parse_layout(layout);
  const int n = dim32(x, 0, "x"), c = dim32(x, 1, "x"), h = dim32(x, 2, "x"), w = dim32(x, 3, "x");
  u8 y(u8_shape(l, n, c, h, w));
  const float* xp = x.data();
  uint8_t* yp = y.mutable_data();
  spe_status s;
  {
    py::gil_scoped_release nogil;
    s = spe_quantize(xp, n, c, h, w, spe_qparams{scale, zero_point}, l, yp);
  }
  check(s);
  return y;
}

py::array_t<float> dequantize(u8 x, int channels, float scale, int zero_point, const std::string& layout) {
  const int l = parse_layout(layout);
  check_u8(x, l, channels, "dequantize");
  const int n = dim32(x, 0, "x"), h = dim32(x, 2, "x"), w = dim32(x, 3, "x");
  py::array_t<float> y({n, channels, h, w});
  const uint8_t* xp = x.data();
  float* yp = y.mutable_data();
  spe_status s;
  {
    py::gil_scoped_release nogil;
    s = spe_dequantize(xp, n, channels, h, w, spe_qparams{scale, zero_point}, l, yp);
  }
  check(s);
  return y;
}

u8 max_pool2d_u8(u8 x, int channels, std::pair<int, int> k, std::pair<int, int> s, std::pair<int, int> p,
                 const std::string& layout) {
  const int l = parse_layout(layout);
  check_u8(x, l, channels, "max_pool2d_u8");
  const int n = dim32(x, 0, "x"), h = dim32(x, 2, "x"), w = dim32(x, 3, "x");
  int32_t ho = 0, wo = 0;
  check(spe_max_pool2d_output_size(h, w, k.first, k.second, s.first, s.second, p.first, p.second, &ho, &wo));
  u8 y(u8_shape(l, n, channels, ho, wo));
  const uint8_t* xp = x.data();
  uint8_t* yp = y.mutable_data();
  spe_status st;
  {
    py::gil_scoped_release nogil;
    st = spe_max_pool2d_u8(xp, n, channels, h, w, k.first, k.second, s.first, s.second, p.first,
                           p.second, l, yp);
  }
  check(st);
  return y;
}

// The int8 depthwise conv (spe_qdepthwise), NCHW4 in and out.
class QDepthwise {
 public:
  QDepthwise(int channels, std::pair<int, int> kernel, std::pair<int, int> stride,
             std::pair<int, int> padding, std::pair<int, int> dilation, s8 weight, f32 weight_scale,
             std::optional<f32> bias, QP input, QP output, std::optional<QP> residual,
             const std::string& act, const std::string& isa)
      : channels_(channels) {
    const spe_conv_params p{channels, channels, kernel.first, kernel.second, stride.first,
                            stride.second, padding.first, padding.second, dilation.first,
                            dilation.second};
    if (weight.size() != py::ssize_t(channels) * kernel.first * kernel.second)
      throw std::invalid_argument("weight must hold channels x kh x kw int8");
    if (weight_scale.size() != channels || (bias && bias->size() != channels))
      throw std::invalid_argument("weight_scale and bias must have one value per channel");
    spe_qconv_quant q{};
    q.input = qparams(input);
    q.output = qparams(output);
    q.residual = residual ? qparams(*residual) : spe_qparams{1.0f, 0};
    q.weight_scale = weight_scale.data();
    q.bias = bias ? bias->data() : nullptr;
    q.input_layout = q.output_layout = SPE_QLAYOUT_NCHW4;
    spe_qdepthwise* c = nullptr;
    check(spe_qdepthwise_create(&p, weight.data(), &q, parse_act(act), isa.c_str(), &c));
    conv_.reset(c);
    has_residual_qparams_ = bool(residual);
  }

  u8 run(u8 x, std::optional<u8> residual) {
    const int q4 = (channels_ + 3) / 4;
    if (x.ndim() != 5 || x.shape(1) != q4 || x.shape(4) != 4)
      throw std::invalid_argument("x must be (N, " + std::to_string(q4) + ", H, W, 4) uint8 (nchw4)");
    const int n = dim32(x, 0, "x"), h = dim32(x, 2, "x"), w = dim32(x, 3, "x");
    uint8_t none = 0;
    check(spe_qdepthwise_run(conv_.get(), &none, 0, h, w, nullptr, &none));
    int ho, wo;
    spe_qdepthwise_output_size(conv_.get(), h, w, &ho, &wo);
    return run_into(u8({n, q4, ho, wo, 4}), x, residual, has_residual_qparams_,
                    [&](const uint8_t* xp, const uint8_t* res, uint8_t* yp) {
                      return spe_qdepthwise_run(conv_.get(), xp, n, h, w, res, yp);
                    });
  }

  std::pair<int, int> output_size(int h, int w) const {
    int ho, wo;
    spe_qdepthwise_output_size(conv_.get(), h, w, &ho, &wo);
    return {ho, wo};
  }
  std::string kernel_name() const { return spe_qdepthwise_kernel_name(conv_.get()); }

 private:
  struct Deleter {
    void operator()(spe_qdepthwise* c) const { spe_qdepthwise_destroy(c); }
  };
  std::unique_ptr<spe_qdepthwise, Deleter> conv_;
  int channels_ = 0;
  bool has_residual_qparams_ = false;
};

}  // namespace

void bind_qconv(py::module_& m) {
  py::class_<QDepthwise>(m, "QDepthwise",
                         "An int8 depthwise conv (spe.h, 'int8 depthwise'), NCHW4 uint8 in and out.")
      .def(py::init<int, std::pair<int, int>, std::pair<int, int>, std::pair<int, int>,
                    std::pair<int, int>, s8, f32, std::optional<f32>, QP, QP, std::optional<QP>,
                    const std::string&, const std::string&>(),
           py::arg("channels"), py::arg("kernel"), py::arg("stride"), py::arg("padding"),
           py::arg("dilation"), py::arg("weight"), py::arg("weight_scale"),
           py::arg("bias") = py::none(), py::arg("input"), py::arg("output"),
           py::arg("residual") = py::none(), py::arg("act") = "none", py::arg("isa") = "auto")
      .def("run", &QDepthwise::run, py::arg("x"), py::arg("residual") = py::none())
      .def("output_size", &QDepthwise::output_size, py::arg("h"), py::arg("w"))
      .def_property_readonly("kernel_name", &QDepthwise::kernel_name);
  m.def("quantize", &quantize, py::arg("x"), py::arg("scale"), py::arg("zero_point"),
        py::arg("layout") = "nchw",
        "float32 (N, C, H, W) -> uint8 in the layout: clamp(round(x / scale) + zero_point).");
  m.def("dequantize", &dequantize, py::arg("x"), py::arg("channels"), py::arg("scale"),
        py::arg("zero_point"), py::arg("layout") = "nchw", "uint8 -> float32 (N, C, H, W).");
  m.def("max_pool2d_u8", &max_pool2d_u8, py::arg("x"), py::arg("channels"), py::arg("kernel"),
        py::arg("stride"), py::arg("padding"), py::arg("layout") = "nchw",
        "max pooling of uint8 codes (torch's max_pool2d rules), layout kept.");
  py::class_<QConv>(m, "QConv",
                    "An int8 conv / linear layer: u8 activations, s8 weights in column quads, "
                    "requantized to u8 (see kernels/include/spe/spe.h, 'int8 conv').")
      .def(py::init<int, int, std::pair<int, int>, std::pair<int, int>, std::pair<int, int>,
                    std::pair<int, int>, i32, i32, i64, i32, s8, f32, std::optional<f32>, QP, QP,
                    std::optional<QP>, const std::string&, const std::string&,
                    const std::string&, const std::string&>(),
           py::arg("out_channels"), py::arg("in_channels"), py::arg("kernel"), py::arg("stride"),
           py::arg("padding"), py::arg("dilation"), py::arg("group_row0"), py::arg("group_rows"),
           py::arg("group_ptr"), py::arg("entry_quad"), py::arg("values"),
           py::arg("weight_scale"), py::arg("bias") = py::none(), py::arg("input"),
           py::arg("output"), py::arg("residual") = py::none(), py::arg("act") = "none",
           py::arg("isa") = "auto", py::arg("input_layout") = "nchw",
           py::arg("output_layout") = "nchw",
           "input / output / residual: (scale, zero_point) of the u8 tensors; layouts 'nchw' or "
           "'nchw4' ((N, ceil(C / 4), H, W, 4): the kernels' own, no relayout between layers).")
      .def("run", &QConv::run, py::arg("x"), py::arg("residual") = py::none(),
           "x (N, C, H, W) uint8 -> y (N, O, Ho, Wo) uint8 (nchw4: (N, ceil(C / 4), H, W, 4)).")
      .def("run_linear", &QConv::run_linear, py::arg("x"),
           "A linear layer (1x1, nchw4 in and out) on float rows: x float32 (rows, C) -> "
           "float32 (rows, O), quantized, run and dequantized in one call.")
      .def("run_float", &QConv::run_float, py::arg("x"), py::arg("residual") = py::none(),
           py::arg("post_act") = "none",
           "The layer (nchw4 in and out, no u8 residual) on float NCHW: x float32 (N, C, H, W) -> "
           "float32 (N, O, Ho, Wo), quantized, run and dequantized in one call, then "
           "post_act(y + residual) in float.")
      .def("output_size", &QConv::output_size, py::arg("h"), py::arg("w"))
      .def_property_readonly("nnz", &QConv::nnz, "non-zero weights")
      .def_property_readonly("kernel_name", &QConv::kernel_name);
}

}  // namespace spe_py
