// SPDX-License-Identifier: Apache-2.0
// DistributedContext with CUDA tensors, two real processes on loopback (this binary re-executed
// with --gtest_filter=GpuDistributedWorker.Main): backend "gloo" stages CUDA tensors through the
// host (one GPU is enough: both ranks use cuda:0); backend "auto" picks NCCL for CUDA tensors and
// needs two GPUs (NCCL refuses two ranks on one device), else it is skipped.
#if __has_include(<gloo/config.h>) && defined(USE_C10D_GLOO)
#include <diffuse/training/distributed.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <c10/cuda/CUDAGuard.h>
#include <torch/cuda.h>

#include <gtest/gtest.h>

extern char** environ;

namespace diffuse {
namespace {

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    if (fd >= 0) ::close(fd);
    return 29511;
  }
  const int port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

/// Runs two workers (ranks 0 and 1) with `backend`; returns true when both exit with status 0
/// within 120 s (a hang is killed and reported as a failure).
bool run_two_ranks(const std::string& backend) {
  const int port = free_port();
  std::vector<pid_t> pids;
  for (int rank = 0; rank < 2; ++rank) {
    std::vector<std::string> env;
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string s(*e);
      if (s.rfind("RANK=", 0) != 0 && s.rfind("WORLD_SIZE=", 0) != 0 &&
          s.rfind("MASTER_", 0) != 0 && s.rfind("DIFFUSE_GPU_DIST_", 0) != 0)
        env.push_back(s);
    }
    env.push_back("RANK=" + std::to_string(rank));
    env.push_back("WORLD_SIZE=2");
    env.push_back("MASTER_ADDR=127.0.0.1");
    env.push_back("MASTER_PORT=" + std::to_string(port));
    env.push_back("DIFFUSE_GPU_DIST_BACKEND=" + backend);
    std::vector<char*> envp;
    for (auto& s : env) envp.push_back(s.data());
    envp.push_back(nullptr);
    std::string exe = std::filesystem::read_symlink("/proc/self/exe").string();
    std::string filter = "--gtest_filter=GpuDistributedWorker.Main";
    char* argv[] = {exe.data(), filter.data(), nullptr};
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::execve(exe.c_str(), argv, envp.data());
      ::_exit(127);
    }
    pids.push_back(pid);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  bool ok = true;
  for (pid_t pid : pids) {
    int st = 0;
    while (::waitpid(pid, &st, WNOHANG) != pid) {
      if (std::chrono::steady_clock::now() > deadline) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &st, 0);
        ok = false;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ok = ok && WIFEXITED(st) && WEXITSTATUS(st) == 0;
  }
  return ok;
}

TEST(GpuDistributedWorker, Main) {
  const char* backend = std::getenv("DIFFUSE_GPU_DIST_BACKEND");
  if (backend == nullptr)
    GTEST_SKIP() << "runs only as a worker process of the GpuDistributed tests";
  DistributedOptions o = DistributedOptions::from_env(std::chrono::milliseconds(60000));
  o.backend = parse_distributed_backend(backend);
  const bool gloo = o.backend == DistributedBackend::gloo;
  const int gpus = static_cast<int>(torch::cuda::device_count());
  const at::Device dev(at::kCUDA, static_cast<c10::DeviceIndex>(gloo ? 0 : o.rank % gpus));
  c10::cuda::CUDAGuard guard(dev);
  DistributedContext ctx(o);
  EXPECT_EQ(ctx.backend_for(true), gloo ? "gloo" : "nccl");
  // Gradients on the GPU (float) plus the trainer's float64 statistics on the CPU.
  std::vector<Tensor> v{
      at::full({1000}, static_cast<double>(ctx.rank() + 1), at::TensorOptions().device(dev)),
      at::full({3}, 10.0 * (ctx.rank() + 1), at::TensorOptions().dtype(at::kDouble))};
  ctx.all_reduce_mean(v);
  EXPECT_TRUE(v[0].is_cuda());
  EXPECT_TRUE(v[1].device().is_cpu());
  EXPECT_TRUE(at::allclose(v[0].cpu(), at::full({1000}, 1.5)));
  EXPECT_TRUE(at::allclose(v[1], at::full({3}, 15.0, at::kDouble)));
  std::vector<Tensor> b{
      at::full({7}, static_cast<double>(ctx.rank()), at::TensorOptions().device(dev))};
  ctx.broadcast(b, 1);
  EXPECT_TRUE(at::allclose(b[0].cpu(), at::full({7}, 1.0)));
  ctx.barrier();
  if (::testing::Test::HasFailure()) std::exit(1);
}

TEST(GpuDistributed, GlooStagesCudaTensorsThroughTheHost) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device visible";
  EXPECT_TRUE(run_two_ranks("gloo"));
}

TEST(GpuDistributed, AutoUsesNcclForCudaTensorsOnTwoGpus) {
  if (torch::cuda::device_count() < 2)
    GTEST_SKIP() << "needs >= 2 GPUs (found " << torch::cuda::device_count() << ")";
  if (!DIFFUSE_HAS_NCCL) GTEST_SKIP() << "this LibTorch has no NCCL (USE_C10D_NCCL)";
  EXPECT_TRUE(run_two_ranks("auto"));
  EXPECT_TRUE(run_two_ranks("nccl"));
}

TEST(GpuDistributed, NcclBackendAvailabilityIsReported) {
  DistributedOptions o;
  o.backend = DistributedBackend::nccl;
  if (DIFFUSE_HAS_NCCL) {
    EXPECT_NO_THROW(o.validate());
  } else {
    EXPECT_THROW(o.validate(), Error);
  }
  EXPECT_THROW(parse_distributed_backend("mpi"), Error);
}

}  // namespace
}  // namespace diffuse
#else
#include <gtest/gtest.h>
TEST(GpuDistributed, Skipped) {
  GTEST_SKIP() << "no gloo headers / USE_C10D_GLOO: distributed.h is unavailable";
}
#endif
