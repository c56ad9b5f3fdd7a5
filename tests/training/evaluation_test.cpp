// SPDX-License-Identifier: Apache-2.0
// training/evaluation.h: the Frechet distance against closed forms (diagonal and commuting
// covariances), from samples, and its invariants; k-NN precision/recall against a hand-worked
// example and its extremes; the shipped classifier loads, classifies the test split and separates
// real images from noise.
#include <diffuse/noise.h>  // detail::cpu_generator
#include <diffuse/training/evaluation.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace diffuse {
namespace {

FeatureStats stats_of(const Tensor& mean, const Tensor& cov) {
  FeatureStats s;
  s.mean = mean.to(at::kDouble);
  s.cov = cov.to(at::kDouble);
  s.count = 1000;
  return s;
}

TEST(FrechetDistance, DiagonalCovariancesMatchTheClosedForm) {
  // |mu1 - mu2|^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2.
  const Tensor mu1 = at::tensor({0.5, -1.0, 2.0, 0.0}, at::kDouble),
               mu2 = at::tensor({0.0, 1.0, 2.5, -3.0}, at::kDouble);
  const Tensor a = at::tensor({1.0, 4.0, 0.25, 9.0}, at::kDouble),
               b = at::tensor({2.0, 1.0, 0.25, 0.01}, at::kDouble);
  const double expected =
      (mu1 - mu2).pow(2).sum().item<double>() + (a.sqrt() - b.sqrt()).pow(2).sum().item<double>();
  EXPECT_NEAR(frechet_distance(stats_of(mu1, at::diag(a)), stats_of(mu2, at::diag(b))), expected,
              1e-10);
  EXPECT_NEAR(expected,
              0.25 + 4 + 0.25 + 9 + (1 - std::sqrt(2.0)) * (1 - std::sqrt(2.0)) + 1 + 0 + 2.9 * 2.9,
              1e-12);
}

TEST(FrechetDistance, CommutingFullCovariancesMatchTheClosedForm) {
  // S2 = c S1 (non-diagonal): Tr(S1 + S2 - 2 (S1 S2)^{1/2}) = (1 - sqrt(c))^2 Tr(S1).
  at::Generator gen = detail::cpu_generator(1);
  const Tensor m = at::randn({6, 6}, gen, at::kDouble);
  const Tensor s1 = at::matmul(m, m.t()) + 0.1 * at::eye(6, at::kDouble);
  const double c = 3.0;
  const Tensor mu = at::zeros({6}, at::kDouble);
  const double expected = (1 - std::sqrt(c)) * (1 - std::sqrt(c)) * s1.trace().item<double>();
  EXPECT_NEAR(frechet_distance(stats_of(mu, s1), stats_of(mu, c * s1)), expected, 1e-9 * expected);
  // A rank-deficient covariance (zero eigenvalues, round-off may make them slightly negative) is
  // fine; the square roots of round-off eigenvalues (~1e-15) limit the accuracy to ~1e-7.
  const Tensor low = at::matmul(m.narrow(1, 0, 2), m.narrow(1, 0, 2).t());
  EXPECT_NEAR(frechet_distance(stats_of(mu, low), stats_of(mu, 4.0 * low)),
              low.trace().item<double>(), 1e-5);
  EXPECT_NEAR(frechet_distance(stats_of(mu, low), stats_of(mu, low)), 0.0, 1e-5);
}

TEST(FrechetDistance, MatchesPytorchFidFormulaOnAFixedPair) {
  // Golden value: mseitzer/pytorch-fid calculate_frechet_distance's formula (np.cov, scipy
  // linalg.sqrtm(s1 @ s2)) in numpy 1.24 / scipy 1.10 on a_ij = sin(0.7 i + 1.3 j) + 0.1 j,
  // b_ij = cos(0.3 i (j + 1)) + 0.05 i [j == 2], i < 50, j < 5: 3.5266140410856823 (a, b) and
  // 3.526614051250904 (b, a); sqrtm's own error is ~1e-8. Printed by
  // tests/reference/frechet_distance.py (pytorch-fid b9c1811's function itself).
  const Tensor i = at::arange(50, at::kDouble).unsqueeze(1),
               j = at::arange(5, at::kDouble).unsqueeze(0);
  const Tensor a = at::sin(0.7 * i + 1.3 * j) + 0.1 * j;
  const Tensor b = at::cos(0.3 * i * (j + 1)) + 0.05 * i * j.eq(2).to(at::kDouble);
  EXPECT_NEAR(frechet_distance(a, b), 3.5266140410856823, 3e-8);
  EXPECT_NEAR(frechet_distance(b, a), 3.5266140410856823, 3e-8);
}

TEST(FrechetDistance, FromSamplesIsZeroForOneSetSymmetricAndConsistent) {
  at::Generator gen = detail::cpu_generator(2);
  const int64_t n = 20000, d = 4;
  const Tensor a = at::randn({n, d}, gen, at::kDouble);
  // b ~ N(mu, diag(s^2)) with s = (1, 2, 0.5, 1), mu = (1, 0, 0, -1): FD = 2 + (1-2)^2 + (1-0.5)^2
  // = 3.25.
  const Tensor s = at::tensor({1.0, 2.0, 0.5, 1.0}, at::kDouble),
               mu = at::tensor({1.0, 0.0, 0.0, -1.0}, at::kDouble);
  const Tensor b = at::randn({n, d}, gen, at::kDouble) * s + mu;
  const double ab = frechet_distance(a, b), ba = frechet_distance(b, a);
  EXPECT_NEAR(ab, 3.25, 0.1);
  EXPECT_NEAR(ab, ba, 1e-9 * ab);
  EXPECT_NEAR(frechet_distance(a, a), 0.0, 1e-9);
  // Statistics match np.cov (unbiased) and np.mean.
  const FeatureStats st = feature_stats(b.narrow(0, 0, 5));
  EXPECT_EQ(st.count, 5);
  const Tensor c = b.narrow(0, 0, 5) - b.narrow(0, 0, 5).mean(0);
  EXPECT_TRUE(at::allclose(st.cov, at::matmul(c.t(), c) / 4.0, 1e-12, 1e-12));
  EXPECT_THROW(frechet_distance(a, b.narrow(1, 0, 3)), Error);
  EXPECT_THROW(feature_stats(a.narrow(0, 0, 1)), Error);
}

TEST(PrecisionRecall, HandWorkedOneDimensionalExample) {
  // k = 1. Real {0, 1, 2, 3, 10}: radii (squared) 1, 1, 1, 1, 49. Fake {0.5, 5, 20.5}: 0.5 is
  // within 1 of 0; 5 is within 7 of 10 (25 <= 49); 20.5 is not (110.25 > 49): precision 2/3. Fake
  // radii: 0.5 -> 4.5^2, 5 -> 4.5^2, 20.5 -> 15.5^2. Real 0..3 lie within 4.5 of 0.5; 10 lies
  // within 15.5 of 20.5 (10.5): recall 1. With k = 2 the fake radii are 20^2, 15.5^2, 20^2.
  const Tensor real = at::tensor({0.0, 1.0, 2.0, 3.0, 10.0}, at::kDouble).unsqueeze(1);
  const Tensor fake = at::tensor({0.5, 5.0, 20.5}, at::kDouble).unsqueeze(1);
  for (int64_t chunk : {1, 2, 1024}) {
    const PrecisionRecall pr = precision_recall(real, fake, 1, chunk);
    EXPECT_NEAR(pr.precision, 2.0 / 3.0, 1e-12) << chunk;
    EXPECT_NEAR(pr.recall, 1.0, 1e-12) << chunk;
  }
  // k = 2, real radii: 0 -> 2^2, 1 -> 1, 2 -> 1, 3 -> 2^2, 10 -> 8^2: 20.5 still outside (10.5 >
  // 8).
  EXPECT_NEAR(precision_recall(real, fake, 2).precision, 2.0 / 3.0, 1e-12);
  // A point exactly on a radius counts as inside ("<=", as the reference code).
  const Tensor fake_edge =
      at::tensor({4.0, 17.0, 30.0}, at::kDouble).unsqueeze(1);  // 3 + 1 and 10 + 7
  EXPECT_NEAR(precision_recall(real, fake_edge, 1).precision, 2.0 / 3.0, 1e-12);
  EXPECT_THROW(precision_recall(real, fake, 3), Error);  // fake has only 3 points
}

TEST(PrecisionRecall, IdenticalSetsAreOneAndFarSetsAreZero) {
  at::Generator gen = detail::cpu_generator(3);
  const Tensor a = at::randn({400, 8}, gen, at::kFloat);
  PrecisionRecall pr = precision_recall(a, a.clone());
  EXPECT_EQ(pr.precision, 1.0);
  EXPECT_EQ(pr.recall, 1.0);
  pr = precision_recall(a, a + 100.0);
  EXPECT_EQ(pr.precision, 0.0);
  EXPECT_EQ(pr.recall, 0.0);
  // Fake = a tight cluster inside the real cloud: high precision, low recall.
  pr = precision_recall(a, 0.05 * at::randn({400, 8}, gen, at::kFloat));
  EXPECT_GT(pr.precision, 0.9);
  EXPECT_LT(pr.recall, 0.2);
}

bool have_asset_env() {
  return std::getenv("DIFFUSE_ASSET_DIR") || std::getenv("DIFFUSE_SOURCE_DIR");
}

bool have_fashion_mnist() {
  return std::filesystem::exists(std::filesystem::path(fashion_mnist_default_dir()) /
                                 "t10k-images-idx3-ubyte.gz");
}

TEST(FashionClassifier, ShapesAndParameterCount) {
  FashionClassifier model;
  int64_t count = 0;
  for (const auto& p : model->parameters()) count += p.numel();
  EXPECT_EQ(count, 130890);
  const Tensor x = at::zeros({3, 1, 28, 28});
  EXPECT_EQ(model->features(x).sizes(), at::IntArrayRef({3, FashionClassifierImpl::kFeatureDim}));
  EXPECT_EQ(model->forward(x).sizes(), at::IntArrayRef({3, 10}));
  EXPECT_THROW(model->forward(at::zeros({3, 3, 28, 28})), Error);
}

TEST(FashionClassifier, MissingFilesAreErrorsListingThePlacesTried) {
  try {
    load_fashion_classifier("/nonexistent/clf.pt");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/clf.pt"), std::string::npos) << e.what();
  }
  const char* old_asset = std::getenv("DIFFUSE_ASSET_DIR");
  const char* old_source = std::getenv("DIFFUSE_SOURCE_DIR");
  const std::string keep_asset = old_asset ? old_asset : "",
                    keep_source = old_source ? old_source : "";
  ::setenv("DIFFUSE_ASSET_DIR", "/nonexistent/assets", 1);
  ::setenv("DIFFUSE_SOURCE_DIR", "/nonexistent/source", 1);
  std::string what;
  try {
    load_fashion_classifier();
  } catch (const Error& e) {
    what = e.what();
  }
  old_asset ? ::setenv("DIFFUSE_ASSET_DIR", keep_asset.c_str(), 1)
            : ::unsetenv("DIFFUSE_ASSET_DIR");
  old_source ? ::setenv("DIFFUSE_SOURCE_DIR", keep_source.c_str(), 1)
             : ::unsetenv("DIFFUSE_SOURCE_DIR");
#ifndef DIFFUSE_ASSET_DIR
  EXPECT_NE(what.find("/nonexistent/assets/fashion_mnist_classifier.pt"), std::string::npos)
      << what;
  EXPECT_NE(what.find("/nonexistent/source/training/assets/fashion_mnist_classifier.pt"),
            std::string::npos)
      << what;
#endif
}

TEST(FashionClassifier, TrainingIsSeededAndReducesTheLoss) {
  // Random images with labels = a function of the mean intensity: learnable, tiny, fast.
  at::Generator gen = detail::cpu_generator(11);
  Dataset ds;
  ds.data = at::rand({256, 1, 28, 28}, gen) * 2 - 1;
  ds.data.add_((at::arange(256) % 10).to(at::kFloat).div(10).reshape({256, 1, 1, 1}));
  ds.labels = at::arange(256, at::kLong) % 10;
  ds.num_classes = 10;
  ds.name = "synthetic";
  std::vector<double> losses;
  auto opts = ClassifierTrainOptions().epochs(3).batch_size(32).seed(4).on_epoch(
      [&](int64_t, double loss, double) { losses.push_back(loss); });
  FashionClassifier a = train_fashion_classifier(ds, opts);
  FashionClassifier b = train_fashion_classifier(ds, opts.on_epoch(nullptr));
  FashionClassifier c =
      train_fashion_classifier(ds, ClassifierTrainOptions().epochs(3).batch_size(32).seed(5));
  ASSERT_EQ(losses.size(), 3u);
  EXPECT_LT(losses[2], losses[0]);
  const auto pa = a->parameters(), pb = b->parameters(), pc = c->parameters();
  for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(pa[i].equal(pb[i])) << i;
  EXPECT_FALSE(pa[0].equal(pc[0]));
  EXPECT_THROW(train_fashion_classifier(ds, ClassifierTrainOptions().epochs(0)), Error);
}

TEST(FashionClassifier, SaveLoadRoundTripIsExact) {
  const std::string path =
      (std::filesystem::temp_directory_path() / "diffuse_eval_test_clf.pt").string();
  FashionClassifier a;
  a->initialize(detail::cpu_generator(5));
  save_fashion_classifier(a, path);
  FashionClassifier b = load_fashion_classifier(path);
  std::filesystem::remove(path);
  const Tensor x = at::rand({2, 1, 28, 28}) * 2 - 1;
  EXPECT_TRUE(a->forward(x).equal(b->forward(x)));
}

TEST(FashionClassifier, ShippedModelClassifiesAndSeparatesRealFromNoise) {
  if (!have_asset_env())
    GTEST_SKIP() << "set DIFFUSE_SOURCE_DIR (ctest does) to find training/assets";
  if (!have_fashion_mnist())
    GTEST_SKIP() << "Fashion-MNIST not installed in " << fashion_mnist_default_dir();
  FashionClassifier clf = load_fashion_classifier();
  const Dataset test = load_fashion_mnist("test", "", 2000);
  const double acc = classifier_accuracy(clf, test);
  EXPECT_GT(acc, 0.85);

  const FashionReference ref = make_fashion_reference(clf, test);
  const Dataset train = load_fashion_mnist("train", "", 1000);
  const EvalResult real = evaluate_fashion_mnist(train.data, clf, ref);
  at::Generator gen = detail::cpu_generator(0);
  const EvalResult noise =
      evaluate_fashion_mnist(at::rand({1000, 1, 28, 28}, gen) * 2 - 1, clf, ref);
  EXPECT_EQ(real.num_samples, 1000);
  EXPECT_LT(real.fd * 20, noise.fd) << "real " << real.fd << " noise " << noise.fd;
  EXPECT_GT(real.precision, 0.6);
  EXPECT_GT(real.recall, 0.6);
  // Uniform noise: no real point lies near it (recall 0), but k-NN precision is generous to
  // outliers: noise features fall inside the large balls of atypical real images (0.25 measured).
  EXPECT_LT(noise.recall, 0.02) << "noise precision " << noise.precision << " recall "
                                << noise.recall;
  EXPECT_LT(noise.precision, 0.5) << "noise precision " << noise.precision << " recall "
                                  << noise.recall;
  EXPECT_THROW(evaluate_fashion_mnist(at::zeros({10, 3, 28, 28}), clf, ref), Error);
}

}  // namespace
}  // namespace diffuse
