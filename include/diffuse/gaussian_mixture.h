// SPDX-License-Identifier: Apache-2.0
// An analytic test bed: data x0 ~ sum_k w_k N(mu_k, diag(v_k)) in D dimensions.
// For such data every quantity a sampler needs is known exactly:
//   x_t | k ~ N(alpha mu_k, diag(alpha^2 v_k + sigma^2)), so the responsibilities p(k | x_t) are
//   softmax_k(log w_k + log N(x_t; alpha mu_k, alpha^2 v_k + sigma^2)) (computed with logsumexp),
//   E[x0 | x_t, k] = mu_k + alpha v_k / (alpha^2 v_k + sigma^2) (x_t - alpha mu_k), and
//   E[x0 | x_t] = sum_k p(k | x_t) E[x0 | x_t, k]   (Tweedie's formula for the mixture).
// The exact denoiser plugs into Denoiser as a Network for any Parameterization, optionally
// class-conditional (Conditioning.value = component index, -1 or undefined = unconditional).
//
// The probability-flow ODE. In the VP-normalised state u = x / sqrt(alpha^2 + sigma^2), with
// a(lambda)^2 = sigmoid(2 lambda), s(lambda)^2 = sigmoid(-2 lambda):
//   du/dlambda = a (E[x0 | u] - a u) = a s (s x0_hat - a eps_hat) = -a s v_hat,
// which depends on the schedule only through lambda = log(alpha / sigma) at the two ends. It is
// integrated with an adaptive Dormand-Prince 5(4) method in float64 (rtol 1e-12 by default). The
// right-hand side decays like exp(-|lambda|) at both ends, so the ends lambda = +-inf (clean data,
// pure noise) are replaced by +-lambda_limit (40: a truncation error below 1e-17).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/arg.h>

#include <ATen/core/Generator.h>

#include <diffuse/denoiser.h>
#include <diffuse/schedule.h>
#include <diffuse/tensor.h>

namespace diffuse {

/// Accuracy of GaussianMixture::solve_ode.
struct GmmOdeOptions {
  /// Relative and absolute tolerance per element of the (VP-normalised) state. Defaults 1e-12; > 0.
  TORCH_ARG(double, rtol) = 1e-12;
  TORCH_ARG(double, atol) = 1e-12;
  /// |lambda| treated as infinity (clean data / pure noise ends). Default 40; >= 10.
  TORCH_ARG(double, lambda_limit) = 40.0;
  /// Accepted + rejected steps before giving up with an error. Default 100000; >= 1.
  TORCH_ARG(int64_t, max_steps) = 100000;
};

/// What one ODE solve cost.
struct GmmOdeStats {
  int64_t accepted = 0;
  int64_t rejected = 0;
  int64_t evaluations = 0;  ///< right-hand-side (denoiser) evaluations
};

/// Draws from the mixture: x0 [n, D] and the component of each draw, labels [n] (int64).
struct GmmSamples {
  Tensor x0;
  Tensor labels;
};

class GaussianMixture {
 public:
  static constexpr double kPi = 3.14159265358979323846;

  /// weights [K] (positive; normalised here), means [K, D], variances [K, D] (positive).
  /// Stored as float64 on the CPU; computations run in the dtype and on the device of their input.
  GaussianMixture(const Tensor& weights, const Tensor& means, const Tensor& variances);

  /// Named mixtures with moderately overlapping components (narrow, well
  /// separated modes let ODE trajectories switch mode at coarse steps, which spoils order fits).
  ///   "mixture_2d":  8 components on a ring of radius 2, unequal weights, anisotropic
  ///                  std 0.3..0.5.
  ///   "mixture_16d": 5 components in 16 dimensions, means 0.6 sin(...), variances 0.3..0.8.
  static GaussianMixture preset(const std::string& name);
  static std::vector<std::string> preset_names() { return {"mixture_2d", "mixture_16d"}; }

  int64_t num_components() const { return weights_.size(0); }
  int64_t dim() const { return means_.size(1); }
  /// float64 CPU tensors: weights [K] (summing to 1), means and variances [K, D].
  const Tensor& weights() const { return weights_; }
  const Tensor& means() const { return means_; }
  const Tensor& variances() const { return variances_; }

  /// Mean [D] and covariance [D, D] of x0 (float64, CPU).
  Tensor mean() const;
  Tensor covariance() const;

  /// n draws from the mixture with `gen` (a CPU generator), returned with `options`' dtype/device.
  GmmSamples sample(int64_t n, at::Generator& gen,
                    const c10::TensorOptions& options = at::kDouble) const;
  /// The same with a fresh CPU generator seeded `seed`.
  GmmSamples sample(int64_t n, uint64_t seed,
                    const c10::TensorOptions& options = at::kDouble) const;

