// SPDX-License-Identifier: Apache-2.0
// The fused CPU kernels of detail/fused.h against the LibTorch expressions they replace: the same
// bits on random data with denormals, +-Inf, NaN, signed zeros, overflowing and underflowing
// products, lengths that end inside a vector, float32 and float64; and the detail:: helpers fall
// back to LibTorch for what the kernels do not take (strided views, other dtypes, broadcasting,
// autograd, aliasing).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include <diffuse/denoiser.h>
#include <diffuse/detail/fused.h>
#include <diffuse/noise.h>
#include <diffuse/sample.h>
#include <diffuse/samplers/coefficients.h>
#include <diffuse/schedule.h>
#include <diffuse/tensor_ops.h>

namespace {

using diffuse::Tensor;
namespace fused = diffuse::detail::fused;

// The coefficient operand LibTorch gets in the plain expression: a 0-dim float32 tensor for
// float32 data (what the library passes), the double itself for float64 data.
Tensor coef(const Tensor& like, double c) {
  return at::scalar_tensor(c, at::TensorOptions().dtype(like.scalar_type()));
}
// Beyond the float range at::scalar_tensor throws; the plain Scalar expression is the reference.
bool beyond_float(const Tensor& t, double c) {
  return t.scalar_type() == at::kFloat && std::isfinite(c) &&
         std::fabs(c) > static_cast<double>(std::numeric_limits<float>::max());
}
Tensor mul_ref(const Tensor& t, double c) {
  return beyond_float(t, c) ? t * c : at::mul(t, coef(t, c));
}
Tensor div_ref(const Tensor& t, double c) {
  return beyond_float(t, c) ? t / c : at::div(t, coef(t, c));
}

// Same bits, except that any NaN equals any NaN (its payload and sign are not specified).
::testing::AssertionResult same_bits(const Tensor& got, const Tensor& want) {
  if (got.scalar_type() != want.scalar_type() || got.sizes() != want.sizes())
    return ::testing::AssertionFailure() << "dtype or shape differ";
  const Tensor nan_got = at::isnan(got), nan_want = at::isnan(want);
  if (!at::equal(nan_got, nan_want)) return ::testing::AssertionFailure() << "NaN positions differ";
  const auto int_type = got.scalar_type() == at::kFloat ? at::kInt : at::kLong;
  const Tensor g = at::where(nan_got, at::zeros_like(got), got).contiguous().view(int_type);
  const Tensor w = at::where(nan_want, at::zeros_like(want), want).contiguous().view(int_type);
  if (!at::equal(g, w)) {
    const Tensor bad = (g != w).nonzero();
    const int64_t i = bad[0].item<int64_t>();
    return ::testing::AssertionFailure()
           << (bad.size(0)) << " entries differ, first at " << i << ": got "
           << got.reshape(-1)[i].item<double>() << ", want " << want.reshape(-1)[i].item<double>();
  }
  return ::testing::AssertionSuccess();
}

// Random normal data scaled over many magnitudes, with special values planted at fixed places.
Tensor data(int64_t n, at::ScalarType dtype, uint64_t seed) {
  at::Generator g = diffuse::detail::cpu_generator(seed);
  Tensor base = at::randn({n}, g, at::TensorOptions().dtype(at::kDouble));
  Tensor mag = at::randint(-6, 7, {n}, g, at::TensorOptions().dtype(at::kDouble));
  Tensor t = (base * at::pow(10.0, mag)).to(dtype);
  const bool f32 = dtype == at::kFloat;
  const std::vector<double> special = {
      std::numeric_limits<double>::infinity(),
      -std::numeric_limits<double>::infinity(),
      std::numeric_limits<double>::quiet_NaN(),
      0.0,
      -0.0,
      f32 ? 1e-40 : 1e-310,    // denormal
      f32 ? -3e-42 : -4e-320,  // denormal
      f32 ? 3e38 : 1.7e308,    // near the largest finite value
      f32 ? -2e38 : -1e308,
      f32 ? 1.2e-38 : 2.3e-308,  // smallest normals
  };
  for (int64_t i = 0; i < n; ++i) {
    // Roughly every fifth entry is special, at positions that differ between seeds.
    const int64_t k = (i * 7 + static_cast<int64_t>(seed) * 3) % 5;
    if (k == 0) t[i] = special[(i / 5 + seed) % special.size()];
  }
  return t;
}

const std::vector<int64_t> kLengths = {1, 3, 7, 8, 15, 16, 17, 31, 33, 100, 1027, 70001};
const std::vector<double> kCoefs = {0.1,
                                    -1.7,
                                    1.0 / 3.0,
                                    0.0,
                                    -0.0,
                                    1e-30,
                                    -2.5e-39,
                                    7.3e20,
                                    3.4e38,
                                    -3.5e38,
                                    3.5e38,
                                    1e300,
                                    std::numeric_limits<double>::infinity()};
const std::vector<at::ScalarType> kTypes = {at::kFloat, at::kDouble};

// Runs body once per instruction set this build and CPU have (baseline, AVX2, AVX-512), each with
// that set's kernels; the set chosen before is restored.
template <typename F>
void for_each_isa(const F& body) {
  const fused::KernelIsa before = fused::kernel_isa();
  for (fused::KernelIsa isa : fused::supported_kernel_isas()) {
    SCOPED_TRACE(::testing::Message() << "kernels " << fused::kernel_isa_name(isa));
    fused::set_kernel_isa(isa);
    body();
  }
  fused::set_kernel_isa(before);
}

TEST(Fused, TheTestTensorsTakeTheFusedPath) {
  for (auto dt : kTypes) {
    EXPECT_TRUE(fused::can_fuse(data(10, dt, 1)));
    EXPECT_TRUE(fused::can_fuse(data(10, dt, 1).reshape({2, 5}), data(10, dt, 2).reshape({2, 5})));
  }
  EXPECT_EQ(fused::kFusedKernels, true);
}

TEST(Fused, ScaleAndDivideMatchLibTorch) {
  for_each_isa([&] {
    for (auto dt : kTypes) {
      for (int64_t n : kLengths) {
        const Tensor a = data(n, dt, static_cast<uint64_t>(n));
        for (double c : kCoefs) {
          SCOPED_TRACE(::testing::Message() << dt << " n=" << n << " c=" << c);
          EXPECT_TRUE(same_bits(fused::mul(a, c), mul_ref(a, c)));
          EXPECT_TRUE(same_bits(fused::div(a, c), div_ref(a, c)));
          Tensor m = a.clone();
          fused::mul_(m, c);
          EXPECT_TRUE(same_bits(m, mul_ref(a, c)));
          Tensor d = a.clone();
          fused::div_(d, c);
          EXPECT_TRUE(same_bits(d, div_ref(a, c)));
        }
      }
    }
  });
}

TEST(Fused, TwoTermKernelsMatchLibTorch) {
  for_each_isa([&] {
    for (auto dt : kTypes) {
      for (int64_t n : kLengths) {
        const Tensor a = data(n, dt, static_cast<uint64_t>(n) + 1);
        const Tensor b = data(n, dt, static_cast<uint64_t>(n) + 2);
        for (size_t i = 0; i < kCoefs.size(); ++i) {
          const double ca = kCoefs[i], cb = kCoefs[(i * 3 + 1) % kCoefs.size()];
          const double d = kCoefs[(i * 7 + 2) % kCoefs.size()];
          SCOPED_TRACE(::testing::Message()
                       << dt << " n=" << n << " ca=" << ca << " cb=" << cb << " d=" << d);
          EXPECT_TRUE(same_bits(fused::lincomb(a, ca, b, cb), mul_ref(a, ca) + mul_ref(b, cb)));
          EXPECT_TRUE(same_bits(fused::lincomb_div(a, ca, b, cb, d),
                                div_ref(mul_ref(a, ca) + mul_ref(b, cb), d)));
          EXPECT_TRUE(same_bits(fused::solve(a, b, cb, d), div_ref(a - mul_ref(b, cb), d)));
          Tensor x = a.clone();
          fused::add_scaled_(x, b, cb, false);
          EXPECT_TRUE(same_bits(x, a + mul_ref(b, cb)));
          x = a.clone();
          fused::add_scaled_(x, b, cb, true);
          EXPECT_TRUE(same_bits(x, a - mul_ref(b, cb)));
          EXPECT_TRUE(same_bits(fused::diff_scaled(a, b, ca, false), mul_ref(a - b, ca)));
          EXPECT_TRUE(same_bits(fused::diff_scaled(a, b, d, true), div_ref(a - b, d)));
        }
      }
    }
  });
}

TEST(Fused, NonFiniteFlagFindsEveryNanAndInf) {
  for_each_isa([&] {
    for (auto dt : kTypes) {
      for (int64_t n : {1, 9, 17, 1000}) {
        Tensor a = at::randn({n}, at::TensorOptions().dtype(dt)) * 1e30;
        a[0] = dt == at::kFloat ? 3.4e38 : 1.7e308;  // huge but finite
        if (n > 1) a[1] = dt == at::kFloat ? 1e-45 : 5e-324;
        EXPECT_FALSE(fused::any_nonfinite(a)) << n;
        for (double bad :
             {std::numeric_limits<double>::infinity(), -std::numeric_limits<double>::infinity(),
              std::numeric_limits<double>::quiet_NaN()}) {
          for (int64_t at_i : {int64_t{0}, n / 2, n - 1}) {
            Tensor b = a.clone();
            b[at_i] = bad;
            EXPECT_TRUE(fused::any_nonfinite(b)) << n << " " << at_i << " " << bad;
            EXPECT_EQ(fused::any_nonfinite(b), !at::isfinite(b).all().item<bool>());
          }
        }
      }
    }
  });
}

// The detail:: helpers the samplers call: fused where possible, LibTorch otherwise, the same
// values either way.
TEST(Fused, EveryInstructionSetIsListedAndTheBestIsTheDefault) {
  const auto isas = fused::supported_kernel_isas();
  ASSERT_FALSE(isas.empty());
  EXPECT_EQ(isas.front(), fused::KernelIsa::kBaseline);
  // Without DIFFUSE_CPU_ISA the first choice is the best set the CPU has (the tests run without
  // it).
  if (std::getenv("DIFFUSE_CPU_ISA") == nullptr) {
    EXPECT_EQ(fused::kernel_isa(), isas.back()) << fused::kernel_isa_name(fused::kernel_isa());
  }
  EXPECT_STREQ(fused::kernel_isa_name(fused::KernelIsa::kAvx512), "avx512");
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
  if (__builtin_cpu_supports("avx512f")) {
    EXPECT_EQ(isas.back(), fused::KernelIsa::kAvx512);
  }
#endif
}

TEST(Fused, ConversionsWithTheFlagMatchThePlainKernelsAndFindEveryNanAndInf) {
  for_each_isa([&] {
    for (auto dt : kTypes) {
      for (int64_t n : kLengths) {
        const Tensor a = data(n, dt, static_cast<uint64_t>(n) + 5);
        // u finite, then with one NaN/Inf at the start, middle and end
        Tensor u = at::randn({n}, at::TensorOptions().dtype(dt));
        std::vector<std::pair<Tensor, bool>> cases = {{u, false}};
        for (int64_t i : {int64_t{0}, n / 2, n - 1}) {
          Tensor b = u.clone();
          b[i] = i % 2 ? std::numeric_limits<double>::quiet_NaN()
                       : -std::numeric_limits<double>::infinity();
          cases.emplace_back(b, true);
        }
        // planted specials (NaN/Inf among them for the longer lengths): the flag must match
        cases.emplace_back(data(n, dt, static_cast<uint64_t>(n) + 6), n >= 100);
        for (const auto& [b, bad] : cases) {
          SCOPED_TRACE(::testing::Message() << dt << " n=" << n << " bad=" << bad);
          const bool want_bad = !at::isfinite(b).all().item<bool>();
          if (bad) {
            ASSERT_TRUE(want_bad);
          }
          bool flag = !want_bad;
          EXPECT_TRUE(same_bits(fused::solve_checked(a, b, 0.3, -1.7, &flag),
                                fused::solve(a, b, 0.3, -1.7)));
          EXPECT_EQ(flag, want_bad);
          flag = !want_bad;
          EXPECT_TRUE(same_bits(fused::lincomb_checked(a, 0.9, b, 1.0 / 3.0, &flag),
                                fused::lincomb(a, 0.9, b, 1.0 / 3.0)));
          EXPECT_EQ(flag, want_bad);
          flag = !want_bad;
          EXPECT_TRUE(same_bits(fused::lincomb_div_checked(a, 0.9, b, -2.5, 1.3, &flag),
                                fused::lincomb_div(a, 0.9, b, -2.5, 1.3)));
          EXPECT_EQ(flag, want_bad);
        }
      }
    }
  });
}

TEST(Fused, ConversionWithTheUpdateMatchesSolveThenLincomb) {
  for_each_isa([&] {
    for (auto dt : kTypes) {
      for (int64_t n : kLengths) {
        const Tensor x = data(n, dt, static_cast<uint64_t>(n) + 7);
        Tensor u = data(n, dt, static_cast<uint64_t>(n) + 8);
        for (size_t i = 0; i < kCoefs.size(); i += 2) {
          const double cu = kCoefs[i], d = kCoefs[(i * 5 + 3) % kCoefs.size()];
          const double ca = kCoefs[(i * 3 + 1) % kCoefs.size()],
                       cb = kCoefs[(i + 4) % kCoefs.size()];
          SCOPED_TRACE(::testing::Message() << dt << " n=" << n << " cu=" << cu << " d=" << d
                                            << " ca=" << ca << " cb=" << cb);
          const Tensor x0 = fused::solve(x, u, cu, d);
          for (bool with_x : {false, true}) {
            Tensor update;
            bool flag = false;
            EXPECT_TRUE(same_bits(
                fused::solve_update_checked(x, u, cu, d, with_x, ca, cb, &update, &flag), x0));
            EXPECT_TRUE(same_bits(
                update, with_x ? fused::lincomb(x, ca, x0, cb) : fused::lincomb(x0, ca, u, cb)));
            EXPECT_EQ(flag, !at::isfinite(u).all().item<bool>());
          }
          // With DPM-Solver++ 2M's second-order term: the bits of lincomb, diff_mul, add_scaled.
          const Tensor m = data(n, dt, static_cast<uint64_t>(n) + 9);
          const double c1 = kCoefs[(i + 2) % kCoefs.size()],
                       c2 = kCoefs[(i * 7 + 5) % kCoefs.size()];
          Tensor update;
          bool flag = false;
          EXPECT_TRUE(same_bits(
              fused::solve_update_checked(x, u, cu, d, true, ca, cb, &update, &flag, &m, c1, c2),
              x0));
          Tensor want = fused::lincomb(x, ca, x0, cb);
          fused::add_scaled_(want, fused::diff_scaled(x0, m, c1, false), c2, false);
          EXPECT_TRUE(same_bits(update, want)) << "c1=" << c1 << " c2=" << c2;
          EXPECT_EQ(flag, !at::isfinite(u).all().item<bool>());
        }
      }
    }
  });
}

// DPM-Solver++ 3M's third-order terms in one pass (add_dpm3_terms_): the bits of LibTorch's
// expressions e0 = (m0 - m1) c0, e1 = (m1 - m2) c1, x + (e0 cw1 - e1 cw) ca, then - (e0 - e1) cb;
// and the same through the fallback when an operand is a strided view.
TEST(Fused, DpmThirdOrderTermsMatchLibTorch) {
  const size_t k = kCoefs.size();
  auto reference = [](const Tensor& x, const Tensor& m0, const Tensor& m1, const Tensor& m2,
                      const std::vector<double>& c) {
    const Tensor e0 = mul_ref(m0 - m1, c[0]), e1 = mul_ref(m1 - m2, c[1]);
    const Tensor y = x + mul_ref(mul_ref(e0, c[2]) - mul_ref(e1, c[3]), c[4]);
    return y - mul_ref(e0 - e1, c[5]);
  };
  for_each_isa([&] {
    for (auto dt : kTypes) {
      for (int64_t n : kLengths) {
        const auto s = static_cast<uint64_t>(n);
        const Tensor x = data(n, dt, s + 11), m0 = data(n, dt, s + 12), m1 = data(n, dt, s + 13),
                     m2 = data(n, dt, s + 14);
        for (size_t i = 0; i < k; i += 2) {
          const std::vector<double> c = {kCoefs[i],
                                         kCoefs[(i * 5 + 1) % k],
                                         kCoefs[(i + 2) % k],
                                         kCoefs[(i * 3 + 4) % k],
                                         kCoefs[(i * 7 + 5) % k],
                                         kCoefs[(i + 6) % k]};
          SCOPED_TRACE(::testing::Message() << dt << " n=" << n << " i=" << i);
          Tensor got = x.clone();
          diffuse::add_dpm3_terms_(got, m0, m1, m2, c[0], c[1], c[2], c[3], c[4], c[5]);
          EXPECT_TRUE(same_bits(got, reference(x, m0, m1, m2, c)));
        }
      }
    }
  });
  // Strided operands: not fused, the same bits.
  const Tensor x = data(64, at::kFloat, 21).reshape({8, 8}), m0 = data(64, at::kFloat, 22),
               m1 = data(64, at::kFloat, 23).reshape({8, 8}), m2 = data(64, at::kFloat, 24);
  const Tensor m0t = m0.reshape({8, 8}).t(), m2s = m2.reshape({8, 8}).t();
  EXPECT_FALSE(fused::can_fuse(x, m0t));
  const std::vector<double> c = {0.7, -1.3, 1.25, 0.25, 0.125, -0.0625};
  Tensor got = x.clone();
  diffuse::add_dpm3_terms_(got, m0t, m1, m2s, c[0], c[1], c[2], c[3], c[4], c[5]);
  EXPECT_TRUE(same_bits(got, reference(x, m0t, m1, m2s, c)));
}

// The samplers that ask the model function for their update (StepContext::update: DDIM, Euler,
// DPM-Solver++ of every order, 2M's second-order term included, DDPM, Euler ancestral) give the
// same samples bit for bit whether the update is computed in the conversion pass or by the step
// itself, in float32 and float64, with and without noise.
TEST(Fused, SamplersGiveTheSameBitsWithTheUpdateInTheConversionPass) {
  const auto schedule = diffuse::make_schedule("discrete");
  const diffuse::Denoiser denoiser(
      [](const Tensor& x, const Tensor& t, const diffuse::Conditioning&) {
        return x * 0.3 + at::sin(x) * 0.1;
      });
  for (const char* spec : {"ddim", "ddim:eta=1", "euler", "dpm_solver_pp:order=1", "dpmpp_2m",
                           "dpm_solver_pp:order=2,solver_type=heun", "dpmpp_3m",
                           "euler:s_churn=0.5", "ddpm", "euler_ancestral"}) {
    for (auto dt : kTypes) {
      SCOPED_TRACE(::testing::Message() << spec << " " << dt);
      const auto sampler = diffuse::sampler_from_spec(spec);
      diffuse::SampleOptions o;
      o.num_steps = 12;
      const diffuse::TimeGrid grid = diffuse::make_grid(*schedule, o);
      const diffuse::ModelFn inner = diffuse::make_model_fn(denoiser, o, {});
      int taken = 0;
      const diffuse::ModelFn asking = [&](const Tensor& x, const diffuse::TimePoint& at,
                                          const diffuse::StepContext& st) {
        diffuse::Prediction p = inner(x, at, st);
        taken += p.update.defined() ? 1 : 0;
        return p;
      };
      const diffuse::ModelFn not_asking = [&](const Tensor& x, const diffuse::TimePoint& at,
                                              const diffuse::StepContext& st) {
        diffuse::StepContext plain = st;
        plain.update = nullptr;
        return inner(x, at, plain);
      };
      const Tensor x_T = at::randn({2, 3, 4, 4}, at::TensorOptions().dtype(dt)) * grid[0].sigma;
      diffuse::SampleContext c1, c2;
      auto n1 = diffuse::make_per_sample_noise(9), n2 = diffuse::make_per_sample_noise(9);
      c1.noise = n1.get();
      c2.noise = n2.get();
      c1.schedule = c2.schedule = schedule.get();
      const Tensor fused_run = sampler->sample(asking, x_T, grid, c1);
      const Tensor plain_run = sampler->sample(not_asking, x_T, grid, c2);
      EXPECT_TRUE(same_bits(fused_run, plain_run));
      // Every step but a churned one asked and got its update (Euler's churned steps do not ask).
      if (std::string(spec).find("churn") == std::string::npos) {
        EXPECT_GE(taken, 11);
      }
    }
  }
}

TEST(Fused, DenoiserConvertCheckedGivesConvertsBitsAndTheOutputsFlag) {
  using diffuse::Parameterization;
  const diffuse::TimePoint at{0.4, 0.8, 0.6};  // t, alpha, sigma
  for (auto dt : kTypes) {
    const Tensor x = at::randn({2, 3, 5}, at::TensorOptions().dtype(dt));
    Tensor bad = at::randn({2, 3, 5}, at::TensorOptions().dtype(dt));
    bad[1][2][4] = std::numeric_limits<double>::quiet_NaN();
    for (auto type : {Parameterization::kEpsilon, Parameterization::kSample,
                      Parameterization::kVelocity, Parameterization::kFlow}) {
      for (bool edm : {false, true}) {
        if (edm && (type == Parameterization::kFlow || type == Parameterization::kSample)) continue;
        diffuse::DenoiserOptions o;
        o.prediction_type = type;
        o.edm_preconditioning = edm;
        const diffuse::Denoiser d(
            [](const Tensor& v, const Tensor&, const diffuse::Conditioning&) { return v; }, o);
        for (const Tensor& out : {at::randn({2, 3, 5}, at::TensorOptions().dtype(dt)), bad}) {
          SCOPED_TRACE(::testing::Message()
                       << dt << " type " << static_cast<int>(type) << " edm " << edm);
          int8_t flag = 7;
          const diffuse::Prediction got = d.convert_checked(out, x, at, &flag);
          const diffuse::Prediction want = d.convert(out, x, at);
          EXPECT_TRUE(same_bits(got.x0, want.x0));
          EXPECT_TRUE(same_bits(got.eps, want.eps));
          EXPECT_EQ(flag, at::isfinite(out).all().item<bool>() ? 0 : 1);
        }
        // Not fusable (a strided view): not read, -1.
        int8_t flag = 7;
        d.convert_checked(bad.transpose(1, 2).contiguous().transpose(1, 2), x, at, &flag);
        EXPECT_EQ(flag, -1);
      }
    }
  }
}

TEST(Fused, HelpersFallBackForWhatTheKernelsDoNotTake) {
  namespace d = diffuse;
  const Tensor a = data(64, at::kFloat, 5).reshape({8, 8});
  const Tensor b = data(64, at::kFloat, 6).reshape({8, 8});

  // Strided views (a transpose, every second column) are not fused but give the same values.
  const Tensor at_ = a.t(), bt = b.t();
  EXPECT_FALSE(fused::can_fuse(at_));
  EXPECT_TRUE(same_bits(d::lincomb(at_, 0.3, bt, -1.1), mul_ref(at_, 0.3) + mul_ref(bt, -1.1)));
  const Tensor as = a.slice(1, 0, 8, 2), bs = b.slice(1, 0, 8, 2);
  EXPECT_FALSE(fused::can_fuse(as));
  EXPECT_TRUE(same_bits(d::solve(as, bs, 0.7, 0.9), div_ref(as - mul_ref(bs, 0.7), 0.9)));
  EXPECT_TRUE(same_bits(d::scaled(as, 0.3), mul_ref(as, 0.3)));
  // A fused operand next to a strided one: the pair is not fused.
  EXPECT_FALSE(fused::can_fuse(a, bt));
  EXPECT_TRUE(same_bits(d::diff_scaled(a, bt, 0.25), mul_ref(a - bt, 0.25)));

  // Other dtypes: half keeps LibTorch's Scalar arithmetic.
  const Tensor h = at::randn({8, 8}).to(at::kHalf);
  EXPECT_FALSE(fused::can_fuse(h));
  EXPECT_TRUE(at::equal(d::scaled(h, 0.1), h * 0.1));
  EXPECT_TRUE(at::equal(d::divided(h, 0.3), h / 0.3));

  // Mixed dtypes and broadcasting shapes go to LibTorch (type promotion, broadcasting).
  const Tensor a64 = a.to(at::kDouble);
  EXPECT_FALSE(fused::can_fuse(a64, b));
  EXPECT_TRUE(same_bits(d::lincomb(a64, 0.3, b, 0.6), mul_ref(a64, 0.3) + mul_ref(b, 0.6)));
  const Tensor row = b[0];
  EXPECT_FALSE(fused::can_fuse(a, row));
  EXPECT_TRUE(same_bits(d::lincomb(a, 0.3, row, 0.6), mul_ref(a, 0.3) + mul_ref(row, 0.6)));
  EXPECT_TRUE(same_bits(d::solve(a, row, 0.3, 0.6), div_ref(a - mul_ref(row, 0.3), 0.6)));

  // A negated view holds the un-negated numbers in memory: not fused, and negated correctly.
  const Tensor neg = at::_neg_view(a);
  EXPECT_FALSE(fused::can_fuse(neg));
  EXPECT_TRUE(same_bits(d::scaled(neg, 0.5), mul_ref(-a, 0.5)));

  // Aliasing: x += x * c reads what it writes, so it is not fused.
  Tensor x = a.clone();
  Tensor want = x + mul_ref(x, 0.5);
  d::add_scaled_(x, x, 0.5);
  EXPECT_TRUE(same_bits(x, want));
  Tensor y = a.clone();
  const Tensor yv = y.view({64});
  d::sub_scaled_(y, yv.view({8, 8}), 0.5);
  EXPECT_TRUE(same_bits(y, a - mul_ref(a, 0.5)));
}

TEST(Fused, AutogradStillFlowsThroughTheFallback) {
  namespace d = diffuse;
  const Tensor a = at::randn({3, 5}).requires_grad_(true);
  const Tensor b = at::randn({3, 5});
  EXPECT_FALSE(fused::can_fuse(a));
  EXPECT_FALSE(fused::can_fuse(b, a));
  Tensor out = d::lincomb(a, 0.5, b, 2.0);
  ASSERT_TRUE(out.requires_grad());
  out.sum().backward();
  EXPECT_TRUE(at::allclose(a.grad(), at::full({3, 5}, 0.5)));
  const Tensor s = d::solve(b, a, 0.25, 2.0);
  EXPECT_TRUE(s.requires_grad());
}

TEST(Fused, HelpersKeepShapesAndFreshStorage) {
  namespace d = diffuse;
  const Tensor a = data(2 * 3 * 5, at::kDouble, 9).reshape({2, 3, 5});
  const Tensor b = data(2 * 3 * 5, at::kDouble, 10).reshape({2, 3, 5});
  for (const Tensor& r : {d::scaled(a, 2.0), d::divided(a, 3.0), d::lincomb(a, 1.0, b, 2.0),
                          d::solve(a, b, 0.5, 0.25), d::lincomb_divided(a, 1.0, b, 1.0, 2.0),
                          d::diff_scaled(a, b, 3.0), d::diff_divided(a, b, 3.0)}) {
    EXPECT_EQ(r.sizes(), a.sizes());
    EXPECT_FALSE(r.is_alias_of(a));
    EXPECT_FALSE(r.is_alias_of(b));
    EXPECT_TRUE(r.is_contiguous());
  }
  // The inputs are left as they were.
  EXPECT_TRUE(same_bits(a, data(2 * 3 * 5, at::kDouble, 9).reshape({2, 3, 5})));
}

}  // namespace
