// SPDX-License-Identifier: Apache-2.0
// Declared in <diffuse/training/evaluation.h>.
#include <diffuse/training/evaluation.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include <Eigen/Dense>

#include <ATen/ATen.h>
#include <torch/nn/functional/activation.h>
#include <torch/nn/functional/loss.h>
#include <torch/nn/functional/pooling.h>
#include <torch/optim/adamw.h>
#include <torch/serialize.h>
#include <torch/utils.h>

#include <ATen/CPUGeneratorImpl.h>
#include <diffuse/config.h>
#include <diffuse/training/atomic_file.h>
#include <diffuse/training/data.h>

namespace diffuse {

void FashionClassifierImpl::reset() {
  namespace nn = torch::nn;
  conv1 = register_module("conv1", nn::Conv2d(nn::Conv2dOptions(1, 32, 3).padding(1)));
  conv2 = register_module("conv2", nn::Conv2d(nn::Conv2dOptions(32, 64, 3).padding(1)));
  conv3 = register_module("conv3", nn::Conv2d(nn::Conv2dOptions(64, 64, 3).padding(1)));
  fc1 = register_module("fc1", nn::Linear(64 * 3 * 3, kFeatureDim));
  fc2 = register_module("fc2", nn::Linear(kFeatureDim, kNumClasses));
}

void FashionClassifierImpl::initialize(at::Generator gen) {
  torch::NoGradGuard no_grad;
  for (auto* layer :
       {static_cast<torch::nn::Module*>(conv1.get()), static_cast<torch::nn::Module*>(conv2.get()),
        static_cast<torch::nn::Module*>(conv3.get()), static_cast<torch::nn::Module*>(fc1.get()),
        static_cast<torch::nn::Module*>(fc2.get())}) {
    Tensor w = layer->named_parameters(false)["weight"], b = layer->named_parameters(false)["bias"];
    const double bound = 1.0 / std::sqrt(static_cast<double>(w[0].numel()));
    w.uniform_(-bound, bound, gen);
    b.uniform_(-bound, bound, gen);
  }
}

Tensor FashionClassifierImpl::features(const Tensor& x) {
  check(x.defined() && x.dim() == 4 && x.size(1) == 1 && x.size(2) == 28 && x.size(3) == 28,
        "FashionClassifier: input must be [N, 1, 28, 28], got ",
        x.defined() ? c10::str(x.sizes()) : std::string("undefined"));
  namespace F = torch::nn::functional;
  Tensor h = F::max_pool2d(at::relu(conv1->forward(x)), F::MaxPool2dFuncOptions(2));
  h = F::max_pool2d(at::relu(conv2->forward(h)), F::MaxPool2dFuncOptions(2));
  h = F::max_pool2d(at::relu(conv3->forward(h)), F::MaxPool2dFuncOptions(2));
  return at::relu(fc1->forward(h.flatten(1)));
}

Tensor classifier_outputs(FashionClassifier& model, const Tensor& images, bool logits,
                          int64_t batch_size) {
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

Tensor classifier_features(FashionClassifier& model, const Tensor& images, int64_t batch_size) {
  return classifier_outputs(model, images, false, batch_size);
}

double classifier_accuracy(FashionClassifier& model, const Dataset& ds, int64_t batch_size) {
  check(ds.labels.defined(), "classifier_accuracy: dataset '", ds.name, "' has no labels");
  const Tensor pred = classifier_outputs(model, ds.data, true, batch_size).argmax(1);
  return pred.eq(ds.labels).to(at::kDouble).mean().item<double>();
}

FashionClassifier train_fashion_classifier(const Dataset& train,
                                           const ClassifierTrainOptions& options,
                                           const Dataset* test) {
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
  at::Generator gen =
      at::make_generator<at::CPUGeneratorImpl>(options.seed());  // detail::cpu_generator
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

void save_fashion_classifier(const FashionClassifier& model, const std::string& path) {
  std::ostringstream os;
  torch::save(model, os);
  const std::string bytes = os.str();
  write_bytes_atomic(path, bytes.data(), bytes.size());
}

const char* fashion_classifier_file_name() { return "fashion_mnist_classifier.pt"; }

namespace detail {

FashionClassifier load_fashion_classifier_file(const std::string& file) {
  std::error_code ec;
  check_io(std::filesystem::is_regular_file(file, ec), "cannot read classifier '", file,
           "': no such file");
  FashionClassifier model;
  try {
    torch::load(model, file);
  } catch (const std::exception& e) {
    throw IOError("cannot load classifier '" + file + "': " + e.what());
  }
  model->eval();
  return model;
}

}  // namespace detail

FeatureStats feature_stats(const Tensor& feats) {
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

Eigen::MatrixXd to_eigen(const Tensor& t) {
  const Tensor c = t.to(at::kDouble).contiguous();
  // Row-major tensor -> column-major Eigen: copy through a row-major map.
  return Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(
      c.data_ptr<double>(), c.size(0), c.dim() == 2 ? c.size(1) : 1);
}

}  // namespace detail

double frechet_distance(const FeatureStats& a, const FeatureStats& b) {
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

double frechet_distance(const Tensor& feats_a, const Tensor& feats_b) {
  return frechet_distance(feature_stats(feats_a), feature_stats(feats_b));
}

namespace detail {

Tensor squared_distances(const Tensor& a, const Tensor& b) {
  const Tensor d =
      a.pow(2).sum(1, true) - 2.0 * at::matmul(a, b.t()) + b.pow(2).sum(1).unsqueeze(0);
  return d.clamp_min(0.0);
}

Tensor knn_radii(const Tensor& set, int64_t k, int64_t chunk) {
  std::vector<Tensor> out;
  for (int64_t i = 0; i < set.size(0); i += chunk) {
    const Tensor d = squared_distances(set.narrow(0, i, std::min(chunk, set.size(0) - i)), set);
    out.push_back(std::get<0>(d.kthvalue(k + 1, 1)));  // the smallest is the point itself (0)
  }
  return at::cat(out);
}

double manifold_coverage(const Tensor& set, const Tensor& radii, const Tensor& query,
                         int64_t chunk) {
  int64_t inside = 0;
  for (int64_t i = 0; i < query.size(0); i += chunk) {
    const Tensor d = squared_distances(query.narrow(0, i, std::min(chunk, query.size(0) - i)), set);
    inside += d.le(radii.unsqueeze(0)).any(1).sum().item<int64_t>();
  }
  return static_cast<double>(inside) / static_cast<double>(query.size(0));
}

}  // namespace detail

PrecisionRecall precision_recall(const Tensor& real_feats, const Tensor& fake_feats, int64_t k,
                                 int64_t chunk_size) {
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

FashionReference make_fashion_reference(FashionClassifier& classifier, const Dataset& reference) {
  FashionReference ref;
  ref.features = classifier_features(classifier, reference.data);
  ref.stats = feature_stats(ref.features);
  ref.name = reference.name;
  return ref;
}

EvalResult evaluate_fashion_mnist(const Tensor& samples, FashionClassifier& classifier,
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

}  // namespace diffuse