  /// log p(k | x_t) at (alpha, sigma), [B, K]. x: [B, D] (or [B, ...] with D elements per sample);
  /// alpha, sigma: 0-d or [B] tensors (or doubles through the TimePoint overloads).
  Tensor log_responsibilities(const Tensor& x, const Tensor& alpha, const Tensor& sigma) const;

  /// log of the density of x_t at (alpha, sigma), [B]. At a clean point (sigma = 0, alpha = 1)
  /// this is the data density.
  Tensor log_prob(const Tensor& x, const TimePoint& at = {}) const;

  /// E[x0 | x_t] (labels: per-sample component, -1 = unconditional; undefined = all unconditional)
  /// and the matching eps = (x_t - alpha x0) / sigma (computed without cancellation; 0 at
  /// sigma = 0).
  Prediction predict(const Tensor& x, const Tensor& alpha, const Tensor& sigma,
                     const Tensor& labels = {}) const;
  /// E[x0 | x_t] and eps when sample b's component weights are tilted to
  /// w_k exp(log_tilt[b, k]) (renormalised): log_tilt [B, K] (or [K] for all samples), finite.
  /// A zero tilt is predict() without labels. ConditionalMixture builds on this.
  Prediction predict_tilted(const Tensor& x, const Tensor& alpha, const Tensor& sigma,
                            const Tensor& log_tilt) const;
  Prediction predict(const Tensor& x, const TimePoint& at, const Tensor& labels = {}) const;
  /// E[x0 | x_t] alone.
  Tensor x0(const Tensor& x, const TimePoint& at, const Tensor& labels = {}) const;

  /// The exact denoiser as a Network predicting `p` (epsilon, v or x0). The network receives the
  /// model time t and recovers (alpha, sigma) with schedule->at(t) (one call per distinct t; this
  /// reads t on the host). Note that for a discrete schedule at fractional t, at(t) interpolates
  /// sigma_ve linearly while at_log_snr() places t log-linearly (diffusers' conventions), so the
  /// network then sees a slightly different noise level than the solver: use a continuous schedule
  /// ("vp") or integer t for exact tests. Conditioning.value holds component indices [B]
  /// (-1 = unconditional); undefined = unconditional.
  Network network(std::shared_ptr<const NoiseSchedule> schedule,
                  Parameterization p = Parameterization::kEpsilon) const;

  /// An imperfect epsilon-network that mimics exposure bias (Ning et al. 2024): the exact eps*
  /// scaled by (1 + delta) plus a smooth state-dependent bias, eps_hat = (1 + delta) eps* +
  /// bias * tanh(x). It over-predicts the noise for delta > 0, so the sampling chain ends too
  /// noisy/too concentrated; Epsilon Scaling with b = 1 + delta undoes the scale part exactly.
  /// delta > -1; both default to the identity (0). Asked for another parameterisation `p` (e.g.
  /// kFlow on the flow schedule), the network returns the same imperfect eps_hat expressed in p,
  /// with the x0 that eps_hat implies, x0_hat = (x - sigma eps_hat) / alpha (the exact x0 where
  /// alpha = 0: there eps determines nothing about x0), so a Denoiser reads back eps_hat exactly.
  Network imperfect_network(std::shared_ptr<const NoiseSchedule> schedule, double delta,
                            double bias = 0.0,
                            Parameterization p = Parameterization::kEpsilon) const;

  /// The exact probability-flow ODE solution: the state at `to` of the trajectory through x at
  /// `from` (either direction; either end may be clean or pure noise). x: [B, D] or [B, ...] with D
  /// elements per sample, any floating dtype and device; solved in float64, returned in x's dtype.
  /// labels as in predict(): the class-conditional ODE for labelled samples.
  Tensor solve_ode(const Tensor& x, const TimePoint& from, const TimePoint& to,
                   const Tensor& labels = {}, const GmmOdeOptions& options = {},
                   GmmOdeStats* stats = nullptr) const;

 private:
  struct Parts {
    Tensor logits;  // [B, K]: log w_k + log N(x; a mu_k, a^2 v_k + s^2)
    Tensor mu, v;   // [1, K, D]
    Tensor w;       // [B, K, D]: (x - a mu_k) / (a^2 v_k + s^2)
    Tensor a, s;    // 0-d or [B, 1, 1]
  };

  static Tensor scalar(double v, const Tensor& like);

  Parts parts(const Tensor& x_in, const Tensor& alpha, const Tensor& sigma) const;

  /// The responsibility-weighted conditional means: E[x0 | x_t, k] = mu_k + alpha v_k w_k and
  /// eps_k = sigma w_k, with w_k = (x_t - alpha mu_k) / var_k, averaged over r [B, K] (batched
  /// matrix products instead of [B, K, D] temporaries).
  static Prediction average(const Parts& p, const Tensor& r, const Tensor& x);

  Tensor apply_labels(const Tensor& r, const Tensor& labels_in) const;

