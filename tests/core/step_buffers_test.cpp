// SPDX-License-Identifier: Apache-2.0
// The per-run step buffers (detail/step_buffers.h): a buffer is handed out again only when nothing
// else refers to it, sampling reuses the memory of the states it drops, and states, predictions
// and time tensors that the caller, a callback or the network keep are never overwritten.
#include <diffuse/detail/step_buffers.h>

#include <set>
#include <vector>

#include "test_util.h"

namespace diffuse {
namespace {

using detail::StepBuffers;
using detail::StepBuffersScope;

const void* address(const Tensor& t) { return t.data_ptr(); }

TEST(StepBuffers, ReusesABufferOnlyWhenNothingElseRefersToIt) {
  StepBuffers b;
  const at::TensorOptions f32 = at::TensorOptions().dtype(at::kFloat);
  std::set<const void*> first;
  {
    const Tensor t = b.empty({4, 8}, f32);
    // Held: a second request gets other memory.
    const Tensor u = b.empty({4, 8}, f32);
    EXPECT_NE(address(u), address(t));
    first = {address(t), address(u)};
  }
  EXPECT_EQ(b.allocated(), 2);
  // Both dropped: the next two requests get them back, allocating nothing.
  const Tensor again = b.empty({4, 8}, f32);
  const Tensor again2 = b.empty({4, 8}, f32);
  EXPECT_EQ(b.allocated(), 2);
  EXPECT_EQ(b.reused(), 2);
  EXPECT_EQ((std::set<const void*>{address(again), address(again2)}), first);
  EXPECT_EQ(again.sizes(), at::IntArrayRef({4, 8}));
}

TEST(StepBuffers, AViewOrStorageReferenceIsNeverHandedOut) {
  StepBuffers b;
  const at::TensorOptions f32 = at::TensorOptions().dtype(at::kFloat);
  Tensor a = b.empty({16}, f32);
  Tensor c = b.empty({16}, f32);
  const void* pa = address(a);
  const void* pc = address(c);
  Tensor d = b.empty({16}, f32);
  const void* pd = address(d);
  const Tensor view = a.narrow(0, 2, 4);
  const c10::Storage storage = c.storage();
  const Tensor copy = d;
  a = Tensor();
  c = Tensor();
  d = Tensor();
  std::vector<Tensor> fresh;
  for (int i = 0; i < 4; ++i) {
    fresh.push_back(b.empty({16}, f32));
    EXPECT_NE(address(fresh.back()), pa) << i;
    EXPECT_NE(address(fresh.back()), pc) << i;
    EXPECT_NE(address(fresh.back()), pd) << i;
  }
  EXPECT_EQ(b.reused(), 0);
  EXPECT_EQ(address(copy), pd);
  EXPECT_EQ(view.storage().data(), pa);
  EXPECT_EQ(storage.data(), pc);
}

TEST(StepBuffers, ShapeAndDtypeMustMatch) {
  StepBuffers b;
  const at::TensorOptions f32 = at::TensorOptions().dtype(at::kFloat);
  { (void)b.empty({2, 3}, f32); }
  // The same number of entries in another shape, or another dtype: not that buffer.
  const Tensor other_shape = b.empty({3, 2}, f32);
  const Tensor other_dtype = b.empty({2, 3}, at::TensorOptions().dtype(at::kDouble));
  EXPECT_EQ(b.reused(), 0);
  EXPECT_EQ(b.allocated(), 3);
  EXPECT_EQ(other_shape.sizes(), at::IntArrayRef({3, 2}));
  EXPECT_EQ(other_dtype.scalar_type(), at::kDouble);
  // The matching request gets it.
  const Tensor same = b.empty({2, 3}, f32);
  EXPECT_EQ(b.reused(), 1);
  EXPECT_EQ(same.scalar_type(), at::kFloat);
  EXPECT_TRUE(same.is_contiguous());
  EXPECT_EQ(b.allocated(), 3);
}

TEST(StepBuffers, EverySlotInUseStillGivesFreshBuffers) {
  StepBuffers b;
  const at::TensorOptions f32 = at::TensorOptions().dtype(at::kFloat);
  std::vector<Tensor> held;
  std::set<const void*> addresses;
  for (int i = 0; i < 20; ++i) {
    held.push_back(b.empty({8}, f32));
    addresses.insert(address(held.back()));
  }
  EXPECT_EQ(addresses.size(), 20u);
  EXPECT_EQ(b.allocated(), 20);
  // The kept ones come back once dropped; the others were never the pool's.
  held.clear();
  const Tensor again = b.empty({8}, f32);
  EXPECT_EQ(b.reused(), 1);
}

TEST(StepBuffers, ScopesNestAndRestore) {
  EXPECT_EQ(detail::current_step_buffers(), nullptr);
  StepBuffers outer, inner;
  {
    const StepBuffersScope s1(&outer);
    EXPECT_EQ(detail::current_step_buffers(), &outer);
    {
      const StepBuffersScope s2(&inner);
      EXPECT_EQ(detail::current_step_buffers(), &inner);
      (void)detail::step_empty({5}, at::TensorOptions().dtype(at::kFloat));
    }
    EXPECT_EQ(detail::current_step_buffers(), &outer);
  }
  EXPECT_EQ(detail::current_step_buffers(), nullptr);
  EXPECT_EQ(inner.allocated(), 1);
  EXPECT_EQ(outer.allocated(), 0);
  // Without a scope step_empty() is at::empty.
  EXPECT_EQ(detail::step_empty({3}, at::TensorOptions().dtype(at::kDouble)).numel(), 3);
}

struct PoolRun {
  std::unique_ptr<NoiseSchedule> schedule = make_schedule("discrete");
  Tensor noise = randn({2, 3, 8, 8}, 4);
  SampleOptions options;
  PoolRun() {
    options.num_steps = 12;
    options.seed = 3;
  }
};

/// What the network saw of the run's StepBuffers at its last call.
struct PoolSeen {
  bool always_installed = true;
  int64_t allocated = 0, reused = 0;
  std::vector<int64_t> allocated_per_call;
};

// An eps network (x * 0.1 + t / 1000) that records the time tensors it was given (when `times` is
// not null) and the run's buffer counts.
Denoiser recording_network(std::vector<Tensor>* times, PoolSeen* seen) {
  return Denoiser([times, seen](const Tensor& x, const Tensor& t, const Conditioning&) {
    if (times != nullptr) times->push_back(t);
    const StepBuffers* b = detail::current_step_buffers();
    seen->always_installed = seen->always_installed && b != nullptr;
    if (b != nullptr) {
      seen->allocated = b->allocated();
      seen->reused = b->reused();
      seen->allocated_per_call.push_back(b->allocated());
    }
    return x * 0.1 + (t / 1000.0).view({-1, 1, 1, 1});
  });
}

TEST(StepBuffers, SamplingReusesDroppedStatesAndNeverTouchesKeptOnes) {
  for (const char* spec : {"ddim", "euler", "dpmpp_2m", "dpmpp_3m", "euler_ancestral", "ddpm"}) {
    PoolRun r;
    // 1. Nothing kept: after the first steps every buffer comes back from the pool (the time
    // tensor, x0 and the next state of each step; multistep samplers keep a few in their history).
    PoolSeen plain_seen;
    const Tensor plain = sample(*make_sampler(spec), recording_network(nullptr, &plain_seen),
                                *r.schedule, r.noise, r.options);
    EXPECT_TRUE(plain_seen.always_installed) << spec;
    ASSERT_EQ(plain_seen.allocated_per_call.size(), static_cast<size_t>(r.options.num_steps));
    // Nothing new after the first half of the run.
    EXPECT_EQ(plain_seen.allocated, plain_seen.allocated_per_call[5]) << spec;
    EXPECT_LE(plain_seen.allocated, 16) << spec;
    EXPECT_GE(plain_seen.reused, r.options.num_steps) << spec;
    EXPECT_EQ(detail::current_step_buffers(), nullptr) << spec;  // the run's scope has ended
    // 2. Every state, prediction and time tensor kept (by the callback and the network): each
    // keeps its own memory and its values, and the result is the same bits.
    std::vector<Tensor> states, state_copies, x0s, x0_copies, times;
    r.options.on_step = [&](const StepInfo& s) {
      states.push_back(s.x);
      state_copies.push_back(s.x.clone());
      x0s.push_back(s.pred.x0);
      x0_copies.push_back(s.pred.x0.clone());
    };
    PoolSeen kept_seen;
    const Tensor kept = sample(*make_sampler(spec), recording_network(&times, &kept_seen),
                               *r.schedule, r.noise, r.options);
    EXPECT_TRUE(at::equal(kept, plain)) << spec;
    std::set<const void*> state_addresses;
    for (size_t i = 0; i < states.size(); ++i) {
      EXPECT_TRUE(at::equal(states[i], state_copies[i])) << spec << " step " << i;
      EXPECT_TRUE(at::equal(x0s[i], x0_copies[i])) << spec << " step " << i;
      state_addresses.insert(address(states[i]));
    }
    EXPECT_EQ(state_addresses.size(), states.size()) << spec;
    ASSERT_EQ(times.size(), static_cast<size_t>(r.options.num_steps)) << spec;
    std::set<double> distinct_times;
    for (const Tensor& t : times) distinct_times.insert(t[0].item<double>());
    EXPECT_EQ(distinct_times.size(), times.size()) << spec;  // none overwritten by a later step
  }
}

}  // namespace
}  // namespace diffuse
