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

#include <cstdint>
#include <functional>
#include <string>

#include <ATen/core/Generator.h>
#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <diffuse/config.h>
#include <diffuse/tensor.h>
#include <diffuse/training/assets.h>
#include <diffuse/training/data.h>
#include <diffuse/training/dataset.h>

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

  void reset() override;

  /// Re-initialises every weight and bias from U(-1/sqrt(fan_in), 1/sqrt(fan_in)) drawn with `gen`
  /// (the distribution of LibTorch's default initialisation, but reproducible from a generator).
  void initialize(at::Generator gen);

  /// The 128-d penultimate features (after ReLU), [N, 128]. x: [N, 1, 28, 28], values in [-1, 1].
  Tensor features(const Tensor& x);

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
Tensor classifier_outputs(FashionClassifier& model, const Tensor& images, bool logits,
                          int64_t batch_size = 500);

/// Penultimate features [N, 128] (float32) of images [N, 1, 28, 28] in [-1, 1].
Tensor classifier_features(FashionClassifier& model, const Tensor& images,
                           int64_t batch_size = 500);

/// Share of ds's examples whose arg-max logit equals the label (ds must be labelled).
double classifier_accuracy(FashionClassifier& model, const Dataset& ds, int64_t batch_size = 500);

/// Trains a fresh FashionClassifier on `train` (Fashion-MNIST-shaped: [N, 1, 28, 28] in [-1, 1],
/// labels 0..9) with AdamW, cross-entropy, a cosine learning-rate decay and optional flips. All
/// randomness comes from one generator seeded options.seed, so on the CPU with a fixed thread
/// count the result is reproducible. `test` (optional, may be null) is only used for the accuracy
/// reported to options.on_epoch. Returns the model in eval mode.
FashionClassifier train_fashion_classifier(const Dataset& train,
                                           const ClassifierTrainOptions& options = {},
                                           const Dataset* test = nullptr);

/// Writes the classifier with torch::save, atomically (temp file + rename); errors name `path`.
/// Serialised through a stream, so the bytes depend only on the parameters (not on the file name).
void save_fashion_classifier(const FashionClassifier& model, const std::string& path);

/// The file name of the shipped classifier.
const char* fashion_classifier_file_name();

namespace detail {
/// load_fashion_classifier of an existing path (the asset search is inline: see assets.h).
FashionClassifier load_fashion_classifier_file(const std::string& file);
}  // namespace detail

/// Loads a FashionClassifier saved by save_fashion_classifier, in eval mode. With an empty `path`
/// the shipped file fashion_mnist_classifier.pt is searched in, in order:
///   1. $DIFFUSE_ASSET_DIR,
///   2. $DIFFUSE_SOURCE_DIR/training/assets,
///   3. the directory given at compile time by the macro DIFFUSE_ASSET_DIR (a string literal), if
///   defined.
/// Errors (diffuse::Error) name the file, or list every place tried when none has it.
inline FashionClassifier load_fashion_classifier(const std::string& path = "") {
  return detail::load_fashion_classifier_file(
      path.empty() ? find_asset(fashion_classifier_file_name(), "the Fashion-MNIST classifier")
                   : path);
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
FeatureStats feature_stats(const Tensor& feats);

/// Frechet distance between N(a.mean, a.cov) and N(b.mean, b.cov):
///   |mu_a - mu_b|^2 + Tr(S_a) + Tr(S_b) - 2 Tr((S_a^{1/2} S_b S_a^{1/2})^{1/2}),
/// in float64 with symmetric eigendecompositions (negative round-off eigenvalues clamped to 0;
/// the result is clamped to >= 0). Errors on mismatched dimensions.
double frechet_distance(const FeatureStats& a, const FeatureStats& b);

/// Frechet distance between Gaussians fitted to two feature sets [N_a, D] and [N_b, D] (N >= 2).
double frechet_distance(const Tensor& feats_a, const Tensor& feats_b);

/// Result of precision_recall.
struct PrecisionRecall {
  double precision = 0;
  double recall = 0;
};

namespace detail {

/// Squared Euclidean distances [rows of a, rows of b] in float64, clamped at 0.
Tensor squared_distances(const Tensor& a, const Tensor& b);

/// Squared distance of each point of `set` to its k-th nearest neighbour in `set`, itself excluded.
Tensor knn_radii(const Tensor& set, int64_t k, int64_t chunk);

/// Share of `query` points within radius of some point of `set`.
double manifold_coverage(const Tensor& set, const Tensor& radii, const Tensor& query,
                         int64_t chunk);

}  // namespace detail

/// Improved precision and recall (Kynkaanniemi et al. 2019, see the header comment) of generated
/// features fake_feats [M, D] against real_feats [N, D], with k-th nearest neighbour radii
/// (k >= 1, default 3; both sets need more than k points). Distances are computed in float64 in
/// row chunks of chunk_size (default 1024, >= 1) to bound memory at chunk_size * max(N, M) doubles.
/// The paper compares sets of equal size; radii grow as a set shrinks.
PrecisionRecall precision_recall(const Tensor& real_feats, const Tensor& fake_feats, int64_t k = 3,
                                 int64_t chunk_size = 1024);

/// Classifier features of a reference set, with their statistics (compute once, evaluate often).
struct FashionReference {
  /// float32 [N, 128].
  Tensor features;
  FeatureStats stats;
  /// E.g. "fashion_mnist/test".
  std::string name;
};

/// The reference features of a Fashion-MNIST-shaped dataset (e.g. load_fashion_mnist("test")).
FashionReference make_fashion_reference(FashionClassifier& classifier, const Dataset& reference);

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
EvalResult evaluate_fashion_mnist(const Tensor& samples, FashionClassifier& classifier,
                                  const FashionReference& reference);

/// The same against the Fashion-MNIST `reference_split` ("test" by default; loaded from the default
/// directory, see load_fashion_mnist) with `classifier` (default: the shipped one, see
/// load_fashion_classifier). Computes the reference features on every call (a few seconds); keep a
/// FashionReference to evaluate repeatedly.
inline EvalResult evaluate_fashion_mnist(const Tensor& samples,
                                         FashionClassifier classifier = nullptr,
                                         const std::string& reference_split = "test") {
  if (classifier.is_empty()) classifier = load_fashion_classifier();  // inline: the asset search
  const FashionReference ref =
      make_fashion_reference(classifier, load_fashion_mnist(reference_split));
  return evaluate_fashion_mnist(samples, classifier, ref);
}

}  // namespace diffuse
