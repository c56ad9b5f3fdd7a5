// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/detail/step_buffers.h>.
#include <diffuse/detail/step_buffers.h>

#include <diffuse/detail/aten.h>

namespace diffuse::detail {

namespace {

thread_local StepBuffers* tls_step_buffers = nullptr;

/// Whether only the pool refers to `t` (no other Tensor, view or storage reference).
bool pool_only(const Tensor& t) { return t.use_count() == 1 && t.storage().use_count() == 1; }

}  // namespace

Tensor StepBuffers::empty(at::IntArrayRef sizes, const at::TensorOptions& options) {
  if (!options.device().is_cpu() || options.layout() != at::kStrided)
    return at::empty(sizes, options);
  const auto dtype = options.dtype();
  for (Tensor& s : slots_) {
    if (s.defined() && pool_only(s) && s.dtype() == dtype && s.sizes() == sizes &&
        s.is_contiguous()) {  // every slot holds a CPU tensor (only those are kept)
      ++reused_;
      return s;
    }
  }
  Tensor t = at::empty(sizes, options);
  ++allocated_;
  // Keep it in an empty slot, else in place of a buffer nobody uses (of another shape); when
  // every slot is in use it is not kept.
  Tensor* keep = nullptr;
  for (Tensor& s : slots_) {
    if (!s.defined()) {
      keep = &s;
      break;
    }
    if (keep == nullptr && pool_only(s)) keep = &s;
  }
  if (keep != nullptr) *keep = t;
  return t;
}

StepBuffers* current_step_buffers() { return tls_step_buffers; }

StepBuffersScope::StepBuffersScope(StepBuffers* buffers) : previous_(tls_step_buffers) {
  tls_step_buffers = buffers;
}

StepBuffersScope::~StepBuffersScope() { tls_step_buffers = previous_; }

Tensor step_empty(at::IntArrayRef sizes, const at::TensorOptions& options) {
  if (StepBuffers* b = tls_step_buffers) return b->empty(sizes, options);
  return at::empty(sizes, options);
}

}  // namespace diffuse::detail
