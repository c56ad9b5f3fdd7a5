// SPDX-License-Identifier: Apache-2.0
// The lightest LibTorch include that gives a usable at::Tensor type (~2 s per translation unit).
// Interface headers include only this; implementation headers include <diffuse/detail/aten.h>.
#pragma once

#include <ATen/core/Tensor.h>

namespace diffuse {
using Tensor = at::Tensor;
}  // namespace diffuse
