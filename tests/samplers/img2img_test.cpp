// SPDX-License-Identifier: Apache-2.0
// img2img and inpainting in sample() (SampleOptions::init_image, strength, mask): diffusers'
// strength rule (the last floor(n strength) steps from alpha x0 + sigma noise), the blending of
// the kept region, RePaint's resampling jumps (their schedule, and on the Gaussian-mixture
// testbed against the exact conditional distribution), and the errors.
#include "test_util.h"

#include <diffuse/gaussian_mixture.h>
#include <diffuse/metrics.h>

#include <cmath>
#include <map>
#include <vector>

namespace diffuse {
namespace {

using testing::ExpectTensorNear;
using testing::RecordingModel;

Tensor smooth_eps(const Tensor& x, const Tensor& t) {
  return x.tanh() * 0.5 + (t.view({-1, 1, 1}) / 700).sin() * 0.1;
}

Network smooth_eps_network() {
  return [](const Tensor& x, const Tensor& t, const Conditioning&) { return smooth_eps(x, t); };
}

struct Img2ImgFixture {
  std::unique_ptr<NoiseSchedule> schedule = make_schedule("discrete");
  Tensor noise = randn({2, 3, 4}, 3, at::kDouble);
  Tensor init = at::linspace(-1, 1, 24, at::kDouble).reshape({2, 3, 4});
  SampleOptions options(double strength) const {
    SampleOptions o;
    o.num_steps = 10;
    o.spacing = make_spacing("leading");
    o.init_image = init;
    o.strength = strength;
    return o;
  }
};

// diffusers' StableDiffusionImg2ImgPipeline: init_timestep = int(n strength), timesteps[n -
// init_timestep:], latents = add_noise(init, noise, timesteps[0]); the step indices are those of
// the whole grid.
TEST(Img2Img, StrengthRunsTheLastStepsFromTheNoisedImage) {
  Img2ImgFixture f;
  RecordingModel rec;
  rec.f = smooth_eps;
  const Denoiser d(rec.network());
  const auto ddim = make_sampler("dpmpp_2m");
  const Tensor out = sample(*ddim, d, *f.schedule, f.noise, f.options(0.65));
  ASSERT_EQ(rec.calls->size(), 6u);  // floor(10 * 0.65)
  const TimeGrid grid = make_spacing("leading")->grid(*f.schedule, 10);
  EXPECT_EQ((*rec.calls)[0].t[0].item<double>(), grid[4].t);
  const Denoiser plain(smooth_eps_network());
  SampleContext ctx;
  ctx.schedule = f.schedule.get();
  const Tensor x = f.init * grid[4].alpha + f.noise * grid[4].sigma;
  const Tensor want = ddim->sample([&plain](const Tensor& xt, const TimePoint& at,
                                            const StepContext&) { return plain(xt, at, {}); },
                                   x, grid, ctx, 4);
  ExpectTensorNear(out, want, 1e-12, 1e-12, "img2img");
  // strength 1 runs the whole grid, from the image noised to the first point.
  rec.calls->clear();
  (void)sample(*ddim, d, *f.schedule, f.noise, f.options(1.0));
  EXPECT_EQ(rec.calls->size(), 10u);
}

TEST(Img2Img, InpaintingKeepsTheMaskedOutRegion) {
  Img2ImgFixture f;
  const Denoiser d(smooth_eps_network());
  for (const char* s : {"ddim", "euler_a", "unipc", "heun"}) {
    SCOPED_TRACE(s);
    SampleOptions o = f.options(1.0);
    // Generate the first two columns, keep the rest (broadcast over the batch).
    o.mask = (at::arange(4, at::kDouble) < 2).to(at::kDouble).reshape({1, 1, 4});
    const Tensor out = sample(*make_sampler(s), d, *f.schedule, f.noise, o);
    const Tensor keep = (1 - o.mask).expand_as(out).to(at::kBool);
    ExpectTensorNear(out.masked_select(keep), f.init.masked_select(keep), 0, 0, "kept region");
    const Tensor gen = o.mask.expand_as(out).to(at::kBool);
    EXPECT_GT((out.masked_select(gen) - f.init.masked_select(gen)).abs().max().item<double>(),
              1e-3);
    // An all-ones mask is plain img2img; an all-zeros mask returns the image.
    o.mask = at::ones({1}, at::kDouble);
    SampleOptions p = f.options(1.0);
    ExpectTensorNear(sample(*make_sampler(s), d, *f.schedule, f.noise, o),
                     sample(*make_sampler(s), d, *f.schedule, f.noise, p), 1e-12, 1e-12, "ones");
    o.mask = at::zeros({1}, at::kDouble);
    ExpectTensorNear(sample(*make_sampler(s), d, *f.schedule, f.noise, o), f.init, 1e-12, 1e-12,
                     "zeros");
  }
}

// RePaint's get_schedule_jump (and diffusers' RePaintScheduler.set_timesteps), restated: t counts
// the model evaluations from the clean end; jump points t = 0, J, 2J, ... < n - J get R - 1 jumps
// of J steps back up. A step at t is our step index n - 1 - t.
std::vector<int64_t> repaint_step_sequence(int64_t n, int64_t J, int64_t R) {
  std::map<int64_t, int64_t> jumps;
  for (int64_t t = 0; t < n - J; t += J) jumps[t] = R - 1;
  std::vector<int64_t> steps;
  int64_t t = n;
  while (t >= 1) {
    t -= 1;
    steps.push_back(n - 1 - t);
    if (jumps[t] > 0) {
      jumps[t] -= 1;
      t += J;
    }
  }
  return steps;
}

TEST(Resampling, FollowsRePaintsJumpSchedule) {
  Img2ImgFixture f;
  const Denoiser d(smooth_eps_network());
  for (const auto& [jump, times] :
       std::vector<std::pair<int64_t, int64_t>>{{3, 3}, {2, 4}, {5, 2}}) {
    SCOPED_TRACE(std::to_string(jump) + " x " + std::to_string(times));
    SampleOptions o;
    o.num_steps = 10;
    o.resample_jump = jump;
    o.resample_times = times;
    std::vector<int64_t> seen;
    o.on_step = [&](const StepInfo& info) { seen.push_back(info.step.index); };
    RecordingModel rec;
    rec.f = smooth_eps;
    (void)sample(*make_sampler("ddpm"), Denoiser(rec.network()), *f.schedule, f.noise, o);
    EXPECT_EQ(seen, repaint_step_sequence(10, jump, times));
    EXPECT_EQ(rec.calls->size(), seen.size());
  }
  // Off: resample_times 1, or jump 0, is the plain run, draw for draw.
  SampleOptions plain;
  plain.num_steps = 10;
  const Tensor want = sample(*make_sampler("ddpm"), d, *f.schedule, f.noise, plain);
  for (const auto& [jump, times] : std::vector<std::pair<int64_t, int64_t>>{{3, 1}, {0, 5}}) {
    SampleOptions o = plain;
    o.resample_jump = jump;
    o.resample_times = times;
    ExpectTensorNear(sample(*make_sampler("ddpm"), d, *f.schedule, f.noise, o), want, 0, 0, "off");
  }
  // img2img: the jumps stay inside the part of the grid that runs.
  SampleOptions part = f.options(0.5);
  part.resample_jump = 2;
  part.resample_times = 2;
  std::vector<int64_t> seen;
  part.on_step = [&](const StepInfo& info) { seen.push_back(info.step.index); };
  (void)sample(*make_sampler("ddim"), d, *f.schedule, f.noise, part);
  std::vector<int64_t> want_steps;
  for (int64_t i : repaint_step_sequence(5, 2, 2)) want_steps.push_back(i + 5);
  EXPECT_EQ(seen, want_steps);
}

// Inpainting x1 given x0 = c on the 2-D mixture with its exact denoiser: the truth is the mixture's
// exact conditional, sum_k pi_k(c) N(mu_k1, v_k1) with pi_k ∝ w_k N(c; mu_k0, v_k0). Replacing the
// kept coordinate by its noised value at every call (the plain method) leaves the generated one
// biased at high noise; RePaint's jumps let it agree with the kept one.
// Each jump is the forward process q(x_q | x_p): the state the model sees after the jump is
// (alpha_q / alpha_p) x_p plus fresh Gaussian noise of variance sigma_q^2 - (alpha_q sigma_p /
// alpha_p)^2, checked on 20,000 elements against the state on_step reported at p. One-step jumps,
// where that variance is far from sigma_q^2.
TEST(Resampling, JumpsAreTheForwardProcess) {
  const auto schedule = make_schedule("discrete");
  RecordingModel rec;
  rec.f = [](const Tensor& x, const Tensor&) { return x.tanh() * 0.3; };
  SampleOptions o;
  o.num_steps = 10;
  o.resample_jump = 1;
  o.resample_times = 2;
  std::vector<std::pair<int64_t, Tensor>> stepped;
  o.on_step = [&](const StepInfo& info) { stepped.emplace_back(info.step.index, info.x.clone()); };
  (void)sample(*make_sampler("ddim"), Denoiser(rec.network()), *schedule,
               randn({2000, 10}, 4, at::kDouble), o);
  const TimeGrid grid = make_grid(*schedule, o);
  ASSERT_EQ(rec.calls->size(), stepped.size());
  int jumps = 0;
  for (size_t k = 0; k + 1 < stepped.size(); ++k) {
    const int64_t p = stepped[k].first + 1, q = stepped[k + 1].first;
    if (q == p) continue;
    ++jumps;
    SCOPED_TRACE("jump from " + std::to_string(p) + " to " + std::to_string(q));
    ASSERT_EQ(q, p - 1);
    const TimePoint &from = grid[static_cast<size_t>(p)], &to = grid[static_cast<size_t>(q)];
    const double a = to.alpha / from.alpha;
    const double var = to.sigma * to.sigma - a * a * from.sigma * from.sigma;
    const Tensor r = (*rec.calls)[k + 1].x - a * stepped[k].second;
    EXPECT_LT(std::abs(r.mean().item<double>()), 4 * std::sqrt(var / 20000.0));
    EXPECT_NEAR(r.var().item<double>() / var, 1.0, 0.05);
  }
  EXPECT_EQ(jumps, 9);  // once at each of the points 10, 9, ..., 2
}

// The jumps are the exact forward process, so with the exact denoiser of a Gaussian mixture and
// DDPM (exact in the limit) the resampled run keeps the data distribution: its samples stay at the
// noise floor of the sliced W2 distance, as the plain run's do. A forward jump with the wrong
// variance would compound over the 5 x 4 re-runs.
TEST(Resampling, KeepsTheDistributionOnTheGaussianMixture) {
  const GaussianMixture gmm = GaussianMixture::preset("mixture_2d");
  std::shared_ptr<const NoiseSchedule> vp = make_schedule("vp");
  const Denoiser d(gmm.network(vp));
  const int64_t n = 3000;
  const Tensor truth = gmm.sample(n, 101).x0, fresh = gmm.sample(n, 202).x0;
  const double floor = sliced_wasserstein(fresh, truth, 3);
  const auto w2 = [&](const char* sampler, int64_t jump, int64_t times) {
    SampleOptions o;
    o.num_steps = 40;
    o.resample_jump = jump;
    o.resample_times = times;
    o.seed = 3;
    const Tensor x = sample(*make_sampler(sampler), d, *vp, randn({n, 2}, 5, at::kDouble), o);
    return sliced_wasserstein(x, truth, 3);
  };
  for (const char* sampler : {"ddim", "ddpm"}) {
    const double plain = w2(sampler, 0, 1), resampled = w2(sampler, 8, 5);
    std::cout << "[ repaint ] sliced W2 to the mixture: noise floor " << floor << ", " << sampler
              << " " << plain << ", resampled (jump 8, 5 times) " << resampled << "\n";
    EXPECT_LT(plain, 2 * floor);
    EXPECT_LT(resampled, 2 * floor);
    EXPECT_NE(plain, resampled);
  }
}

TEST(Img2Img, BadInputsAreErrorsNamingTheValue) {
  Img2ImgFixture f;
  const Denoiser d(smooth_eps_network());
  const auto ddim = make_sampler("ddim");
  auto expect_error = [&](SampleOptions o, const std::string& what) {
    try {
      (void)sample(*ddim, d, *f.schedule, f.noise, o);
      ADD_FAILURE() << "no error for " << what;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  expect_error(f.options(0.0), "strength");
  expect_error(f.options(1.5), "1.5");
  expect_error(f.options(std::nan("")), "strength");
  expect_error(f.options(0.05), "leaves no step");
  SampleOptions no_init;
  no_init.strength = 0.5;
  expect_error(no_init, "needs init_image");
  SampleOptions mask_only;
  mask_only.mask = at::ones({1}, at::kDouble);
  expect_error(mask_only, "needs init_image");
  SampleOptions bad_shape = f.options(0.5);
  bad_shape.init_image = at::zeros({2, 3}, at::kDouble);
  expect_error(bad_shape, "init_image has shape");
  SampleOptions bad_mask = f.options(0.5);
  bad_mask.mask = at::ones({5}, at::kDouble);
  expect_error(bad_mask, "does not broadcast");
  SampleOptions nan_init = f.options(0.5);
  nan_init.init_image = f.init.clone();
  nan_init.init_image[0][0][0] = std::nan("");
  expect_error(nan_init, "NaN");
  SampleOptions bad_jump = f.options(0.5);
  bad_jump.resample_jump = -2;
  expect_error(bad_jump, "resample_jump must be");
  SampleOptions bad_times = f.options(0.5);
  bad_times.resample_times = 0;
  expect_error(bad_times, "resample_times must be");
}

}  // namespace
}  // namespace diffuse
