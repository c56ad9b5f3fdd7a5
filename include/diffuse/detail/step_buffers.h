// SPDX-License-Identifier: Apache-2.0
// Buffer reuse within one sampling run. A sampler step makes the same few CPU tensors every step
// (the time tensor, x0, the next state) and drops the previous step's; at::empty costs a
// dispatch, a TensorImpl and an allocation each time, about a third of a small step's overhead.
// Sampler::sample() installs a StepBuffers for the calling thread (StepBuffersScope); while it is
// installed, fused::empty_as() and the denoiser's time tensor take their memory from it.
//
// A buffer is handed out again only when nothing outside the pool refers to it: neither its
// TensorImpl nor its storage has another reference (no copy of the Tensor, no view, no user
// callback holding it), and it still has the asked-for shape, dtype and contiguous strides. The
// numbers are those of fresh tensors: every user of these buffers writes all of them before
// reading. Only CPU tensors are pooled (a CUDA buffer may still be read by queued kernels when its
// last reference goes); other devices get at::empty.
#pragma once

#include <array>

#include <diffuse/tensor.h>

namespace diffuse::detail {

class StepBuffers {
 public:
  /// An uninitialised contiguous tensor of these sizes and options: a pooled buffer nothing else
  /// refers to, else a new one (kept in the pool where a slot is free).
  Tensor empty(at::IntArrayRef sizes, const at::TensorOptions& options);
  /// How many buffers were handed out again / newly allocated (for the tests).
  int64_t reused() const { return reused_; }
  int64_t allocated() const { return allocated_; }

 private:
  std::array<Tensor, 16> slots_;
  int64_t reused_ = 0;
  int64_t allocated_ = 0;
};

/// The StepBuffers installed on this thread, or nullptr.
StepBuffers* current_step_buffers();

/// Installs `buffers` on this thread for the scope's lifetime (nullptr: none), restoring the
/// previous one after (runs nest: a network that samples gets its own).
class StepBuffersScope {
 public:
  explicit StepBuffersScope(StepBuffers* buffers);
  ~StepBuffersScope();
  StepBuffersScope(const StepBuffersScope&) = delete;
  StepBuffersScope& operator=(const StepBuffersScope&) = delete;

 private:
  StepBuffers* previous_;
};

/// at::empty(sizes, options), from the thread's StepBuffers when one is installed.
Tensor step_empty(at::IntArrayRef sizes, const at::TensorOptions& options);

}  // namespace diffuse::detail
