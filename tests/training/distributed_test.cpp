// SPDX-License-Identifier: Apache-2.0
// Data-parallel training over c10d/Gloo (training/distributed.h): two real processes on loopback.
// The test re-executes its own binary (fork + exec, never a bare fork of a process that has
// started LibTorch's thread pools) with --gtest_filter=DistributedWorker.Main and the worker role
// in the environment; the parent compares the workers' results with an in-process
// single-process run, and a watchdog kills the workers if they run past 60 s.
#if __has_include(<torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>) && __has_include(<gloo/config.h>) && \
    defined(USE_C10D_GLOO)
#include <diffuse/training/distributed.h>
#include <diffuse/training/objectives/denoising.h>
#include <diffuse/training/trainer.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <ATen/Parallel.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>
#include <torch/serialize.h>

#include <gtest/gtest.h>

#include "temp_dir.h"
#include "test_util.h"

extern char** environ;

namespace {

using namespace diffuse;
namespace fs = std::filesystem;

/// x, t / 1000 and a label embedding -> two linear layers (labels exercise label dropout).
struct PointNetImpl : torch::nn::Cloneable<PointNetImpl> {
  PointNetImpl() { reset(); }
  void reset() override {
    label = register_module("label", torch::nn::Embedding(4, 3));
    fc1 = register_module("fc1", torch::nn::Linear(2 + 1 + 3, 32));
    fc2 = register_module("fc2", torch::nn::Linear(32, 2));
  }
  Tensor forward(const Tensor& x, const Tensor& t, const Conditioning& c) {
    Tensor y = c.value.defined() ? c.value : at::full({x.size(0)}, 3, at::kLong);
    Tensor h = at::cat({x, (t / 1000.0).unsqueeze(1).to(x.scalar_type()), label->forward(y)}, 1);
    return fc2->forward(at::silu(fc1->forward(h)));
  }
  torch::nn::Embedding label{nullptr};
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(PointNet);

Network as_network(PointNet m) {
  auto impl = m.ptr();
  return [impl](const Tensor& x, const Tensor& t, const Conditioning& c) {
    return impl->forward(x, t, c);
  };
}

Dataset points(int64_t n) {
  at::Generator g = at::detail::createCPUGenerator(11);
  Dataset d;
  d.name = "dist_points";
  d.labels = at::randint(0, 3, {n}, g, at::kLong);
  Tensor a = d.labels.to(at::kFloat) * 2.0;
  d.data = at::stack({at::cos(a), at::sin(a)}, 1) + 0.1 * at::randn({n, 2}, g, at::kFloat);
  d.num_classes = 3;
  return d;
}

constexpr int64_t kGlobalBatch = 8;  // 2 micro-batches of 4; 2 examples per rank per micro-batch
constexpr int64_t kSteps = 6;

/// Labels + dropout, accumulation, clipping, warm-up, EMA; a dataset of 20 so batches straddle
/// epochs. ddpm_ip draws t, eps and an input perturbation ("xi") per example.
TrainerOptions options(int64_t batch, const std::string& out) {
  return TrainerOptions()
      .steps(kSteps)
      .batch_size(batch)
      .grad_accum(2)
      .lr(1e-2)
      .warmup_steps(2)
      .grad_clip(0.5)
      .ema_decay(0.5)
      .label_dropout(0.3)
      .seed(5)
      .threads(1)
      .log_every(2)
      .checkpoint_every(3)
      .output_dir(out);
}

std::unique_ptr<Trainer<PointNet>> make_trainer(uint64_t init_seed, int64_t batch,
                                                const std::string& out) {
  torch::manual_seed(init_seed);
  return std::make_unique<Trainer<PointNet>>(PointNet(), objective_from_spec("ddpm_ip"),
                                             make_schedule("discrete"), points(20),
                                             options(batch, out));
}

std::vector<Tensor> state_of(Trainer<PointNet>& t) {
  std::vector<Tensor> s;
  for (const auto& p : t.model()->parameters()) s.push_back(p.detach().clone());
  for (const auto& p : t.ema()->parameters()) s.push_back(p.detach().clone());
  return s;
}

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof(a);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    if (fd >= 0) ::close(fd);
    return 0;
  }
  const int port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

/// Starts this test binary as rank `rank` of 2 with the worker `role`; returns its pid.
pid_t spawn_worker(const std::string& role, int rank, int port, const std::string& dir) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string s(*e);
    if (s.rfind("RANK=", 0) != 0 && s.rfind("WORLD_SIZE=", 0) != 0 && s.rfind("MASTER_", 0) != 0 &&
        s.rfind("DIFFUSE_DIST_", 0) != 0) {
      env.push_back(s);
    }
  }
  env.push_back("RANK=" + std::to_string(rank));
  env.push_back("WORLD_SIZE=2");
  env.push_back("MASTER_ADDR=127.0.0.1");
  env.push_back("MASTER_PORT=" + std::to_string(port));
  env.push_back("DIFFUSE_DIST_ROLE=" + role);
  env.push_back("DIFFUSE_DIST_DIR=" + dir);
  std::vector<char*> envp;
  for (auto& s : env) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::string exe = fs::read_symlink("/proc/self/exe").string();
  std::string filter = "--gtest_filter=DistributedWorker.Main";
  char* argv[] = {exe.data(), filter.data(), nullptr};
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::execve(exe.c_str(), argv, envp.data());
    ::_exit(127);
  }
  return pid;
}

