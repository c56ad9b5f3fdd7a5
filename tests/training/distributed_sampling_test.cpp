// SPDX-License-Identifier: Apache-2.0
// Sampling sharded across ranks (training/distributed/sampling.h): the partition of the chunks,
// and two real processes (started with training/distributed/launch.h, gathering with
// DistributedContext::all_gather over Gloo) whose gathered images equal the single-process loop's
// bit for bit, for an even split, an uneven one and one where a rank has nothing to do.
#if __has_include(<torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>) && __has_include(<gloo/config.h>) && \
    defined(USE_C10D_GLOO)
#include <diffuse/training/distributed.h>
#include <diffuse/training/distributed/launch.h>
#include <diffuse/training/distributed/sampling.h>

#include <diffuse/all.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fcntl.h>
#include <unistd.h>

#include <ATen/Parallel.h>
#include <torch/serialize.h>

#include <gtest/gtest.h>

#include "temp_dir.h"
#include "test_util.h"

namespace {

using namespace diffuse;
namespace fs = std::filesystem;

using diffuse::testing::read_text_file;

TEST(ShardChunks, ContiguousBalancedAndComplete) {
  for (int64_t chunks = 0; chunks <= 9; ++chunks) {
    for (int world = 1; world <= 4; ++world) {
      int64_t next = 0;
      for (int r = 0; r < world; ++r) {
        const auto c = shard_chunks(chunks, r, world);
        EXPECT_EQ(c.first, next) << chunks << " chunks, rank " << r << " of " << world;
        const int64_t n = c.second - c.first;
        EXPECT_TRUE(n == chunks / world || n == chunks / world + 1);
        EXPECT_EQ(n, chunks / world + (r < chunks % world ? 1 : 0));
        next = c.second;
      }
      EXPECT_EQ(next, chunks);
    }
  }
  // Items follow whole chunks: 7 items in chunks of 2 -> chunks {0,1},{2,3} | {4,5},{6}.
  EXPECT_EQ(shard_items(7, 2, 0, 2), (std::pair<int64_t, int64_t>{0, 4}));
  EXPECT_EQ(shard_items(7, 2, 1, 2), (std::pair<int64_t, int64_t>{4, 7}));
  EXPECT_EQ(shard_items(3, 5, 1, 2), (std::pair<int64_t, int64_t>{3, 3}));  // no chunk left
  try {
    shard_chunks(4, 2, 2);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("rank must be in [0, 2), got 2"), std::string::npos);
  }
}

/// A small nonlinear network that mixes the pixels of each image (a batched GEMM, as in a real
/// model), and a stochastic sampler, so that seeds and batches both matter.
Tensor make_images(int64_t start, int64_t count) {
  at::Generator g = at::detail::createCPUGenerator(3);
  const Tensor w = at::randn({16, 16}, g, at::kFloat) * 0.25;
  Network net = [w](const Tensor& x, const Tensor& t, const Conditioning&) {
    const Tensor h = at::tanh(x.reshape({x.size(0), 16}).matmul(w));
    return (h * (t / 1000.0).to(x.scalar_type()).view({-1, 1})).view_as(x);
  };
  Denoiser denoiser(net);
  auto sampler = sampler_from_spec("euler_a");
  auto schedule = make_schedule("discrete");
  SampleOptions so;
  so.num_steps = 4;
  so.seed = 100 + static_cast<uint64_t>(start);
  const Tensor noise = diffuse::randn({count, 1, 4, 4}, so.seed, at::TensorOptions(at::kFloat));
  return diffuse::sample(*sampler, denoiser, *schedule, noise, so);
}

struct Case {
  int64_t num, chunk;
};
const Case kCases[] = {{8, 2}, {7, 2}, {3, 5}};  // even, uneven, rank 1 idle

TEST(ShardedSamplingWorker, Main) {
  const char* dir = std::getenv("DIFFUSE_SHARD_DIR");
  if (dir == nullptr) GTEST_SKIP() << "runs only as a worker of ShardedSampling";
  int rc = 0;
  try {
    at::set_num_threads(1);
    DistributedContext ctx(DistributedOptions::from_env(std::chrono::milliseconds(20000)));
    std::vector<Tensor> results;
    for (const Case& c : kCases) {
      results.push_back(sample_sharded(c.num, c.chunk, ctx.rank(), ctx.world_size(), {1, 4, 4},
                                       at::kFloat, make_images,
                                       [&ctx](const Tensor& t) { return ctx.all_gather(t); }));
    }
    torch::save(results, std::string(dir) + "/rank" + std::to_string(ctx.rank()) + ".pt");
  } catch (const std::exception& e) {
    std::ofstream(std::string(dir) + "/error" + std::getenv("RANK") + ".txt") << e.what();
    rc = 5;
  }
  std::fflush(nullptr);
  std::_Exit(rc);
}

TEST(ShardedSampling, TwoRanksGatherTheSingleProcessImagesBitForBit) {
  at::set_num_threads(1);
  diffuse::test::TempDir dir("sharded_sampling");
  LaunchOptions o;
  o.args = {"--gtest_filter=ShardedSamplingWorker.Main"};
  o.nproc = 2;
  o.env = {"DIFFUSE_SHARD_DIR=" + dir.path.string()};
  o.limit = std::chrono::seconds(60);
  o.name = "sharded sampling workers";
  const int devnull = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  o.out_fd = devnull;  // the workers' gtest chatter
  const LaunchResult r = launch_processes(o);
  ::close(devnull);
  ASSERT_EQ(r.exit_code, 0) << r.message << "\n"
                            << read_text_file(dir.path / "error0.txt")
                            << read_text_file(dir.path / "error1.txt");
  for (int rank = 0; rank < 2; ++rank) {
    std::vector<Tensor> got;
    torch::load(got, dir / ("rank" + std::to_string(rank) + ".pt"));
    ASSERT_EQ(got.size(), std::size(kCases));
    for (size_t i = 0; i < got.size(); ++i) {
      const Case& c = kCases[i];
      // The single-process loop over the same chunks.
      const Tensor want = sample_sharded(c.num, c.chunk, 0, 1, {1, 4, 4}, at::kFloat, make_images);
      std::vector<Tensor> loop;
      for (int64_t s = 0; s < c.num; s += c.chunk)
        loop.push_back(make_images(s, std::min(c.chunk, c.num - s)));
      ASSERT_TRUE(at::equal(want, at::cat(loop)));
      EXPECT_TRUE(at::equal(got[i], want))
          << "rank " << rank << ", num " << c.num << ", chunk " << c.chunk << ": max diff "
          << (got[i] - want).abs().max().item<double>();
    }
  }
  // Not vacuous: the chunks differ from each other, so a gather in the wrong order (or a rank's
  // block replaced by another's, or by the zero padding) would fail the comparison.
  const Tensor a = make_images(0, 2), b = make_images(2, 2);
  EXPECT_GT((a - b).abs().max().item<double>(), 1e-2);
  EXPECT_GT(a.abs().min().item<double>(), 0.0);
}

}  // namespace
#endif  // c10d with Gloo available
