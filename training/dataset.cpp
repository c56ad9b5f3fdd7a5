// SPDX-License-Identifier: Apache-2.0
// Declared in <diffuse/training/dataset.h>.
#include <diffuse/training/dataset.h>

#include <ATen/ATen.h>

#include <diffuse/config.h>

namespace diffuse {

void Dataset::validate() const {
  check(data.defined() && data.dim() >= 2 && data.size(0) > 0, "dataset '", name,
        "' has no examples (data must be [N, ...] with N > 0)");
  check(at::isFloatingType(data.scalar_type()), "dataset '", name,
        "' data must be floating point, got ", data.scalar_type());
  if (labels.defined()) {
    check(labels.dim() == 1 && labels.size(0) == data.size(0), "dataset '", name, "' has ",
          data.size(0), " examples but labels of shape ", labels.sizes());
    check(num_classes > 0, "dataset '", name, "' has labels but num_classes = ", num_classes);
    const int64_t lo = labels.min().item<int64_t>(), hi = labels.max().item<int64_t>();
    check(lo >= 0 && hi < num_classes, "dataset '", name, "' labels must be in [0, ", num_classes,
          "), got range [", lo, ", ", hi, "]");
  }
}

}  // namespace diffuse
