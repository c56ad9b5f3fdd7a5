// SPDX-License-Identifier: Apache-2.0
// Trains the small Fashion-MNIST classifier whose features the evaluation (training/evaluation.h)
// uses, and writes it atomically. This is how training/assets/fashion_mnist_classifier.pt was made:
//   diffuse_example_train_classifier training/assets/fashion_mnist_classifier.pt
// Options: --epochs N (8), --seed S (0), --threads T (1; the result is reproducible for a fixed
// thread count), --data DIR (the Fashion-MNIST idx files; default as load_fashion_mnist).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include <ATen/Parallel.h>

#include <diffuse/training/data.h>
#include <diffuse/training/evaluation.h>

int main(int argc, char** argv) {
  std::string out = "fashion_mnist_classifier.pt", data_dir;
  diffuse::ClassifierTrainOptions options;
  int threads = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--epochs" && has_value) {
      options.epochs(std::atoll(argv[++i]));
    } else if (a == "--seed" && has_value) {
      options.seed(std::strtoull(argv[++i], nullptr, 10));
    } else if (a == "--threads" && has_value) {
      threads = std::atoi(argv[++i]);
    } else if (a == "--data" && has_value) {
      data_dir = argv[++i];
    } else if (!a.empty() && a[0] != '-') {
      out = a;
    } else {
      std::fprintf(stderr,
                   "usage: %s [OUT.pt] [--epochs N] [--seed S] [--threads T] [--data DIR]\n",
                   argv[0]);
      return 2;
    }
  }
  try {
    at::set_num_threads(threads);
    const diffuse::Dataset train = diffuse::load_fashion_mnist("train", data_dir);
    const diffuse::Dataset test = diffuse::load_fashion_mnist("test", data_dir);
    const auto start = std::chrono::steady_clock::now();
    options.on_epoch([&](int64_t epoch, double loss, double acc) {
      const double s =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::printf("epoch %lld  loss %.4f  test accuracy %.4f  (%.0f s)\n",
                  static_cast<long long>(epoch), loss, acc, s);
      std::fflush(stdout);
    });
    diffuse::FashionClassifier model = diffuse::train_fashion_classifier(train, options, &test);
    diffuse::save_fashion_classifier(model, out);
    diffuse::FashionClassifier loaded = diffuse::load_fashion_classifier(out);
    std::printf("wrote %s (%lld bytes); test accuracy after reload %.4f\n", out.c_str(),
                static_cast<long long>(std::filesystem::file_size(out)),
                diffuse::classifier_accuracy(loaded, test));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
