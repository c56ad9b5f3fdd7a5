// SPDX-License-Identifier: Apache-2.0
// Faults in training: a run killed with SIGKILL at named points (training/fault_injection.h) and
// at random times leaves a run folder whose every checkpoint loads, and resuming it ends with a
// run folder byte-identical to an uninterrupted run's (checkpoints with model, EMA, optimiser and
// generator state; loss.csv; previews). A checkpoint that cannot be written (file size limit, as
// on a full disk; a read-only folder) is a diffuse::Error naming the path and the reason, and the
// previous checkpoint stays intact. docs/reliability.md records the figures.
#include <diffuse/training/checkpoint.h>
#include <diffuse/training/fault_injection.h>
#include <diffuse/training/objectives/denoising.h>
#include <diffuse/training/stop_signal.h>
#include <diffuse/training/trainer.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ATen/Parallel.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>
#include <torch/optim/adamw.h>

#include <gtest/gtest.h>

#include "training/temp_dir.h"

namespace diffuse {
namespace {

namespace fs = std::filesystem;

/// x_t (2-D points), t / 1000 and a label embedding -> two linear layers.
struct FaultNetImpl : torch::nn::Cloneable<FaultNetImpl> {
  FaultNetImpl() { reset(); }
  void reset() override {
    l1 = register_module("l1", torch::nn::Linear(2 + 1 + 4, 16));
    l2 = register_module("l2", torch::nn::Linear(16, 2));
    label = register_module("label", torch::nn::Embedding(4, 4));
  }
  Tensor forward(const Tensor& x, const Tensor& t, const Conditioning& c) {
    const int64_t b = x.size(0);
    Tensor y = c.value.defined() ? c.value : at::full({b}, 3, at::kLong);
    Tensor in =
        at::cat({x, (t / 1000.0).reshape({b, 1}).to(x.scalar_type()), label->forward(y)}, 1);
    return l2->forward(at::tanh(l1->forward(in)));
  }
  torch::nn::Linear l1{nullptr}, l2{nullptr};
  torch::nn::Embedding label{nullptr};
};
TORCH_MODULE(FaultNet);

Network as_network(FaultNet m) {
  auto impl = m.ptr();
  return [impl](const Tensor& x, const Tensor& t, const Conditioning& c) {
    return impl->forward(x, t, c);
  };
}

Dataset points() {
  at::Generator g = at::detail::createCPUGenerator(7);
  Dataset d;
  d.name = "fault_points";
  Tensor y = at::randint(0, 3, {50}, g, at::kLong);
  d.data = at::stack({at::cos(y.to(at::kFloat) * 2.0), at::sin(y.to(at::kFloat) * 2.0)}, 1) +
           0.1 * at::randn({50, 2}, g, at::kFloat);
  d.labels = y;
  d.num_classes = 3;
  return d;
}

/// Every piece of state that crosses steps: labels + dropout, warm-up, clipping, accumulation, EMA,
/// a log window straddling checkpoints, previews, pruning (keep 2 of 6 checkpoints).
TrainerOptions options(const fs::path& out) {
  return TrainerOptions()
      .steps(12)
      .batch_size(24)
      .grad_accum(2)
      .lr(3e-3)
      .warmup_steps(3)
      .grad_clip(1.0)
      .ema_decay(0.9)
      .label_dropout(0.3)
      .seed(11)
      .threads(1)
      .checkpoint_every(2)
      .keep_checkpoints(2)
      .log_every(3)
      .sample_every(5)
      .sampler("euler_ancestral")  // a stochastic sampler: previews depend on the noise stream
      .sample_steps(3)
      .sample_count(4)
      .output_dir(out.string());
}

using FaultTrainer = Trainer<FaultNet>;

/// A trainer as `diffuse train` makes one: the model initialised from a fixed seed, then resumed
/// from the newest checkpoint if there is one.
std::unique_ptr<FaultTrainer> make_trainer(const fs::path& out) {
  torch::manual_seed(1);
  auto t = std::make_unique<FaultTrainer>(FaultNet(), std::make_shared<DenoisingObjective>(),
                                          make_schedule("discrete"), points(), options(out));
  t->resume_latest();
  return t;
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// All regular files under `dir` (relative path -> contents).
std::map<std::string, std::string> folder(const fs::path& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) out[fs::relative(e.path(), dir).string()] = read_file(e.path());
  return out;
}

int64_t count_temporaries(const fs::path& dir) {
  int64_t n = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.path().filename().string().find(".tmp") != std::string::npos) ++n;
  return n;
}

/// Runs make_trainer(out)->train() in a child process armed with `fault` ("" = none); returns the
/// wait status. `kill_after_s` >= 0: the parent kills the child with SIGKILL after that long.
/// Runs the trainer in a forked child; with kill_after_s >= 0 sends SIGKILL after that delay
/// unless the child has ended by then. *ran_s, when given, receives the child's wall time up to
/// its end or the kill.
int run_child(const fs::path& out, const std::string& fault, double kill_after_s = -1,
              double* ran_s = nullptr) {
  const auto t0 = std::chrono::steady_clock::now();
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::alarm(60);  // never hang the test
    int code = 0;
    try {
      set_fault_injection(fault);
      make_trainer(out)->train();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child: %s\n", e.what());
      code = 3;
    }
    ::_exit(code);
  }
  int status = 0;
  bool ended = false;
  if (kill_after_s >= 0) {
    // Poll, so that a child which ends before the deadline is seen ending (and its run time
    // measured) rather than outlived by a kill that hits nothing.
    const auto deadline = t0 + std::chrono::duration<double>(kill_after_s);
    while (!ended && std::chrono::steady_clock::now() < deadline) {
      ended = ::waitpid(pid, &status, WNOHANG) == pid;
      if (!ended) std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    if (!ended) ::kill(pid, SIGKILL);
  }
  if (!ended) ::waitpid(pid, &status, 0);
  if (ran_s) *ran_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return status;
}

bool killed(int status) { return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL; }

/// What a kill may leave: checkpoints that all load (into a trainer of the same setup, which
/// checks format, fingerprint and every tensor) and whose step matches the name; nothing that
/// latest_checkpoint() would pick but is not a checkpoint. Returns the number of checkpoints.
size_t expect_sound_folder(const fs::path& out, const std::string& what) {
  const auto ckpts = list_checkpoints((out / "checkpoints").string());
  for (const auto& [step, path] : ckpts) {
    EXPECT_EQ(checkpoint_step(path), step) << what << ": " << path;
    torch::manual_seed(1);
    FaultTrainer t(FaultNet(), std::make_shared<DenoisingObjective>(), make_schedule("discrete"),
                   points(), options(out).output_dir(""));
    EXPECT_NO_THROW(t.load_checkpoint(path)) << what << ": " << path;
    EXPECT_EQ(t.step(), step) << what;
  }
  return ckpts.size();
}

void expect_equal_tensors(const Tensor& a, const Tensor& b, const std::string& what) {
  ASSERT_TRUE(a.defined() && b.defined()) << what;
  EXPECT_TRUE(a.sizes() == b.sizes() && a.scalar_type() == b.scalar_type() && at::equal(a, b))
      << what << " differs";
}

/// Two checkpoints hold the same training state, bit for bit: model, EMA, AdamW state (per
/// parameter), step, data position, generator states, log window, fingerprint. (The files' bytes
/// may differ: LibTorch keys the optimiser state by tensor address.)
void expect_same_checkpoint(const std::string& a, const std::string& b, const std::string& what) {
  std::unique_ptr<FaultTrainer> t[2];
  torch::serialize::InputArchive ar[2];
  const std::string paths[2] = {a, b};
  for (int i = 0; i < 2; ++i) {
    torch::manual_seed(100 + i);  // different initial weights: everything must come from the file
    t[i] = std::make_unique<FaultTrainer>(FaultNet(), std::make_shared<DenoisingObjective>(),
                                          make_schedule("discrete"), points(),
                                          options("").output_dir(""));
    ASSERT_NO_THROW(t[i]->load_checkpoint(paths[i])) << what << ": " << paths[i];
    ar[i].load_from(paths[i]);
  }
  EXPECT_EQ(t[0]->step(), t[1]->step()) << what;
  EXPECT_EQ(t[0]->epoch(), t[1]->epoch()) << what;
  EXPECT_EQ(t[0]->epoch_position(), t[1]->epoch_position()) << what;
  for (bool ema : {false, true}) {
    auto pa = (ema ? t[0]->ema() : t[0]->model())->named_parameters();
    auto pb = (ema ? t[1]->ema() : t[1]->model())->named_parameters();
    ASSERT_EQ(pa.size(), pb.size());
    for (const auto& item : pa)
      expect_equal_tensors(item.value(), pb[item.key()], what + ": " + item.key());
  }
  auto params_a = t[0]->model()->parameters(), params_b = t[1]->model()->parameters();
  auto& state_a = t[0]->optimizer().state();
  auto& state_b = t[1]->optimizer().state();
  ASSERT_EQ(state_a.size(), params_a.size()) << what;
  ASSERT_EQ(state_b.size(), params_b.size()) << what;
  for (size_t i = 0; i < params_a.size(); ++i) {
    const auto& sa = static_cast<const torch::optim::AdamWParamState&>(
        *state_a.at(c10::guts::to_string(params_a[i].unsafeGetTensorImpl())));
    const auto& sb = static_cast<const torch::optim::AdamWParamState&>(
        *state_b.at(c10::guts::to_string(params_b[i].unsafeGetTensorImpl())));
    EXPECT_EQ(sa.step(), sb.step()) << what;
    expect_equal_tensors(sa.exp_avg(), sb.exp_avg(), what + ": exp_avg " + std::to_string(i));
    expect_equal_tensors(sa.exp_avg_sq(), sb.exp_avg_sq(),
                         what + ": exp_avg_sq " + std::to_string(i));
  }
  for (const char* key : {"rng_objective", "rng_labels", "log_window"}) {
    Tensor x, y;
    ar[0].read(key, x);
    ar[1].read(key, y);
    expect_equal_tensors(x, y, what + ": " + key);
  }
  for (const char* key : {"fingerprint", "log_terms"}) {
    c10::IValue x, y;
    ar[0].read(key, x);
    ar[1].read(key, y);
    EXPECT_EQ(x.toStringRef(), y.toStringRef()) << what << ": " << key;
  }
}

/// The same files; checkpoints with the same state, other files with the same bytes.
void expect_same_folder(const fs::path& got_dir, const fs::path& want_dir,
                        const std::string& what) {
  const auto got = folder(got_dir), want = folder(want_dir);
  std::vector<std::string> got_names, want_names;
  for (const auto& kv : got) got_names.push_back(kv.first);
  for (const auto& kv : want) want_names.push_back(kv.first);
  ASSERT_EQ(got_names, want_names) << what;
  for (const auto& kv : want) {
    if (parse_checkpoint_filename(fs::path(kv.first).filename().string())) {
      expect_same_checkpoint((got_dir / kv.first).string(), (want_dir / kv.first).string(),
                             what + ": " + kv.first);
    } else {
      EXPECT_TRUE(got.at(kv.first) == kv.second) << what << ": " << kv.first << " differs";
    }
  }
}

class TrainingFaults : public ::testing::Test {
 protected:
  void SetUp() override { at::set_num_threads(1); }

