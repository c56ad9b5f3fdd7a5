// SPDX-License-Identifier: Apache-2.0
// DistributedOptions::backend on this build: bad values and "nccl" without NCCL are errors naming
// them; "auto" resolves to Gloo for CPU tensors (and to NCCL for CUDA tensors only where LibTorch
// has it). The two-process CUDA/NCCL runs are in tests/gpu.
#if __has_include(<torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>) && __has_include(<gloo/config.h>) && \
    defined(USE_C10D_GLOO)
#include <diffuse/training/distributed.h>

#include <unistd.h>

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "test_util.h"

namespace diffuse {
namespace {

TEST(DistributedBackend, BadValuesAreErrorsNamingThem) {
  EXPECT_ERROR_NAMING(parse_distributed_backend("mpi"), "'mpi'");
  EXPECT_ERROR_NAMING(parse_distributed_backend("NCCL"), "'NCCL'");
  for (const auto& [name, value] : distributed_backend_names()) EXPECT_EQ(to_string(value), name);
  DistributedOptions o;
  o.backend = DistributedBackend::nccl;
  if (DIFFUSE_HAS_NCCL) {
    EXPECT_NO_THROW(o.validate());
  } else {
    EXPECT_ERROR_NAMING(o.validate(), "no NCCL");
  }
}

TEST(DistributedBackend, AutoAndGlooResolveToGlooForCpuTensors) {
  for (const char* backend : {"auto", "gloo"}) {
    DistributedOptions o;
    o.master_port = 20000 + static_cast<int>(::getpid() % 20000) + (std::string(backend) == "gloo");
    o.backend = parse_distributed_backend(backend);
    DistributedContext ctx(o);
    EXPECT_EQ(ctx.backend_for(false), "gloo") << backend;
    EXPECT_EQ(ctx.backend_for(true),
              std::string(backend) == "auto" && DIFFUSE_HAS_NCCL ? "nccl" : "gloo");
    std::vector<Tensor> v{at::full({3}, 2.0)};
    ctx.all_reduce_mean(v);  // world size 1: unchanged
    EXPECT_TRUE(at::equal(v[0], at::full({3}, 2.0)));
  }
}

}  // namespace
}  // namespace diffuse
#endif
