// The activation epilogues (isa/activation.h) of the kernel test runner (kernel_tests.cc),
// element by element against double precision, on every ISA this CPU runs: the SpMM crop's
// act_row and a 3x3 depthwise conv with the identity weight (its flat or row method, the
// activation in registers or in a second pass), over floats spread across [-128, 128] and the
// edge inputs. The bounds are the ones isa/activation.h states: SiLU 5 ulp for x >= -20 and
// 8 ulp below, hardswish 3 ulp, GELU 1e-6 |x| + 1e-37, GELU-tanh 8 ulp for x >= -1 and
// 1e-6 |x| + 1e-37 below, results under 1e-35 within 1e-35; exp(-x) overflows to inf as
// in float (x < -88.72: silu -0.0), silu(-inf) is NaN, NaN stays NaN (torch's behaviour).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "isa/scalar.h"
#include "isa/activation.h"
#include "runner.h"
#include "spe/spe.h"
#include "spmm/spmm.h"

namespace spe_test {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// v as float math has it past FLT_MAX: +-inf once it rounds past
double overflowed(double v) {
  return std::fabs(v) >= 3.4028235677973366e38 ? std::copysign(INFINITY, v) : v;
}

double exp_neg(double x) { return overflowed(std::exp(-x)); }

double reference(double x, int act) {
  // x * 6 overflows for x > 5.7e37 (torch: inf too)
  if (act == SPE_ACT_HARDSWISH) return overflowed(x * std::min(std::max(x + 3.0, 0.0), 6.0)) / 6.0;
  if (act == SPE_ACT_SILU) return x / (1.0 + exp_neg(x));
  if (act == SPE_ACT_GELU) return 0.5 * x * std::erfc(-x / std::sqrt(2.0));
  if (act == SPE_ACT_GELU_TANH)  // x / (1 + exp(-2u)): the form that keeps x < 0 precise
    return x / (1.0 + exp_neg(2.0 * 0.79788456080286536 * (x + 0.044715 * x * x * x)));
  return 1.0 / (1.0 + exp_neg(x));  // sigmoid (no epilogue of its own: the scalar traits)
}

// The bound on |got - ref| in units of ref's float ulp.
double bound_ulps(double x, int act) {
  if (act == SPE_ACT_HARDSWISH) return 3;
  if (act == SPE_ACT_GELU_TANH) return 8;
  return x >= -20 ? 5 : 8;
}

// GELU's bound is absolute (isa/activation.h): 1e-6 |x| + 1e-37; so is GELU-tanh's below -1,
// where its exponent's argument (|2u| > 2.2) carries the rounding of x^3 into exp.
bool absolute_bound(double x, int act, double err) {
  if (act == SPE_ACT_GELU || (act == SPE_ACT_GELU_TANH && x < -1))
    return err <= 1e-6 * std::fabs(x) + 1e-37;
  return false;
}

// "" or what is wrong with got = act(x).
std::string check_one(float x, float got, int act) {
  const double ref = reference(x, act);
  const bool ok_nan = std::isnan(ref) == std::isnan(got);
  if (std::isnan(ref) || std::isnan(got) || std::isinf(ref)) {
    if (ok_nan && (std::isnan(ref) || double(got) == ref)) return "";
  } else if (act == SPE_ACT_GELU && std::isfinite(got)) {   // absolute, tiny results too
    if (absolute_bound(x, act, std::fabs(got - ref)) &&
        (ref != 0.0 || std::signbit(got) == std::signbit(ref)))
      return "";
  } else if (ref == 0.0 || std::fabs(ref) < 1e-35) {
    if (std::fabs(got - ref) <= 1e-35 && (ref != 0.0 || std::signbit(got) == std::signbit(ref)))
      return "";
  } else {
    int e;
    std::frexp(ref, &e);
    const double ulps = std::fabs(got - ref) / std::ldexp(1.0, e - 24);
    if (act == SPE_ACT_GELU || (act == SPE_ACT_GELU_TANH && x < -1)) {
      if (absolute_bound(x, act, std::fabs(got - ref))) return "";
    } else if (ulps <= bound_ulps(x, act)) {
      return "";
    }
    return fmt("act %d(%.9g) = %.9g, reference %.9g: %.2f ulp", act, x, got, ref, ulps);
  }
  return fmt("act %d(%.9g) = %.9g, reference %.9g", act, x, got, ref);
}

std::string check_all(const std::vector<float>& x, const float* y, int act) {
  for (size_t i = 0; i < x.size(); ++i)
    if (std::string err = check_one(x[i], y[i], act); !err.empty()) return err;
  return "";
}

// Floats spread over [-128, 128] (every step-th bit pattern of each sign), then the edges.
std::vector<float> inputs(bool quick) {
  std::vector<float> xs;
  const uint32_t step = quick ? 16411 : 4099;  // ~0.14M or ~0.55M floats
  for (uint32_t b = 0; b < 0x43000000u; b += step)
    for (uint32_t sign : {0u, 0x80000000u}) {
      float f;
      const uint32_t bits = b | sign;
      std::memcpy(&f, &bits, sizeof f);
      xs.push_back(f);
    }
  return xs;
}

const float kEdges[] = {-0.0f, 0.0f, 1e-45f, -1e-45f, 1e-30f, -1e-30f, -3.0f, 3.0f,
                        -2.9999998f, 87.0f, 88.0f, -88.0f, -88.5f, -88.7228317f, -88.7228394f,
                        -89.0f, -100.0f, 100.0f, 1e30f, -1e30f, 3e38f, -3e38f, kInf, -kInf,
                        std::numeric_limits<float>::quiet_NaN()};

std::string act_row_case(const spe::SpmmKernels* k, const std::vector<float>& xs, int act) {
  std::vector<float> y(xs.size() + 1, -1.0f);
  // odd lengths: whole vectors and a masked tail; the float past the end stays untouched
  k->act_row(y.data(), xs.data(), nullptr, int(xs.size()), act);
  if (y.back() != -1.0f) return "act_row wrote past its row";
  return check_all(xs, y.data(), act);
}

// A residual is added before the activation: act(float(s + res)).
std::string act_row_residual_case(const spe::SpmmKernels* k, const std::vector<float>& xs,
                                  int act) {
  const size_t n = xs.size();
  std::vector<float> s(n), res(n), sum(n), y(n);
  for (size_t i = 0; i < n; ++i) {
    s[i] = xs[i] * 0.75f;
    res[i] = xs[n - 1 - i] * 0.25f;
    sum[i] = s[i] + res[i];
  }
  k->act_row(y.data(), s.data(), res.data(), int(n), act);
  return check_all(sum, y.data(), act);
}

// The inputs as planes of a 3x3 identity depthwise conv (the centre tap 1, no bias).
std::string depthwise_case(const char* isa, const std::vector<float>& xs, int act) {
  const int h = 29, w = 37, plane = h * w, c = int(xs.size() / plane);
  std::vector<float> wt(size_t(c) * 9, 0.0f);
  for (int ch = 0; ch < c; ++ch) wt[size_t(ch) * 9 + 4] = 1.0f;
  const spe_conv_params p = {c, c, 3, 3, 1, 1, 1, 1, 1, 1};
  spe_depthwise_conv* conv = nullptr;
  if (spe_depthwise_conv_create(&p, wt.data(), nullptr, spe_activation(act), isa, &conv) != SPE_OK)
    return fmt("create: %s", spe_last_error());
  std::vector<float> x(xs.begin(), xs.begin() + size_t(c) * plane);
  std::vector<float> y(x.size());
  const spe_status st = spe_depthwise_conv_run(conv, x.data(), 1, h, w, nullptr, y.data());
  spe_depthwise_conv_destroy(conv);
  if (st != SPE_OK) return fmt("run: %s", spe_last_error());
  for (float& v : x) v += 0.0f;  // the conv's sum: zero taps turn -0.0 into +0.0
  return check_all(x, y.data(), act);
}

// sigmoid, which no kernel epilogue offers yet, on the scalar traits
std::string sigmoid_case(const std::vector<float>& xs) {
  std::vector<float> y(xs.size());
  for (size_t i = 0; i < xs.size(); ++i) y[i] = spe::ExtraActivation<spe::Scalar>::sigmoid(xs[i]);
  return check_all(xs, y.data(), -1);
}

}  // namespace

