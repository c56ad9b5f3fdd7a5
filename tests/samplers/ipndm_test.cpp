// SPDX-License-Identifier: Apache-2.0
// iPNDM (samplers/ipndm.h): its variable-step rule is lms's variable-step Adams-Bashforth (the
// same integrals, computed independently), its constant-step rule is lms on uniform sigma steps,
// and the step onto sigma = 0 lands on x0. Orders on the testbed: convergence_test.cpp.
#include <diffuse/samplers/ipndm.h>
#include <diffuse/samplers/lms.h>

#include "dpm_fixtures.h"
#include "k_sampler_fixtures.h"

namespace diffuse {
namespace {

Tensor run(const std::string& name, const Config& c, const TimeGrid& grid) {
  auto sched = make_schedule("discrete");
  const Denoiser d = testing::make_denoiser(testing::nonlinear_network(), "epsilon");
  SampleContext ctx;
  ctx.schedule = sched.get();
  return make_sampler(name, c)->sample(testing::model_fn(d),
                                       testing::dummy_sample_deter(at::kDouble) * 2 - 1, grid, ctx);
}

TEST(IpndmSampler, VariableStepIsLmsAndConstantStepIsLmsOnUniformSteps) {
  auto sched = make_schedule("discrete");
  // Karras steps (ratios vary), ending on sigma_min: every step is a multistep one.
  const TimeGrid karras = make_spacing("karras", {{"final", "min"}})->grid(*sched, 12);
  for (const char* order : {"1", "2", "3", "4"}) {
    SCOPED_TRACE(std::string("order ") + order);
    testing::ExpectTensorNear(run("ipndm_v", {{"order", order}}, karras),
                              run("lms", {{"order", order}}, karras), 1e-12, 1e-11, "ipndm_v");
  }
  // Uniform sigma_ve steps 10, 9, ..., 1: the constant-step coefficients are exact there.
  std::string sigmas;
  for (int s = 10; s >= 1; --s) sigmas += std::to_string(s) + (s > 1 ? ";" : "");
  const TimeGrid uniform = make_spacing("sigmas", {{"sigmas", sigmas}})->grid(*sched, 9);
  for (const char* order : {"2", "3", "4"}) {
    SCOPED_TRACE(std::string("order ") + order);
    testing::ExpectTensorNear(run("ipndm", {{"order", order}}, uniform),
                              run("lms", {{"order", order}}, uniform), 1e-12, 1e-11, "ipndm");
  }
  // ... and not on varying steps.
  EXPECT_FALSE(at::allclose(run("ipndm", {}, karras), run("lms", {}, karras), 1e-6, 1e-6));
  // The weights of one step sum to 1 (exact for a constant slope).
  const IpndmSampler v(IpndmOptions().variable_step(true));
  for (size_t k = 1; k <= 4; ++k) {
    const std::vector<double> nodes{5.0, 7.5, 11.0, 17.0};
    double sum = 0;
    for (double w : v.weights({nodes.begin(), nodes.begin() + static_cast<long>(k)}, 3.0)) sum += w;
    EXPECT_NEAR(sum, 1.0, 1e-14) << k;
  }
}

TEST(IpndmSampler, StepOntoZeroIsTheDenoisedSampleAndErrors) {
  auto sched = make_schedule("discrete");
  const TimeGrid grid = make_spacing("karras")->grid(*sched, 1);  // sigma_max -> 0
  const Denoiser d = testing::make_denoiser(testing::nonlinear_network(), "epsilon");
  const Tensor x = testing::dummy_sample_deter(at::kDouble);
  testing::ExpectTensorNear(run("ipndm", {}, grid),
                            d(testing::dummy_sample_deter(at::kDouble) * 2 - 1, grid[0], {}).x0, 0,
                            0, "denoising step");
  (void)x;
  for (const char* bad : {"0", "5"})
    testing::expect_sampler_error("ipndm", {{"order", bad}}, std::string("got ") + bad);
  EXPECT_EQ(make_sampler("ipndm_v")->to_config(),
            (Config{{"order", "4"}, {"variable_step", "true"}}));
}

}  // namespace
}  // namespace diffuse
