// SPDX-License-Identifier: Apache-2.0
// img2img and inpainting in sample() (SampleOptions::init_image, strength, mask): diffusers'
// strength rule (the last floor(n strength) steps from alpha x0 + sigma noise), the blending of
// the kept region, and the errors.
#include "test_util.h"

#include <cmath>

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
}

}  // namespace
}  // namespace diffuse