/// Waits for both workers; kills them if they are still running after `limit` (a hang).
/// Returns the wait statuses; `hung` is set if the watchdog fired.
std::vector<int> wait_workers(const std::vector<pid_t>& pids, std::chrono::seconds limit,
                              bool& hung) {
  std::vector<int> status(pids.size(), -1);
  std::vector<bool> done(pids.size(), false);
  const auto deadline = std::chrono::steady_clock::now() + limit;
  hung = false;
  size_t left = pids.size();
  while (left > 0) {
    for (size_t i = 0; i < pids.size(); ++i) {
      if (done[i]) continue;
      int st = 0;
      if (::waitpid(pids[i], &st, WNOHANG) == pids[i]) {
        status[i] = st;
        done[i] = true;
        --left;
      }
    }
    if (left == 0) break;
    if (std::chrono::steady_clock::now() > deadline) {
      hung = true;
      for (size_t i = 0; i < pids.size(); ++i) {
        if (done[i]) continue;
        ::kill(pids[i], SIGKILL);
        ::waitpid(pids[i], &status[i], 0);
      }
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return status;
}

using diffuse::testing::read_text_file;

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no diffuse::Error>";
}

// ----- the worker side (runs only in the re-executed child processes)

int run_train_worker(const DistributedOptions& o, const std::string& dir) {
  DistributedContext ctx(o);
  // Different initial weights per rank: make_data_parallel must broadcast rank 0's.
  auto t = make_trainer(100 + static_cast<uint64_t>(o.rank), kGlobalBatch,
                        dir + "/out_rank" + std::to_string(o.rank));
  make_data_parallel(*t, ctx);
  t->train();
  torch::save(state_of(*t), dir + "/state_rank" + std::to_string(o.rank) + ".pt");
  return 0;
}

/// Trains 3 steps (rank 0 checkpoints into a folder both ranks use), then both ranks build fresh
/// trainers for 6 steps, resume from that checkpoint and finish.
int run_resume_worker(const DistributedOptions& o, const std::string& dir) {
  DistributedContext ctx(o);
  const std::string out = dir + "/out_shared";
  {
    torch::manual_seed(100 + static_cast<uint64_t>(o.rank));
    TrainerOptions first = options(kGlobalBatch, out);
    first.steps(3);
    Trainer<PointNet> t(PointNet(), objective_from_spec("ddpm_ip"), make_schedule("discrete"),
                        points(20), first);
    make_data_parallel(t, ctx);
    t.train();
  }
  ctx.barrier();  // rank 0's checkpoint is on disk before anyone resumes
  auto t = make_trainer(200 + static_cast<uint64_t>(o.rank), kGlobalBatch, out);
  make_data_parallel(*t, ctx);
  const std::string from = t->resume_latest();
  if (from.empty() || t->step() != 3) return 6;
  t->train();
  torch::save(state_of(*t), dir + "/state_rank" + std::to_string(o.rank) + ".pt");
  return 0;
}

int run_die_worker(const DistributedOptions& o, const std::string& dir) {
  DistributedContext ctx(o);
  ctx.barrier();  // the group is up on both ranks
  if (o.rank == 1)
    ::raise(std::string(std::getenv("DIFFUSE_DIST_ROLE")) == "stop" ? SIGSTOP : SIGKILL);
  std::vector<Tensor> g{at::ones({1000})};
  const std::string msg = error_of([&] { ctx.all_reduce_mean(g); });
  std::ofstream(dir + "/error_rank0.txt") << msg;
  return msg == "<no diffuse::Error>" ? 3 : 0;
}

TEST(DistributedWorker, Main) {
  const char* role = std::getenv("DIFFUSE_DIST_ROLE");
  if (role == nullptr) GTEST_SKIP() << "runs only as a worker process of the Distributed tests";
  const std::string dir = std::getenv("DIFFUSE_DIST_DIR");
  int rc = 4;
  try {
    at::set_num_threads(1);
    if (std::string(role) == "train") {
      rc = run_train_worker(DistributedOptions::from_env(), dir);
    } else if (std::string(role) == "resume") {
      rc = run_resume_worker(DistributedOptions::from_env(), dir);
    } else {
      rc = run_die_worker(DistributedOptions::from_env(std::chrono::milliseconds(3000)), dir);
    }
  } catch (const std::exception& e) {
    std::ofstream(dir + "/exception_" + std::getenv("RANK") + ".txt") << e.what();
    rc = 5;
  }
  std::fflush(nullptr);
  std::_Exit(rc);  // skip destructors of a possibly broken process group
}

// ----- the tests

TEST(Distributed, OptionsFromEnvironmentNameTheVariable) {
  ::unsetenv("RANK");
  ::setenv("WORLD_SIZE", "2", 1);
  ::setenv("MASTER_PORT", "29511", 1);
  ::unsetenv("MASTER_ADDR");
  EXPECT_NE(error_of([] { DistributedOptions::from_env(); }).find("RANK is not set"),
            std::string::npos);
  ::setenv("RANK", "x1", 1);
  EXPECT_NE(error_of([] { DistributedOptions::from_env(); }).find("RANK='x1'"), std::string::npos);
  ::setenv("RANK", "2", 1);
  EXPECT_NE(error_of([] { DistributedOptions::from_env(); }).find("RANK='2' must be < WORLD_SIZE"),
            std::string::npos);
  ::setenv("RANK", "1", 1);
  ::setenv("MASTER_PORT", "70000", 1);
  EXPECT_NE(error_of([] { DistributedOptions::from_env(); }).find("MASTER_PORT='70000'"),
            std::string::npos);
  ::setenv("MASTER_PORT", "29511", 1);
  const DistributedOptions o = DistributedOptions::from_env(std::chrono::milliseconds(1234));
  EXPECT_EQ(o.rank, 1);
  EXPECT_EQ(o.world_size, 2);
  EXPECT_EQ(o.master_addr, "127.0.0.1");
  EXPECT_EQ(o.master_port, 29511);
  EXPECT_EQ(o.timeout.count(), 1234);
  for (const char* v : {"RANK", "WORLD_SIZE", "MASTER_PORT"}) ::unsetenv(v);

  DistributedOptions bad;
  bad.world_size = 2;
  bad.rank = 2;
  EXPECT_NE(error_of([&] { bad.validate(); }).find("rank must be in [0, 2), got 2"),
            std::string::npos);
  bad.rank = 0;
  bad.timeout = std::chrono::milliseconds(0);
  EXPECT_NE(error_of([&] { bad.validate(); }).find("timeout"), std::string::npos);
}

TEST(Distributed, TrainerRefusesAnIndivisibleBatch) {
  auto t = make_trainer(1, 6, "");  // 6 / (grad_accum 2 * 2 ranks) is not whole
  const std::string msg =
      error_of([&] { t->set_data_parallel(0, 2, [](std::vector<Tensor>&) {}); });
  EXPECT_NE(msg.find("batch_size (6) must be divisible by grad_accum * world_size (2 * 2)"),
            std::string::npos)
      << msg;
  EXPECT_NE(error_of([&] {
              t->set_data_parallel(2, 2, [](std::vector<Tensor>&) {});
            }).find("rank must be in [0, 2)"),
            std::string::npos);
}

// Two ranks with batch 8 (2 examples per rank per micro-batch) against one process with batch 8.
// Tolerance: the ranks' gradients are summed by Gloo in another order than autograd sums a
// single batch's, so float32 results differ in the last bits; AdamW then divides by sqrt(v), and
// after 6 steps the parameters differ by at most 6e-8 (measured); 2e-5 absolute leaves a wide
// margin while a run on a different data split differs by 0.066 (> 1e-3 checked below, so the test
// can fail).
/// Runs the two `role` workers; checks that they succeeded and ended bit-identical; sets max_diff
/// to the largest difference between rank 0's final model + EMA parameters and the single-process
/// run's with the global batch.
void run_training_workers(const std::string& role, const test::TempDir& dir, double& max_diff) {
  const int port = free_port();
  ASSERT_GT(port, 0);
  std::vector<pid_t> pids{spawn_worker(role, 0, port, dir.path.string()),
                          spawn_worker(role, 1, port, dir.path.string())};
  bool hung = false;
  const auto st = wait_workers(pids, std::chrono::seconds(60), hung);
  ASSERT_FALSE(hung) << "distributed training did not finish within 60 s";
  for (int r = 0; r < 2; ++r) {
    ASSERT_TRUE(WIFEXITED(st[r]) && WEXITSTATUS(st[r]) == 0)
        << "rank " << r << " status " << st[r] << ": "
        << read_text_file(dir / ("exception_" + std::to_string(r) + ".txt"));
  }
  std::vector<Tensor> s0, s1;
  torch::load(s0, dir / "state_rank0.pt");
  torch::load(s1, dir / "state_rank1.pt");
  ASSERT_EQ(s0.size(), s1.size());
  for (size_t i = 0; i < s0.size(); ++i) EXPECT_TRUE(at::equal(s0[i], s1[i])) << "tensor " << i;
  auto single = make_trainer(100, kGlobalBatch, "");
  single->train();
  const auto ref = state_of(*single);
  ASSERT_EQ(ref.size(), s0.size());
  max_diff = 0;
  for (size_t i = 0; i < ref.size(); ++i)
    max_diff = std::max(max_diff, (ref[i] - s0[i]).abs().max().item<double>());
}

TEST(Distributed, TwoRanksEqualOneProcessWithTheGlobalBatch) {
  at::set_num_threads(1);
  test::TempDir dir("distributed_train");
  double max_diff = 1;
  run_training_workers("train", dir, max_diff);
  if (HasFatalFailure()) return;
  EXPECT_LT(max_diff, 2e-5);
  std::printf("max |two ranks - one process| over model and EMA parameters: %.3g\n", max_diff);

  // Not vacuous: one process with half the batch (another data split) lands far away.
  auto single = make_trainer(100, kGlobalBatch, "");
  single->train();
  const auto ref = state_of(*single);
  auto half = make_trainer(100, kGlobalBatch / 2, "");
  half->train();
  const auto other = state_of(*half);
  double other_diff = 0;
  for (size_t i = 0; i < ref.size(); ++i)
    other_diff = std::max(other_diff, (ref[i] - other[i]).abs().max().item<double>());
  EXPECT_GT(other_diff, 1e-3);
  std::printf("max |batch 4 - batch 8| (another data split): %.3g\n", other_diff);

  // Only rank 0 wrote outputs: its loss.csv and checkpoints at steps 3 and 6.
  EXPECT_FALSE(fs::exists(dir / "out_rank1"));
  EXPECT_TRUE(fs::exists(dir / "out_rank0/loss.csv"));
  EXPECT_EQ(checkpoint_step(dir / "out_rank0/checkpoints/" + checkpoint_filename(kSteps)), kSteps);
}

// Both ranks resume from rank 0's step-3 checkpoint (fresh trainers with other initial weights)
// and finish: the same result as the uninterrupted single-process run.
TEST(Distributed, TwoRanksResumeFromRankZerosCheckpoint) {
  at::set_num_threads(1);
  test::TempDir dir("distributed_resume");
  double max_diff = 1;
  run_training_workers("resume", dir, max_diff);
  if (HasFatalFailure()) return;
  EXPECT_LT(max_diff, 2e-5);
  std::printf("resumed two ranks vs uninterrupted one process: max diff %.3g\n", max_diff);
  EXPECT_EQ(checkpoint_step(dir / "out_shared/checkpoints/" + checkpoint_filename(kSteps)), kSteps);
}

// Rank 1 is SIGKILLed after the group is up; rank 0's all-reduce must fail with a one-line
// diffuse::Error naming the operation and the rank within the 3 s timeout (the watchdog gives up
// after 30 s and fails the test as a hang).
TEST(Distributed, AKilledRankMakesTheOtherFailNotHang) {
  test::TempDir dir("distributed_kill");
  const int port = free_port();
  ASSERT_GT(port, 0);
  std::vector<pid_t> pids{spawn_worker("die", 0, port, dir.path.string()),
                          spawn_worker("die", 1, port, dir.path.string())};
  bool hung = false;
  const auto st = wait_workers(pids, std::chrono::seconds(30), hung);
  ASSERT_FALSE(hung) << "rank 0 hung after rank 1 was killed";
  EXPECT_TRUE(WIFSIGNALED(st[1]) && WTERMSIG(st[1]) == SIGKILL);
  ASSERT_TRUE(WIFEXITED(st[0])) << st[0];
  EXPECT_EQ(WEXITSTATUS(st[0]), 0) << read_text_file(dir / "exception_0.txt");
  const std::string msg = read_text_file(dir / "error_rank0.txt");
  std::printf("rank 0 reported: %s\n", msg.c_str());
  EXPECT_NE(msg.find("distributed all_reduce_mean failed on rank 0 of 2"), std::string::npos)
      << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
}

// Rank 1 is stopped (SIGSTOP: alive, connections open, never answers): only the timeout can end
// rank 0's all-reduce, which must then fail with the same kind of error instead of waiting forever.
TEST(Distributed, AStoppedRankMakesTheOtherTimeOut) {
  test::TempDir dir("distributed_stop");
  const int port = free_port();
  ASSERT_GT(port, 0);
  const pid_t r0 = spawn_worker("stop", 0, port, dir.path.string());
  const pid_t r1 = spawn_worker("stop", 1, port, dir.path.string());
  bool hung = false;
  const auto st = wait_workers({r0}, std::chrono::seconds(30), hung);
  ::kill(r1, SIGKILL);
  ::waitpid(r1, nullptr, 0);
  ASSERT_FALSE(hung) << "rank 0 hung while rank 1 was stopped";
  ASSERT_TRUE(WIFEXITED(st[0])) << st[0];
  EXPECT_EQ(WEXITSTATUS(st[0]), 0) << read_text_file(dir / "exception_0.txt");
  const std::string msg = read_text_file(dir / "error_rank0.txt");
  std::printf("rank 0 reported: %s\n", msg.c_str());
  EXPECT_NE(msg.find("distributed all_reduce_mean failed on rank 0 of 2"), std::string::npos)
      << msg;
  EXPECT_NE(msg.find("3000 ms"), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
}

}  // namespace
#endif  // c10d with Gloo available