size_t activation_isa_sweep(const std::string& isa, bool quick) {
  spe::Isa id;
  if (!spe::parse_isa(isa.c_str(), &id) || !spe::spmm_kernels(id)) {
    record(false, "[" + isa + "] activation", "no SpMM table for the ISA");
    return 1;
  }
  const spe::SpmmKernels* k = spe::spmm_kernels(id);
  std::vector<float> xs = inputs(quick);
  const std::vector<float> edges(std::begin(kEdges), std::end(kEdges));
  size_t n = 0;
  for (int act : {SPE_ACT_SILU, SPE_ACT_HARDSWISH, SPE_ACT_GELU, SPE_ACT_GELU_TANH}) {
    const std::string a = act == SPE_ACT_SILU        ? "silu"
                          : act == SPE_ACT_HARDSWISH ? "hardswish"
                          : act == SPE_ACT_GELU      ? "gelu"
                                                     : "gelu_tanh";
    auto check = [&](const std::string& what, const std::string& err) {
      const std::string name = "[" + isa + "] activation " + a + " " + what;
      set_current(name);
      record(err.empty(), name, err);
      ++n;
    };
    check("act_row edges", act_row_case(k, edges, act));
    check("act_row sweep", act_row_case(k, xs, act));
    check("act_row residual", act_row_residual_case(k, xs, act));
    check("depthwise identity", depthwise_case(isa.c_str(), xs, act));
  }
  if (isa == "scalar") {
    xs.insert(xs.end(), edges.begin(), edges.end());
    const std::string name = "[scalar] activation sigmoid";
    set_current(name);
    const std::string err = sigmoid_case(xs);
    record(err.empty(), name, err);
    ++n;
  }
  return n;
}

}  // namespace spe_test
