// SPDX-License-Identifier: Apache-2.0
// A correction of your own: clamp the model's x0 prediction to the data range at every model call
// (diffusers' `clip_sample`), registered under a new name and then used by name, like a built-in
// one, on a 2-D Gaussian mixture whose exact denoiser stands in for a trained network.
#include <diffuse/all.h>

#include <cstdio>

// The hooks: on_grid, on_start, on_time, on_condition, on_prediction, on_finish
// (diffuse/correction.h).
class ClampX0 final : public diffuse::Correction {
 public:
  explicit ClampX0(double limit) : limit_(limit) {
    diffuse::check(limit > 0, "clamp_x0: limit must be > 0, got ", limit);
  }
  static std::unique_ptr<diffuse::Correction> from_config(const diffuse::Config& c) {
    diffuse::ConfigReader r(c, "clamp_x0");  // unknown options become errors in finish()
    const double limit = r.get_double("limit", 1.0);
    r.finish();
    return std::make_unique<ClampX0>(limit);
  }
  std::string name() const override { return "clamp_x0"; }
  diffuse::Config to_config() const override { return {{"limit", diffuse::format_double(limit_)}}; }

  void reset() override { clipped_.clear(); }
  // After every model call: x0 into [-limit, limit], eps consistent with it (x = a x0 + s eps).
  void on_prediction(diffuse::Prediction& p, const diffuse::Tensor& x,
                     const diffuse::StepContext& step) override {
    if (clipped_.size() <= static_cast<size_t>(step.index)) clipped_.resize(step.index + 1, 0);
    clipped_[step.index] += (p.x0.abs() > limit_).sum().item<int64_t>();
    p.x0 = p.x0.clamp(-limit_, limit_);
    if (step.call.sigma > 0) p.eps = (x - p.x0 * step.call.alpha) / step.call.sigma;
  }
  /// How many x0 coordinates were clamped at each step of the last run.
  const std::vector<int64_t>& clipped() const { return clipped_; }

 private:
  double limit_;
  std::vector<int64_t> clipped_;
};
DIFFUSE_REGISTER_CORRECTION(ClampX0, "clamp_x0",
                            "Clamp the x0 prediction to [-limit, limit] (example)");

int main() {
  // Data: 8 Gaussians on a ring of radius 2. Network: the exact eps scaled by 0.9, a model that
  // under-predicts the noise and so leaves its samples too spread out.
  const auto gmm = diffuse::GaussianMixture::preset("mixture_2d");
  std::shared_ptr<const diffuse::NoiseSchedule> schedule = diffuse::make_schedule("discrete");
  const diffuse::Denoiser denoiser(gmm.imperfect_network(schedule, /*delta=*/-0.1));
  auto sampler = diffuse::make_sampler("ddim");
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  const diffuse::Tensor noise = diffuse::randn({4000, 2}, 1, f64), truth = gmm.sample(4000, 2).x0;
  auto report = [&](const std::string& what, const diffuse::Tensor& x) {  // SW2: distance to data
    std::printf("%-30s %8.3f %10lld %8.4f\n", what.c_str(), x.abs().max().item<double>(),
                (long long)(x.abs() > 3.5).sum().item<int64_t>(),
                diffuse::sliced_wasserstein(x, truth, 5));
  };
  std::printf("%-30s %8s %10s %8s\n", "4000 samples", "max |x|", "|x| > 3.5", "SW2");
  report("fresh data samples", gmm.sample(4000, 3).x0);
  for (const std::string spec : {"", "clamp_x0:limit=3.5"}) {
    diffuse::SampleOptions o;
    o.num_steps = 10;
    if (!spec.empty()) o.corrections = {diffuse::correction_from_spec(spec)};  // by name
    const diffuse::Tensor x = diffuse::sample(*sampler, denoiser, *schedule, noise, o);
    report(spec.empty() ? "ddim, no correction" : "ddim + " + spec, x);
    if (spec.empty()) continue;
    diffuse::check(x.abs().max().item<double>() <= 3.5, "clamp_x0 did not bound the samples");
    std::printf("x0 coordinates clamped per step:");
    for (int64_t n : dynamic_cast<const ClampX0&>(*o.corrections[0]).clipped())
      std::printf(" %lld", (long long)n);
    std::printf("\n");
  }
  return 0;
}
