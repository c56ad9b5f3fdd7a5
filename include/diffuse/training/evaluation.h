// SPDX-License-Identifier: Apache-2.0
// Sample-quality evaluation for Fashion-MNIST: a small CNN classifier that this project trains and
// ships (training/assets/fashion_mnist_classifier.pt, reproduced by examples/train_classifier),
// the Frechet distance between Gaussians fitted to its penultimate-layer features (the FID recipe
// with our classifier in place of Inception), and k-NN precision/recall on the same features.
//
// References:
//   Frechet distance: M. Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge to a
//     Local Nash Equilibrium", NeurIPS 2017, eq. (6): d^2 = |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1
//     S2)^{1/2}); checked against mseitzer/pytorch-fid (fid_score.py, calculate_frechet_distance:
//     unbiased covariances, np.cov). Tr((S1 S2)^{1/2}) is computed as Tr((S1^{1/2} S2
//     S1^{1/2})^{1/2}) (a similar matrix, symmetric PSD) with two symmetric eigendecompositions in
//     float64 (Eigen); eigenvalues below zero (round-off) are clamped to zero.
//   Precision/recall: T. Kynkaanniemi et al., "Improved Precision and Recall Metric for Assessing
//     Generative Models", NeurIPS 2019, eqs. (1)-(3): the manifold of a set is the union of balls
//     around its points with radius = distance to the k-th nearest neighbour (k = 3) within the set
//     (the point itself excluded); precision = share of generated points inside the real manifold,
//     recall = share of real points inside the generated manifold. Checked against the authors'
//     code (kynkaat/improved-precision-and-recall-metric, precision_recall.py: ManifoldEstimator,
//     squared distances, radius = (k+1)-th smallest including self, membership test "<=").
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include <Eigen/Dense>

#include <ATen/ATen.h>
#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/functional/activation.h>
#include <torch/nn/functional/loss.h>
#include <torch/nn/functional/pooling.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>
#include <torch/optim/adamw.h>
#include <torch/serialize.h>
#include <torch/utils.h>

#include <diffuse/config.h>
#include <diffuse/training/assets.h>
#include <diffuse/tensor.h>
#include <diffuse/training/data.h>
#include <diffuse/training/dataset.h>
#include <diffuse/training/image.h>

namespace diffuse {

/// A small CNN for Fashion-MNIST: input [N, 1, 28, 28] in [-1, 1]; three 3x3 conv layers
/// (32, 64, 64 channels, ReLU, 2x2 max-pool after each: 28 -> 14 -> 7 -> 3), a 128-d fully
/// connected feature layer (ReLU) and a linear 10-way classifier. 130890 parameters (511 KiB
/// float32). Parameter names: conv1, conv2, conv3, fc1, fc2 (weight, bias).
class FashionClassifierImpl : public torch::nn::Cloneable<FashionClassifierImpl> {
 public:
  /// Width of features().
  static constexpr int64_t kFeatureDim = 128;
  static constexpr int64_t kNumClasses = 10;

  FashionClassifierImpl() { reset(); }

  void reset() override {
    namespace nn = torch::nn;
    conv1 = register_module("conv1", nn::Conv2d(nn::Conv2dOptions(1, 32, 3).padding(1)));
    conv2 = register_module("conv2", nn::Conv2d(nn::Conv2dOptions(32, 64, 3).padding(1)));
    conv3 = register_module("conv3", nn::Conv2d(nn::Conv2dOptions(64, 64, 3).padding(1)));
    fc1 = register_module("fc1", nn::Linear(64 * 3 * 3, kFeatureDim));
    fc2 = register_module("fc2", nn::Linear(kFeatureDim, kNumClasses));
  }

  /// Re-initialises every weight and bias from U(-1/sqrt(fan_in), 1/sqrt(fan_in)) drawn with `gen`
  /// (the distribution of LibTorch's default initialisation, but reproducible from a generator).
  void initialize(at::Generator gen) {
    torch::NoGradGuard no_grad;
    for (auto* layer :
         {static_cast<torch::nn::Module*>(conv1.get()),
          static_cast<torch::nn::Module*>(conv2.get()),
          static_cast<torch::nn::Module*>(conv3.get()), static_cast<torch::nn::Module*>(fc1.get()),
          static_cast<torch::nn::Module*>(fc2.get())}) {
      Tensor w = layer->named_parameters(false)["weight"],
             b = layer->named_parameters(false)["bias"];
      const double bound = 1.0 / std::sqrt(static_cast<double>(w[0].numel()));
      w.uniform_(-bound, bound, gen);
      b.uniform_(-bound, bound, gen);
    }
  }