  /// The uninterrupted run's folder (made once per test).
  const fs::path& reference() {
    if (!ref_) {
      ref_ = std::make_unique<test::TempDir>("faults_reference");
      const auto t0 = std::chrono::steady_clock::now();
      EXPECT_EQ(run_child(ref_->path, ""), 0);
      run_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    return ref_->path;
  }

  /// Resumes `out` to the end in a child and expects the reference folder, byte for byte.
  void expect_resumes_to_reference(const fs::path& out, const std::string& what) {
    const int status = run_child(out, "");
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << what << ": resume failed, status " << status;
    EXPECT_EQ(count_temporaries(out), 0) << what;
    expect_same_folder(out, reference(), what);
  }

  std::unique_ptr<test::TempDir> ref_;
  double run_seconds_ = 0;
};

TEST_F(TrainingFaults, ReferenceRunIsReproducibleAndComplete) {
  const auto ref = folder(reference());
  // 2 kept checkpoints, loss.csv (4 rows), loss.png, previews at 5, 10 and the end (12).
  for (const char* f :
       {"checkpoints/ckpt_00000010.pt", "checkpoints/ckpt_00000012.pt", "loss.csv", "loss.png",
        "samples_00000005.csv", "samples_00000010.csv", "samples_00000012.csv"})
    EXPECT_EQ(ref.count(f), 1u) << f;
  EXPECT_EQ(ref.size(), 7u);
  // A second uninterrupted run gives the same bytes (otherwise the comparisons below prove
  // nothing).
  const test::TempDir dir("faults_again");
  ASSERT_EQ(run_child(dir.path, ""), 0);
  expect_same_folder(dir.path, reference(), "second run");
}

// Each spec kills the run once at a named point; the folder must be sound and resume must end
// where the uninterrupted run ends. Checkpoints are written at steps 2, 4, ..., 12.
TEST_F(TrainingFaults, KillAtNamedPointsThenResumeIsBitExact) {
  const std::vector<std::string> specs = {
      "after_step:1",               // during the first step, before any file
      "after_temp_create:1:ckpt_",  // first checkpoint: an empty temporary, no checkpoint yet
      "mid_temp_write:2:ckpt_",     // half of the second checkpoint written
      "before_rename:3:ckpt_",      // third checkpoint complete but not renamed
      "after_rename:3:ckpt_",       // third checkpoint renamed, directory not synced
      "after_checkpoint:4",         // fourth checkpoint written, the oldest not yet pruned
      "mid_log_append:2",           // half a loss.csv row
      "mid_temp_write:1:samples_",  // half a preview file
      "before_rename:2:samples_",   // second preview complete but not renamed
      "after_step:11",              // after the last checkpoint but one
      "mid_temp_write:6:ckpt_",     // the final checkpoint
      "after_rename:6:ckpt_",       // the final checkpoint in place: nothing may be left to redo
      "after_checkpoint:6",         // the final checkpoint written, the oldest of 3 not yet pruned
  };
  (void)reference();
  for (const std::string& spec : specs) {
    const test::TempDir dir("faults_named");
    const int status = run_child(dir.path, spec);
    ASSERT_TRUE(killed(status)) << spec << ": the fault point was not reached (status " << status
                                << ")";
    expect_sound_folder(dir.path, spec);
    expect_resumes_to_reference(dir.path, spec);
  }
}

// A chain: killed, resumed and killed again at another point, twice, then finished.
TEST_F(TrainingFaults, RepeatedKillsThenResumeIsBitExact) {
  const test::TempDir dir("faults_chain");
  for (const std::string spec :
       {"before_rename:2:ckpt_", "mid_temp_write:1:ckpt_", "after_step:3"}) {
    ASSERT_TRUE(killed(run_child(dir.path, spec))) << spec;
    expect_sound_folder(dir.path, spec);
  }
  expect_resumes_to_reference(dir.path, "chain");
}

// SIGKILL from outside at random times (fixed seed, so a failure reproduces), each followed by
// a resume; the kills land in steps, checkpoint writes, previews or process start-up.
TEST_F(TrainingFaults, KillAtRandomTimesThenResumeIsBitExact) {
  (void)reference();
  // The kills are drawn over 80% of the shorter of two uninterrupted runs: one timing alone is
  // noisy (CI runs two test binaries at once), and a delay past the run's end kills nothing.
  double run_seconds = run_seconds_;
  {
    const test::TempDir again("faults_timing");
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(run_child(again.path, ""), 0);
    run_seconds = std::min(
        run_seconds, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  // A run that ends before its kill shows the trainer runs faster now than measured (another
  // test binary stopped competing for the cores): its own run time becomes the estimate, and the
  // attempts go on until 6 kills have hit, 12 attempts at most.
  std::mt19937 rng(20261129);
  std::uniform_real_distribution<double> frac(0.0, 0.8);
  int kills = 0;
  int attempts = 0;
  for (; attempts < 12 && kills < 6; ++attempts) {
    const test::TempDir dir("faults_random");
    const double delay = frac(rng) * run_seconds;
    double ran = 0;
    const int status = run_child(dir.path, "", delay, &ran);
    const std::string what = "random kill after " + std::to_string(delay) + " s";
    if (killed(status)) {
      ++kills;
    } else {
      ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << what << ": status " << status;
      run_seconds = std::min(run_seconds, ran);
    }
    expect_sound_folder(dir.path, what);
    expect_resumes_to_reference(dir.path, what);
  }
  std::printf("[   INFO   ] %d of %d random kills hit a running trainer (run time %.3f s)\n", kills,
              attempts, run_seconds);
  EXPECT_GE(kills, 6);
}

// A checkpoint that does not fit (the file size limit, which fails write(2) like a full disk):
// an error naming the checkpoint and the reason, the previous checkpoint intact, no temporary.
TEST_F(TrainingFaults, CheckpointThatDoesNotFitIsAClearErrorAndKeepsThePreviousOne) {
  const test::TempDir dir("faults_full");
  const fs::path out = dir.path;
  // Steps 1-2 and the checkpoint at 2, in this process.
  auto t = make_trainer(out);
  for (int i = 0; i < 2; ++i) t->train_step();
  const std::string first = t->save_checkpoint();
  const std::string first_bytes = read_file(first);
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::alarm(60);
    ::close(pipefd[0]);
    ::signal(SIGXFSZ, SIG_IGN);  // write(2) then fails with EFBIG instead of killing the process
    rlimit lim{};
    lim.rlim_cur = lim.rlim_max = static_cast<rlim_t>(first_bytes.size() / 2);
    std::string msg = "no error";
    if (::setrlimit(RLIMIT_FSIZE, &lim) == 0) {
      try {
        for (int i = 0; i < 2; ++i) t->train_step();
        t->save_checkpoint();
      } catch (const Error& e) {
        msg = e.what();
      } catch (const std::exception& e) {
        msg = std::string("not a diffuse::Error: ") + e.what();
      }
    } else {
      msg = "setrlimit failed";
    }
    (void)!::write(pipefd[1], msg.data(), msg.size());
    ::_exit(0);
  }
  ::close(pipefd[1]);
  std::string msg;
  char buf[512];
  for (ssize_t n; (n = ::read(pipefd[0], buf, sizeof(buf))) > 0;)
    msg.append(buf, static_cast<size_t>(n));
  ::close(pipefd[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_NE(
      msg.find("cannot write '" + (out / "checkpoints" / checkpoint_filename(4)).string() + "'"),
      std::string::npos)
      << msg;
  EXPECT_NE(msg.find(std::strerror(EFBIG)), std::string::npos) << msg;
  EXPECT_EQ(read_file(first), first_bytes);
  EXPECT_FALSE(fs::exists(out / "checkpoints" / checkpoint_filename(4)));
  EXPECT_EQ(count_temporaries(out), 0);
  EXPECT_EQ(expect_sound_folder(out, "file size limit"), 1u);
}

/// Runs `fn` in a child that cannot write where root could (it drops to user nobody when run as
/// root); returns the diffuse::Error message it got, or what happened instead.
std::string error_in_unprivileged_child(const std::function<void()>& fn) {
  int pipefd[2];
  if (::pipe(pipefd) != 0) return "pipe failed";
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::alarm(60);
    ::close(pipefd[0]);
    std::string msg = "no error";
    if (::geteuid() == 0 && (::setgid(65534) != 0 || ::setuid(65534) != 0)) {
      msg = "cannot drop root";
    } else {
      try {
        fn();
      } catch (const Error& e) {
        msg = e.what();
      } catch (const std::exception& e) {
        msg = std::string("not a diffuse::Error: ") + e.what();
      }
    }
    (void)!::write(pipefd[1], msg.data(), msg.size());
    ::_exit(0);
  }
  ::close(pipefd[1]);
  std::string msg;
  char buf[512];
  for (ssize_t n; (n = ::read(pipefd[0], buf, sizeof(buf))) > 0;)
    msg.append(buf, static_cast<size_t>(n));
  ::close(pipefd[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return msg;
}

TEST_F(TrainingFaults, ReadOnlyFolderIsAClearErrorAndKeepsThePreviousCheckpoint) {
  const test::TempDir dir("faults_readonly");
  const fs::path out = dir.path;
  ::chmod(out.c_str(), 0755);  // traversable by the unprivileged child
  auto t = make_trainer(out);
  for (int i = 0; i < 2; ++i) t->train_step();
  const std::string first = t->save_checkpoint();
  const std::string first_bytes = read_file(first);
  const fs::path ckpt_dir = out / "checkpoints";
  ASSERT_EQ(::chmod(ckpt_dir.c_str(), 0555), 0);
  std::string msg = error_in_unprivileged_child([&] {
    t->train_step();
    t->save_checkpoint();
  });
  EXPECT_NE(msg.find("cannot write '" + (ckpt_dir / checkpoint_filename(3)).string() + "'"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find(std::strerror(EACCES)), std::string::npos) << msg;
  // A checkpoint folder that cannot be created (its parent is read-only).
  TrainerOptions o = options(out).output_dir("").checkpoint_dir((ckpt_dir / "sub").string());
  msg = error_in_unprivileged_child([&] {
    torch::manual_seed(1);
    FaultTrainer t2(FaultNet(), std::make_shared<DenoisingObjective>(), make_schedule("discrete"),
                    points(), o);
    t2.train_step();
    t2.save_checkpoint();
  });
  EXPECT_NE(msg.find("cannot create the folder '" + (ckpt_dir / "sub").string() + "'"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find(std::strerror(EACCES)), std::string::npos) << msg;
  ::chmod(ckpt_dir.c_str(), 0755);
  EXPECT_EQ(read_file(first), first_bytes);
  EXPECT_EQ(count_temporaries(out), 0);
  EXPECT_EQ(expect_sound_folder(out, "read-only folder"), 1u);
}

// ----- a corrupt newest checkpoint: resume falls back to the newest intact one

/// Damages a file in one of the ways a crash, a full disk or a user could.
void corrupt_file(const fs::path& p, const std::string& how) {
  const std::string bytes = read_file(p);
  std::string damaged;
  if (how == "truncated") damaged = bytes.substr(0, bytes.size() / 2);
  if (how == "empty") damaged = "";
  if (how == "garbage") damaged = std::string(bytes.size(), '\x5a');
  if (how == "text") damaged = "not a checkpoint\n";
  std::ofstream(p, std::ios::binary | std::ios::trunc) << damaged;
}

TEST_F(TrainingFaults, CorruptNewestCheckpointIsSkippedAndResumeIsBitExact) {
  (void)reference();
  for (const std::string how : {"truncated", "garbage", "empty", "text"}) {
    const test::TempDir dir("faults_corrupt_" + how);
    // Killed after step 9: checkpoints 6 and 8 (keep 2); then the newest is damaged.
    ASSERT_TRUE(killed(run_child(dir.path, "after_step:9"))) << how;
    const fs::path newest = dir.path / "checkpoints" / "ckpt_00000008.pt";
    ASSERT_TRUE(fs::exists(newest)) << how;
    corrupt_file(newest, how);
    const std::string damaged = read_file(newest);

    torch::manual_seed(1);
    TrainerCallbacks cb;
    std::vector<std::string> skipped;
    cb.on_checkpoint_skipped = [&](const std::string& path, const std::string& reason,
                                   const std::string& renamed) {
      skipped.push_back(path + " | " + reason + " | " + renamed);
    };
    FaultTrainer t(FaultNet(), std::make_shared<DenoisingObjective>(), make_schedule("discrete"),
                   points(), options(dir.path), cb);
    const std::string resumed = t.resume_latest();
    EXPECT_EQ(fs::path(resumed).filename(), "ckpt_00000006.pt") << how;
    EXPECT_EQ(t.step(), 6) << how;
    ASSERT_EQ(skipped.size(), 1u) << how;
    EXPECT_EQ(skipped[0].rfind(newest.string() + " | ", 0), 0u) << skipped[0];
    EXPECT_NE(skipped[0].find("ckpt_00000008.pt"), std::string::npos) << skipped[0];
    EXPECT_NE(skipped[0].find(" | " + newest.string() + ".corrupt"), std::string::npos)
        << skipped[0];
    // Set aside, not deleted: the damaged bytes are kept under the new name.
    EXPECT_FALSE(fs::exists(newest)) << how;
    EXPECT_EQ(read_file(newest.string() + ".corrupt"), damaged) << how;

    // Training on ends where the uninterrupted run ends (pruning kept the intact checkpoints and
    // never counted or touched the corrupt one).
    const TrainResult r = t.train();
    EXPECT_EQ(r.final_step, 12) << how;
    EXPECT_EQ(read_file(newest.string() + ".corrupt"), damaged) << how;
    fs::remove(newest.string() + ".corrupt");
    expect_same_folder(dir.path, reference(), "corrupt newest checkpoint (" + how + ")");
  }
}

TEST_F(TrainingFaults, AllCheckpointsCorruptIsAnErrorNamingThemAndRenamesNothing) {
  const test::TempDir dir("faults_all_corrupt");
  ASSERT_TRUE(killed(run_child(dir.path, "after_step:9")));
  const fs::path c6 = dir.path / "checkpoints" / "ckpt_00000006.pt",
                 c8 = dir.path / "checkpoints" / "ckpt_00000008.pt";
  corrupt_file(c6, "garbage");
  corrupt_file(c8, "truncated");
  torch::manual_seed(1);
  FaultTrainer t(FaultNet(), std::make_shared<DenoisingObjective>(), make_schedule("discrete"),
                 points(), options(dir.path));
  try {
    t.resume_latest();
    ADD_FAILURE() << "resumed from corrupt checkpoints";
  } catch (const CorruptCheckpointError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("none of the 2 checkpoint(s)"), std::string::npos) << what;
    EXPECT_NE(what.find(c6.string()), std::string::npos) << what;
    EXPECT_NE(what.find(c8.string()), std::string::npos) << what;
  }
  EXPECT_TRUE(fs::exists(c6));
  EXPECT_TRUE(fs::exists(c8));
  EXPECT_EQ(t.step(), 0);
}

// A checkpoint of a different setup is a configuration error, never skipped as corrupt, even
// behind a corrupt newer one.
TEST_F(TrainingFaults, DifferentSetupBehindACorruptCheckpointIsStillRefused) {
  const test::TempDir dir("faults_corrupt_setup");
  ASSERT_TRUE(killed(run_child(dir.path, "after_step:9")));
  const fs::path c8 = dir.path / "checkpoints" / "ckpt_00000008.pt";
  corrupt_file(c8, "truncated");
  torch::manual_seed(1);
  FaultTrainer t(FaultNet(), std::make_shared<DenoisingObjective>(), make_schedule("discrete"),
                 points(), options(dir.path).lr(1e-3));
  try {
    t.resume_latest();
    ADD_FAILURE() << "resumed into a different setup";
  } catch (const CorruptCheckpointError& e) {
    ADD_FAILURE() << "reported as corrupt: " << e.what();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("different setup"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("ckpt_00000006.pt"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(fs::exists(c8));  // nothing set aside
}

// ----- stopping on request (Ctrl-C in `diffuse train`)

// A stop requested during step 5 (not a checkpoint step) ends train() after it with a checkpoint
// of step 5; resumed, the run ends with the uninterrupted run's folder.
TEST_F(TrainingFaults, StopRequestCheckpointsTheStepAndResumesBitExactly) {
  (void)reference();
  const test::TempDir dir("faults_stop");
  {
    torch::manual_seed(1);
    bool stop = false;
    int polls = 0;
    TrainerCallbacks cb;
    cb.on_step = [&](const StepStats& st) { stop = st.step == 5; };
    cb.should_stop = [&] {
      ++polls;
      return stop;
    };
    FaultTrainer t(FaultNet(), std::make_shared<DenoisingObjective>(), make_schedule("discrete"),
                   points(), options(dir.path), cb);
    const TrainResult r = t.train();
    EXPECT_EQ(r.reason, StopReason::kInterrupted);
    EXPECT_EQ(r.final_step, 5);
    EXPECT_EQ(polls, 5);
    EXPECT_EQ(fs::path(r.last_checkpoint).filename(), "ckpt_00000005.pt");
    EXPECT_TRUE(fs::exists(r.last_checkpoint));
    EXPECT_TRUE(fs::exists(dir.path / "loss.png"));  // from the first loss.csv row on
  }
  expect_sound_folder(dir.path, "stopped at 5");
  expect_resumes_to_reference(dir.path, "stopped at 5");
}

// request_stop() before train(): one step, a checkpoint, kInterrupted; the request is answered,
// so the next train() runs to the end, and the folder is the uninterrupted run's.
TEST_F(TrainingFaults, RequestStopIsAnsweredOnce) {
  (void)reference();
  const test::TempDir dir("faults_request_stop");
  torch::manual_seed(1);
  FaultTrainer t(FaultNet(), std::make_shared<DenoisingObjective>(), make_schedule("discrete"),
                 points(), options(dir.path));
  t.request_stop();
  TrainResult r = t.train();
  EXPECT_EQ(r.reason, StopReason::kInterrupted);
  EXPECT_EQ(r.final_step, 1);
  EXPECT_TRUE(fs::exists(dir.path / "checkpoints" / "ckpt_00000001.pt"));
  r = t.train();
  EXPECT_EQ(r.reason, StopReason::kFinished);
  EXPECT_EQ(r.final_step, 12);
  expect_same_folder(dir.path, reference(), "request_stop");
}

// Data-parallel: the stop request travels with the step's statistics, so every rank stops after
// the same step, whichever rank was asked (a stand-in reduction reports another rank's request
// at step 3); only rank 0 writes the checkpoint.
TEST_F(TrainingFaults, DataParallelRanksStopAfterTheSameStep) {
  for (int rank : {0, 1}) {
    const test::TempDir dir("faults_dp_stop_" + std::to_string(rank));
    torch::manual_seed(1);
    FaultTrainer t(FaultNet(), std::make_shared<DenoisingObjective>(), make_schedule("discrete"),
                   points(), options(dir.path).sample_every(0));
    int calls = 0;
    t.set_data_parallel(rank, 2, [&](std::vector<Tensor>& v) {
      ++calls;
      Tensor stats = v.back();
      ASSERT_GE(stats.numel(), 2);
      EXPECT_EQ(stats[-1].item<double>(), 0.0) << "this rank was not asked";
      if (calls == 3) stats[-1].fill_(0.5);  // the mean of 0 (here) and 1 (the other rank)
    });
    const TrainResult r = t.train();
    EXPECT_EQ(r.reason, StopReason::kInterrupted) << rank;
    EXPECT_EQ(r.final_step, 3) << rank;
    EXPECT_EQ(fs::exists(dir.path / "checkpoints" / "ckpt_00000003.pt"), rank == 0) << rank;
  }
}

// The handler of training/stop_signal.h, in a child process (signals are process-wide): the first
// signal is only recorded, a second one exits at once with 128 + signal, unless repeats are
// ignored; the guard restores the previous handlers.
int child_status(const std::function<int()>& body) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::alarm(30);
    ::_exit(body());
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

TEST(StopSignal, FirstSignalIsRecordedSecondExitsAtOnce) {
  for (const auto& [first, second] :
       {std::pair{SIGINT, SIGINT}, std::pair{SIGTERM, SIGTERM}, std::pair{SIGTERM, SIGINT}}) {
    const int status = child_status([first = first, second = second] {
      StopSignalGuard guard(nullptr, /*exit_on_repeat=*/true);
      if (stop_signal_received() != 0) return 10;
      ::raise(first);  // the handler runs before raise() returns
      if (stop_signal_received() != first) return 11;
      ::raise(second);
      return 12;  // not reached: the second signal exits
    });
    ASSERT_TRUE(WIFEXITED(status)) << first << " " << second;
    EXPECT_EQ(WEXITSTATUS(status), 128 + second) << first << " " << second;
  }
  // Repeats ignored (a launched rank): the process survives both and keeps the first signal.
  int status = child_status([] {
    StopSignalGuard guard(nullptr, /*exit_on_repeat=*/false);
    ::raise(SIGTERM);
    ::raise(SIGINT);
    return stop_signal_received() == SIGTERM ? 0 : 13;
  });
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  // After the guard, the default action again: SIGTERM kills.
  status = child_status([] {
    { StopSignalGuard guard; }
    ::raise(SIGTERM);
    return 14;
  });
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM) << status;
}

TEST(FaultInjection, SpecsAreParsedAndBadOnesNamed) {
  EXPECT_NO_THROW(set_fault_injection("before_rename:2:ckpt_"));
  EXPECT_NO_THROW(set_fault_injection("after_step"));
  EXPECT_NO_THROW(set_fault_injection(""));
  for (const char* bad : {":3", "after_step:x", "after_step:0", "after_step:"}) {
    try {
      set_fault_injection(bad);
      ADD_FAILURE() << bad << " accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(std::string("'") + bad + "'"), std::string::npos)
          << e.what();
    }
  }
  set_fault_injection("");
  // Disarmed points do nothing; an armed point with a non-matching subject does nothing.
  fault_point("after_step");
  set_fault_injection("after_rename:1:only_this");
  fault_point("after_rename", "/some/other/file");
  set_fault_injection("");
}

}  // namespace
}  // namespace diffuse