  /// du/dlambda = a s (s x0_hat - a eps_hat) at the VP point of log-SNR lambda.
  Tensor ode_rhs(const Tensor& u, double lambda, const Tensor& labels, GmmOdeStats& st) const;

  /// Dormand-Prince 5(4) with FSAL and the standard step-size controller.
  Tensor dopri5(Tensor u, double l0, double l1, const Tensor& labels, const GmmOdeOptions& o,
                GmmOdeStats& st) const;

  Tensor weights_, log_weights_, means_, variances_;
};

/// A class-conditional mixture whose condition is an EMBEDDING vector, so that a noised or mixed
/// condition (CADS, interpolated prompts) still means something. Classes are groups of mixture
/// components: component k belongs to class c(k); class c has embedding e_c in R^E. Given an
/// embedding e the data distribution is the mixture re-weighted by a softmax "conditioner"
///   p(c | e) = softmax_c(log P(c) + beta <e, e_c>),   P(c) = sum of the class's component weights,
///   w_k(e)   = w_k p(c(k) | e) / P(c(k)),
/// so the null embedding e = 0 gives the unconditional mixture (the class prior) and e = e_c with
/// a large beta gives class c alone. The exact denoiser for w_k(e) is closed-form
/// (GaussianMixture::predict_tilted with tilt beta <e, e_c(k)>; the normaliser cancels).
/// This is a MODEL of a conditioner — a smooth map from embedding to class weights — chosen so
/// that conditioning-space methods can be tested exactly; it makes no claim about how real
/// networks respond to perturbed embeddings.
class ConditionalMixture {
 public:
  /// component_class [K] (integers in [0, C)), class_embeddings [C, E] (finite), beta > 0 finite.
  /// Every class needs at least one component.
  ConditionalMixture(GaussianMixture mixture, const Tensor& component_class,
                     const Tensor& class_embeddings, double beta);

  /// "classes_2d": 9 components on a ring of radius 24 (std 3, equal weights), three classes of
  /// three neighbouring components each (class c = ring positions 3c, 3c+1, 3c+2), orthonormal
  /// class embeddings in E = 8 dimensions (rows of a fixed orthogonal matrix), beta = 6. Each
  /// class has one inner component between two of its own and two edge components next to
  /// another class; strong guidance concentrates a class on its inner component. The scale sets
  /// the noise level at which a sample commits to a component: with the "vp" schedule it is
  /// around sigma/alpha ~ 10-20, i.e. model time t ~ 0.6-0.85, inside CADS's default annealing
  /// window t in [0.6, 0.9] (with a ring of radius 2.5 the choice falls at t < 0.5, where CADS
  /// at its defaults no longer acts).
  static ConditionalMixture preset(const std::string& name);

  const GaussianMixture& mixture() const { return mixture_; }
  int64_t num_classes() const { return embeddings_.size(0); }
  int64_t embedding_dim() const { return embeddings_.size(1); }
  double beta() const { return beta_; }
  /// [K] int64 class of each component.
  const Tensor& component_class() const { return component_class_; }
  /// [C, E] float64.
  const Tensor& class_embeddings() const { return embeddings_; }
  /// [C] P(c), the class prior.
  const Tensor& class_prior() const { return prior_; }

  /// The embeddings of the classes [B] (integers) as [B, E] in `options`' dtype and device.
  Tensor embed(const Tensor& classes, const c10::TensorOptions& options = at::kDouble) const;
  /// The null (unconditional) embedding: zeros [n, E].
  Tensor null_embedding(int64_t n, const c10::TensorOptions& options = at::kDouble) const;

  /// log p(c | e) [B, C] for embeddings [B, E].
  Tensor class_log_probs(const Tensor& embedding) const;

  /// E[x0 | x_t, e] and eps; embedding [B, E] floating (undefined = unconditional).
  Prediction predict(const Tensor& x, const Tensor& alpha, const Tensor& sigma,
                     const Tensor& embedding) const;
  Prediction predict(const Tensor& x, const TimePoint& tp, const Tensor& embedding) const;

  /// The exact conditional denoiser as a Network predicting `p`; Conditioning.value holds the
  /// embeddings [B, E] (floating point; an integer class label is an error: embed() it first),
  /// undefined = unconditional. Time handling as GaussianMixture::network.
  Network network(std::shared_ptr<const NoiseSchedule> schedule,
                  Parameterization p = Parameterization::kEpsilon) const;

  /// Index of the nearest component mean (Euclidean) of each row of x0 [B, D] -> [B] int64.
  Tensor nearest_component(const Tensor& x0) const;
  /// The class of the nearest component, [B] int64.
  Tensor nearest_class(const Tensor& x0) const;

 private:
  Tensor checked_embedding(const Tensor& e, const char* who) const;

  GaussianMixture mixture_;
  Tensor component_class_, embeddings_, prior_;
  double beta_;
};

}  // namespace diffuse