  /// The 128-d penultimate features (after ReLU), [N, 128]. x: [N, 1, 28, 28], values in [-1, 1].
  Tensor features(const Tensor& x) {
    check(x.defined() && x.dim() == 4 && x.size(1) == 1 && x.size(2) == 28 && x.size(3) == 28,
          "FashionClassifier: input must be [N, 1, 28, 28], got ",
          x.defined() ? c10::str(x.sizes()) : std::string("undefined"));
    namespace F = torch::nn::functional;
    Tensor h = F::max_pool2d(at::relu(conv1->forward(x)), F::MaxPool2dFuncOptions(2));
    h = F::max_pool2d(at::relu(conv2->forward(h)), F::MaxPool2dFuncOptions(2));
    h = F::max_pool2d(at::relu(conv3->forward(h)), F::MaxPool2dFuncOptions(2));
    return at::relu(fc1->forward(h.flatten(1)));
  }

  /// Class logits [N, 10].
  Tensor forward(const Tensor& x) { return fc2->forward(features(x)); }

  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(FashionClassifier);

/// Options of train_fashion_classifier.
struct ClassifierTrainOptions {
  /// Passes over the training set. Default 8; >= 1.
  TORCH_ARG(int64_t, epochs) = 8;
  /// Minibatch size. Default 128; >= 1.
  TORCH_ARG(int64_t, batch_size) = 128;
  /// Peak AdamW learning rate, decayed to 0 by a cosine over all steps. Default 2e-3; > 0.
  TORCH_ARG(double, lr) = 2e-3;
  /// AdamW decoupled weight decay. Default 1e-4; >= 0.
  TORCH_ARG(double, weight_decay) = 1e-4;
  /// Random horizontal flips of the training images (Fashion-MNIST items are near mirror
  /// symmetric). Default true.
  TORCH_ARG(bool, flip) = true;
  /// Seed of the one generator that draws the initial weights, the shuffling and the flips. Default
  /// 0.
  TORCH_ARG(uint64_t, seed) = 0;
  /// Called after each epoch with (epoch from 1, mean training loss, accuracy on `test` or -1).
  /// Default none.
  TORCH_ARG(std::function<void(int64_t, double, double)>, on_epoch) = nullptr;
};

/// Runs the classifier on images [N, 1, 28, 28] in batches (eval mode, no gradients; the module's
/// mode is restored; images move to the model's device) and returns logits [N, 10] (logits = true)
/// or features [N, 128], on the model's device.
/// batch_size >= 1 (default 500).
inline Tensor classifier_outputs(FashionClassifier& model, const Tensor& images, bool logits,
                                 int64_t batch_size = 500) {
  check(batch_size >= 1, "classifier_outputs: batch_size must be >= 1, got ", batch_size);
  check(images.defined() && images.dim() == 4 && images.size(0) >= 1,
        "FashionClassifier: images must be [N, 1, 28, 28] with N >= 1, got ",
        images.defined() ? c10::str(images.sizes()) : std::string("undefined"));
  torch::NoGradGuard no_grad;
  const at::Device device = model->parameters().front().device();  // images move to the model
  const bool was_training = model->is_training();
  model->eval();
  std::vector<Tensor> out;
  for (int64_t i = 0; i < images.size(0); i += batch_size) {
    const Tensor x =
        images.narrow(0, i, std::min(batch_size, images.size(0) - i)).to(device, at::kFloat);
    out.push_back(logits ? model->forward(x) : model->features(x));
  }
  model->train(was_training);
  return at::cat(out);
}

/// Penultimate features [N, 128] (float32) of images [N, 1, 28, 28] in [-1, 1].
inline Tensor classifier_features(FashionClassifier& model, const Tensor& images,
                                  int64_t batch_size = 500) {
  return classifier_outputs(model, images, false, batch_size);
}

/// Share of ds's examples whose arg-max logit equals the label (ds must be labelled).
inline double classifier_accuracy(FashionClassifier& model, const Dataset& ds,
                                  int64_t batch_size = 500) {
  check(ds.labels.defined(), "classifier_accuracy: dataset '", ds.name, "' has no labels");
  const Tensor pred = classifier_outputs(model, ds.data, true, batch_size).argmax(1);
  return pred.eq(ds.labels).to(at::kDouble).mean().item<double>();
}

/// Trains a fresh FashionClassifier on `train` (Fashion-MNIST-shaped: [N, 1, 28, 28] in [-1, 1],
/// labels 0..9) with AdamW, cross-entropy, a cosine learning-rate decay and optional flips. All
/// randomness comes from one generator seeded options.seed, so on the CPU with a fixed thread
/// count the result is reproducible. `test` (optional, may be null) is only used for the accuracy
/// reported to options.on_epoch. Returns the model in eval mode.
inline FashionClassifier train_fashion_classifier(const Dataset& train,
                                                  const ClassifierTrainOptions& options = {},
                                                  const Dataset* test = nullptr) {
  train.validate();
  check(train.labels.defined() && train.num_classes == 10 && train.data.dim() == 4 &&
            train.data.size(1) == 1 && train.data.size(2) == 28 && train.data.size(3) == 28,
        "train_fashion_classifier: dataset '", train.name,
        "' must be labelled [N, 1, 28, 28] with 10 classes, got ", train.data.sizes());
  check(options.epochs() >= 1, "train_fashion_classifier: epochs must be >= 1, got ",
        options.epochs());
  check(options.batch_size() >= 1, "train_fashion_classifier: batch_size must be >= 1, got ",
        options.batch_size());
  check(options.lr() > 0, "train_fashion_classifier: lr must be > 0, got ", options.lr());
  check(options.weight_decay() >= 0, "train_fashion_classifier: weight_decay must be >= 0, got ",
        options.weight_decay());
  at::Generator gen = detail::cpu_generator(options.seed());
  FashionClassifier model;
  model->initialize(gen);
  model->train();
  torch::optim::AdamW opt(
      model->parameters(),
      torch::optim::AdamWOptions(options.lr()).weight_decay(options.weight_decay()));
  const Tensor data = train.data.to(at::kFloat).contiguous(), labels = train.labels.to(at::kLong);
  const int64_t n = data.size(0), bs = options.batch_size();
  const int64_t steps_per_epoch = (n + bs - 1) / bs, total = steps_per_epoch * options.epochs();
  const double pi = 3.14159265358979323846;
  int64_t step = 0;
  for (int64_t epoch = 1; epoch <= options.epochs(); ++epoch) {
    const Tensor perm = at::randperm(n, gen, at::kLong);
    double loss_sum = 0;
    for (int64_t i = 0; i < n; i += bs, ++step) {
      const double lr =
          options.lr() * 0.5 * (1.0 + std::cos(pi * static_cast<double>(step) / total));
      for (auto& group : opt.param_groups())
        static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
      const Tensor idx = perm.narrow(0, i, std::min(bs, n - i));
      Tensor x = data.index_select(0, idx);
      if (options.flip()) {
        const Tensor flip = at::rand({x.size(0), 1, 1, 1}, gen) < 0.5;
        x = at::where(flip, x.flip({3}), x);
      }
      const Tensor loss =
          torch::nn::functional::cross_entropy(model->forward(x), labels.index_select(0, idx));
      opt.zero_grad();
      loss.backward();
      opt.step();
      loss_sum += loss.item<double>() * static_cast<double>(idx.size(0));
    }
    if (options.on_epoch())
      options.on_epoch()(epoch, loss_sum / static_cast<double>(n),
                         test ? classifier_accuracy(model, *test) : -1.0);
  }
  model->eval();
  return model;
}

/// Writes the classifier with torch::save, atomically (temp file + rename); errors name `path`.
/// Serialised through a stream, so the bytes depend only on the parameters (not on the file name).
inline void save_fashion_classifier(const FashionClassifier& model, const std::string& path) {
  std::ostringstream os;
  torch::save(model, os);
  const std::string bytes = os.str();
  write_bytes_atomic(path, bytes.data(), bytes.size());
}

/// The file name of the shipped classifier.
inline const char* fashion_classifier_file_name() { return "fashion_mnist_classifier.pt"; }

/// Loads a FashionClassifier saved by save_fashion_classifier, in eval mode. With an empty `path`
/// the shipped file fashion_mnist_classifier.pt is searched in, in order:
///   1. $DIFFUSE_ASSET_DIR,
///   2. $DIFFUSE_SOURCE_DIR/training/assets,
///   3. the directory given at compile time by the macro DIFFUSE_ASSET_DIR (a string literal), if
///   defined.
/// Errors (diffuse::Error) name the file, or list every place tried when none has it.
inline FashionClassifier load_fashion_classifier(const std::string& path = "") {
  const std::string file =
      path.empty() ? find_asset(fashion_classifier_file_name(), "the Fashion-MNIST classifier") : path;
  std::error_code ec;
  check(std::filesystem::is_regular_file(file, ec), "cannot read classifier '", file,
        "': no such file");
  FashionClassifier model;
  try {
    torch::load(model, file);
  } catch (const std::exception& e) {
    throw Error("cannot load classifier '" + file + "': " + e.what());
  }
  model->eval();
  return model;
}

/// Mean and covariance of a feature set: what the Frechet distance needs, so that reference
/// statistics can be computed once and cached.
struct FeatureStats {
  /// float64 [D].
  Tensor mean;
  /// float64 [D, D], unbiased (divided by N - 1) as numpy's np.cov.
  Tensor cov;
  /// Number of feature vectors N.
  int64_t count = 0;
};

/// Statistics of features [N, D] (N >= 2), computed in float64.
inline FeatureStats feature_stats(const Tensor& feats) {
  check(feats.defined() && feats.dim() == 2 && feats.size(0) >= 2 && feats.size(1) >= 1,
        "feature_stats: features must be [N, D] with N >= 2, got ",
        feats.defined() ? c10::str(feats.sizes()) : std::string("undefined"));
  const Tensor f = feats.detach().to(at::kCPU, at::kDouble);
  check(at::isfinite(f).all().item<bool>(), "feature_stats: features have non-finite values");
  FeatureStats s;
  s.mean = f.mean(0);
  const Tensor c = f - s.mean;
  s.cov = at::matmul(c.t(), c) / static_cast<double>(f.size(0) - 1);
  s.count = f.size(0);
  return s;
}

namespace detail {

inline Eigen::MatrixXd to_eigen(const Tensor& t) {
  const Tensor c = t.to(at::kDouble).contiguous();
  // Row-major tensor -> column-major Eigen: copy through a row-major map.
  return Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(
      c.data_ptr<double>(), c.size(0), c.dim() == 2 ? c.size(1) : 1);
}

}  // namespace detail

/// Frechet distance between N(a.mean, a.cov) and N(b.mean, b.cov):
///   |mu_a - mu_b|^2 + Tr(S_a) + Tr(S_b) - 2 Tr((S_a^{1/2} S_b S_a^{1/2})^{1/2}),
/// in float64 with symmetric eigendecompositions (negative round-off eigenvalues clamped to 0;
/// the result is clamped to >= 0). Errors on mismatched dimensions.
inline double frechet_distance(const FeatureStats& a, const FeatureStats& b) {
  check(a.mean.defined() && b.mean.defined() && a.cov.defined() && b.cov.defined(),
        "frechet_distance: statistics are undefined");
  const int64_t d = a.mean.numel();
  check(b.mean.numel() == d && a.cov.dim() == 2 && a.cov.size(0) == d && a.cov.size(1) == d &&
            b.cov.sizes() == a.cov.sizes(),
        "frechet_distance: statistics disagree in dimension: mean ", a.mean.sizes(), " / ",
        b.mean.sizes(), ", cov ", a.cov.sizes(), " / ", b.cov.sizes());
  const Eigen::VectorXd mu1 = detail::to_eigen(a.mean.reshape({-1})),
                        mu2 = detail::to_eigen(b.mean.reshape({-1}));
  Eigen::MatrixXd s1 = detail::to_eigen(a.cov), s2 = detail::to_eigen(b.cov);
  s1 = 0.5 * (s1 + s1.transpose());
  s2 = 0.5 * (s2 + s2.transpose());
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> e1(s1);
  check(e1.info() == Eigen::Success,
        "frechet_distance: eigendecomposition of the first covariance failed");
  const Eigen::VectorXd sq = e1.eigenvalues().cwiseMax(0.0).cwiseSqrt();
  const Eigen::MatrixXd s1h = e1.eigenvectors() * sq.asDiagonal() * e1.eigenvectors().transpose();
  Eigen::MatrixXd m = s1h * s2 * s1h;
  m = 0.5 * (m + m.transpose());
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> e2(m, Eigen::EigenvaluesOnly);
  check(e2.info() == Eigen::Success,
        "frechet_distance: eigendecomposition of S1^1/2 S2 S1^1/2 failed");
  const double tr_covmean = e2.eigenvalues().cwiseMax(0.0).cwiseSqrt().sum();
  const double fd = (mu1 - mu2).squaredNorm() + s1.trace() + s2.trace() - 2.0 * tr_covmean;
  return std::max(0.0, fd);
}

/// Frechet distance between Gaussians fitted to two feature sets [N_a, D] and [N_b, D] (N >= 2).
inline double frechet_distance(const Tensor& feats_a, const Tensor& feats_b) {
  return frechet_distance(feature_stats(feats_a), feature_stats(feats_b));
}

/// Result of precision_recall.
struct PrecisionRecall {
  double precision = 0;
  double recall = 0;
};

namespace detail {

/// Squared Euclidean distances [rows of a, rows of b] in float64, clamped at 0.
inline Tensor squared_distances(const Tensor& a, const Tensor& b) {
  const Tensor d =
      a.pow(2).sum(1, true) - 2.0 * at::matmul(a, b.t()) + b.pow(2).sum(1).unsqueeze(0);
  return d.clamp_min(0.0);
}

/// Squared distance of each point of `set` to its k-th nearest neighbour in `set`, itself excluded.
inline Tensor knn_radii(const Tensor& set, int64_t k, int64_t chunk) {
  std::vector<Tensor> out;
  for (int64_t i = 0; i < set.size(0); i += chunk) {
    const Tensor d = squared_distances(set.narrow(0, i, std::min(chunk, set.size(0) - i)), set);
    out.push_back(std::get<0>(d.kthvalue(k + 1, 1)));  // the smallest is the point itself (0)
  }
  return at::cat(out);
}

/// Share of `query` points within radius of some point of `set`.
inline double manifold_coverage(const Tensor& set, const Tensor& radii, const Tensor& query,
                                int64_t chunk) {
  int64_t inside = 0;
  for (int64_t i = 0; i < query.size(0); i += chunk) {
    const Tensor d = squared_distances(query.narrow(0, i, std::min(chunk, query.size(0) - i)), set);
    inside += d.le(radii.unsqueeze(0)).any(1).sum().item<int64_t>();
  }
  return static_cast<double>(inside) / static_cast<double>(query.size(0));
}

}  // namespace detail

/// Improved precision and recall (Kynkaanniemi et al. 2019, see the header comment) of generated
/// features fake_feats [M, D] against real_feats [N, D], with k-th nearest neighbour radii
/// (k >= 1, default 3; both sets need more than k points). Distances are computed in float64 in
/// row chunks of chunk_size (default 1024, >= 1) to bound memory at chunk_size * max(N, M) doubles.
/// The paper compares sets of equal size; radii grow as a set shrinks.
inline PrecisionRecall precision_recall(const Tensor& real_feats, const Tensor& fake_feats,
                                        int64_t k = 3, int64_t chunk_size = 1024) {
  check(k >= 1, "precision_recall: k must be >= 1, got ", k);
  check(chunk_size >= 1, "precision_recall: chunk_size must be >= 1, got ", chunk_size);
  check(real_feats.defined() && fake_feats.defined() && real_feats.dim() == 2 &&
            fake_feats.dim() == 2 && real_feats.size(1) == fake_feats.size(1),
        "precision_recall: features must be [N, D] and [M, D] with the same D, got ",
        real_feats.defined() ? c10::str(real_feats.sizes()) : std::string("undefined"), " and ",
        fake_feats.defined() ? c10::str(fake_feats.sizes()) : std::string("undefined"));
  check(real_feats.size(0) > k && fake_feats.size(0) > k,
        "precision_recall: each set needs more than k = ", k, " points, got ", real_feats.size(0),
        " real and ", fake_feats.size(0), " generated");
  const Tensor r = real_feats.detach().to(at::kCPU, at::kDouble).contiguous();
  const Tensor f = fake_feats.detach().to(at::kCPU, at::kDouble).contiguous();
  const Tensor real_radii = detail::knn_radii(r, k, chunk_size),
               fake_radii = detail::knn_radii(f, k, chunk_size);
  PrecisionRecall pr;
  pr.precision = detail::manifold_coverage(r, real_radii, f, chunk_size);
  pr.recall = detail::manifold_coverage(f, fake_radii, r, chunk_size);
  return pr;
}

/// Classifier features of a reference set, with their statistics (compute once, evaluate often).
struct FashionReference {
  /// float32 [N, 128].
  Tensor features;
  FeatureStats stats;
  /// E.g. "fashion_mnist/test".
  std::string name;
};

/// The reference features of a Fashion-MNIST-shaped dataset (e.g. load_fashion_mnist("test")).
inline FashionReference make_fashion_reference(FashionClassifier& classifier,
                                               const Dataset& reference) {
  FashionReference ref;
  ref.features = classifier_features(classifier, reference.data);
  ref.stats = feature_stats(ref.features);
  ref.name = reference.name;
  return ref;
}

/// What evaluate_fashion_mnist reports.
struct EvalResult {
  /// Frechet distance between the classifier features of the samples and of the reference set.
  double fd = 0;
  /// k-NN precision and recall (k = 3) against the first min(num_samples, reference size)
  /// reference features, so that both sets have the same size as in the paper.
  double precision = 0;
  double recall = 0;
  int64_t num_samples = 0;
};

/// Evaluates generated images samples [N, 1, 28, 28] in [-1, 1] (N >= 4) against a reference.
inline EvalResult evaluate_fashion_mnist(const Tensor& samples, FashionClassifier& classifier,
                                         const FashionReference& reference) {
  check(samples.defined() && samples.dim() == 4 && samples.size(0) >= 4 && samples.size(1) == 1 &&
            samples.size(2) == 28 && samples.size(3) == 28,
        "evaluate_fashion_mnist: samples must be [N, 1, 28, 28] with N >= 4, got ",
        samples.defined() ? c10::str(samples.sizes()) : std::string("undefined"));
  check(reference.features.defined() && reference.features.size(0) >= 4,
        "evaluate_fashion_mnist: the reference '", reference.name, "' has no features");
  const Tensor feats = classifier_features(classifier, samples);
  EvalResult r;
  r.num_samples = samples.size(0);
  r.fd = frechet_distance(feature_stats(feats), reference.stats);
  const int64_t m = std::min(feats.size(0), reference.features.size(0));
  const PrecisionRecall pr =
      precision_recall(reference.features.narrow(0, 0, m), feats.narrow(0, 0, m), 3);
  r.precision = pr.precision;
  r.recall = pr.recall;
  return r;
}

/// The same against the Fashion-MNIST `reference_split` ("test" by default; loaded from the default
/// directory, see load_fashion_mnist) with `classifier` (default: the shipped one, see
/// load_fashion_classifier). Computes the reference features on every call (a few seconds); keep a
/// FashionReference to evaluate repeatedly.
inline EvalResult evaluate_fashion_mnist(const Tensor& samples,
                                         FashionClassifier classifier = nullptr,
                                         const std::string& reference_split = "test") {
  if (classifier.is_empty()) classifier = load_fashion_classifier();
  const FashionReference ref =
      make_fashion_reference(classifier, load_fashion_mnist(reference_split));
  return evaluate_fashion_mnist(samples, classifier, ref);
}

}  // namespace diffuse
