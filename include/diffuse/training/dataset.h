// SPDX-License-Identifier: Apache-2.0
// An in-memory labelled dataset: what the loaders in training/data.h return and the trainer reads.
#pragma once

#include <cstdint>
#include <string>

#include <ATen/ATen.h>

#include <diffuse/config.h>
#include <diffuse/tensor.h>

namespace diffuse {

struct Dataset {
  /// Float images [N, C, H, W] scaled to [-1, 1], or points [N, D] for the 2-D toy sets.
  Tensor data;
  /// int64 [N] class ids in [0, num_classes), or undefined for unlabelled data.
  Tensor labels;
  /// 0 for unlabelled data.
  int64_t num_classes = 0;
  /// Where it came from, for logs ("fashion_mnist/train", "moons", a folder path, ...).
  std::string name;

  int64_t size() const { return data.defined() ? data.size(0) : 0; }

  /// Checks the invariants above; errors name the offending value.
  void validate() const {
    check(data.defined() && data.dim() >= 2 && data.size(0) > 0, "dataset '", name,
          "' has no examples (data must be [N, ...] with N > 0)");
    check(at::isFloatingType(data.scalar_type()), "dataset '", name, "' data must be floating point, got ",
          data.scalar_type());
    if (labels.defined()) {
      check(labels.dim() == 1 && labels.size(0) == data.size(0), "dataset '", name, "' has ", data.size(0),
            " examples but labels of shape ", labels.sizes());
      check(num_classes > 0, "dataset '", name, "' has labels but num_classes = ", num_classes);
      const int64_t lo = labels.min().item<int64_t>(), hi = labels.max().item<int64_t>();
      check(lo >= 0 && hi < num_classes, "dataset '", name, "' labels must be in [0, ", num_classes,
            "), got range [", lo, ", ", hi, "]");
    }
  }
};

}  // namespace diffuse
