// SPDX-License-Identifier: Apache-2.0
// Trainer tests on a stand-in tiny MLP (a Cloneable module with its own as_network) and small
// synthetic data: exact resume (destroy-and-resume and a real SIGKILL), LR warm-up, EMA warm-up,
// gradient accumulation = one big batch, clipping, label dropout, NaN detection, atomic writes,
// incompatible-resume errors and a one-batch overfit.
#include <diffuse/training/checkpoint.h>
#include <diffuse/training/dit.h>
#include <diffuse/training/ema.h>
#include <diffuse/training/objectives/denoising.h>
#include <diffuse/training/objectives/masked_denoising.h>
#include <diffuse/training/progress.h>
#include <diffuse/training/trainer.h>

#include <atomic>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <sys/wait.h>
#include <unistd.h>

#include <ATen/Parallel.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>
#include <torch/optim/adamw.h>

#include <gtest/gtest.h>

namespace diffuse {
namespace {

namespace fs = std::filesystem;

// ----- stand-ins -------------------------------------------------------------------------------

/// Flattens x_t, appends t / 1000 and (if classes > 0) a label embedding; two linear layers.
struct TinyMlpImpl : torch::nn::Cloneable<TinyMlpImpl> {
  TinyMlpImpl(int64_t dim, int64_t hidden, int64_t classes)
      : dim(dim), hidden(hidden), classes(classes) {
    reset();
  }
  void reset() override {
    const int64_t emb = classes > 0 ? 4 : 0;
    l1 = register_module("l1", torch::nn::Linear(dim + 1 + emb, hidden));
    l2 = register_module("l2", torch::nn::Linear(hidden, dim));
    if (classes > 0) label = register_module("label", torch::nn::Embedding(classes + 1, emb));
  }
  Tensor forward(const Tensor& x, const Tensor& t, const Conditioning& c) {
    const int64_t b = x.size(0);
    std::vector<Tensor> in{x.reshape({b, -1}), (t / 1000.0).reshape({b, 1}).to(x.scalar_type())};
    if (classes > 0) {
      Tensor y = c.value.defined() ? c.value : at::full({b}, classes, at::kLong);
      if (seen_labels) seen_labels->push_back(y.clone());
      in.push_back(label->forward(y));
    }
    return l2->forward(at::tanh(l1->forward(at::cat(in, 1)))).reshape(x.sizes());
  }
  int64_t dim, hidden, classes;
  torch::nn::Linear l1{nullptr}, l2{nullptr};
  torch::nn::Embedding label{nullptr};
  std::vector<Tensor>* seen_labels = nullptr;  // test hook: records the labels the network saw
};
TORCH_MODULE(TinyMlp);

Network as_network(TinyMlp m) {
  auto impl = m.ptr();
  return [impl](const Tensor& x, const Tensor& t, const Conditioning& c) {
    return impl->forward(x, t, c);
  };
}

/// Epsilon-prediction MSE with uniform integer times (an independent, minimal objective).
class EpsMse : public Objective {
 public:
  ObjectiveDraw draw(const NoiseSchedule& s, const Batch& b, at::Generator& gen) const override {
    ObjectiveDraw d;
    d.t = at::randint(0, s.num_train_timesteps(), {b.x0.size(0)}, gen,
                      b.x0.options().dtype(at::kLong))
              .to(b.x0.scalar_type());
    d.eps = at::randn(b.x0.sizes(), gen, b.x0.options());
    return d;
  }
  ObjectiveOutput evaluate(const Network& net, const NoiseSchedule& s, const Batch& b,
                           const ObjectiveDraw& d) const override {
    std::vector<int64_t> shape(b.x0.dim(), 1);
    shape[0] = b.x0.size(0);
    Tensor a = s.alpha(d.t).reshape(shape), sg = s.sigma(d.t).reshape(shape);
    Tensor out = net(a * b.x0 + sg * d.eps, d.t, b.cond);
    Tensor l = (out - d.eps).pow(2).reshape({b.x0.size(0), -1}).mean(1);
    return {l, {{"mse", l}, {"half", l * 0.5}}};
  }
  Parameterization prediction_type() const override { return Parameterization::kEpsilon; }
  std::string name() const override { return "test_eps_mse"; }
  Config to_config() const override { return {}; }
};

/// No randomness: predicts a fixed function of x0 at t = 500 (for accumulation/clipping/overfit).
class FixedRegression : public Objective {
 public:
  ObjectiveDraw draw(const NoiseSchedule&, const Batch& b, at::Generator&) const override {
    ObjectiveDraw d;
    d.t = at::full({b.x0.size(0)}, 500.0, b.x0.options());
    d.eps = at::sin(b.x0 * 3.0);
    return d;
  }
  ObjectiveOutput evaluate(const Network& net, const NoiseSchedule&, const Batch& b,
                           const ObjectiveDraw& d) const override {
    Tensor l = (net(b.x0, d.t, b.cond) - d.eps).pow(2).reshape({b.x0.size(0), -1}).mean(1);
    return {l, {}};
  }
  Parameterization prediction_type() const override { return Parameterization::kEpsilon; }
  std::string name() const override { return "test_fixed_regression"; }
  Config to_config() const override { return {}; }
};

/// EpsMse whose `nan_call`-th evaluation returns NaN.
class NanAt : public EpsMse {
 public:
  explicit NanAt(int64_t nan_call) : nan_call_(nan_call) {}
  ObjectiveOutput evaluate(const Network& net, const NoiseSchedule& s, const Batch& b,
                           const ObjectiveDraw& d) const override {
    ObjectiveOutput o = EpsMse::evaluate(net, s, b, d);
    if (++calls_ == nan_call_) o.loss = o.loss * std::numeric_limits<double>::quiet_NaN();
    return o;
  }
  std::string name() const override { return "test_nan"; }

 private:
  int64_t nan_call_;
  mutable std::atomic<int64_t> calls_{0};
};

Dataset toy_points(int64_t n, int64_t classes, uint64_t seed = 7) {
  at::Generator g = at::detail::createCPUGenerator(seed);
  Dataset d;
  d.name = "test_points";
  Tensor y = at::randint(0, std::max<int64_t>(classes, 2), {n}, g, at::kLong);
  Tensor centre = at::stack({at::cos(y.to(at::kFloat) * 2.0), at::sin(y.to(at::kFloat) * 2.0)}, 1);
  d.data = centre + 0.1 * at::randn({n, 2}, g, at::kFloat);
  if (classes > 0) {
    d.labels = y;
    d.num_classes = classes;
  }
  return d;
}

Dataset toy_images(int64_t n) {
  at::Generator g = at::detail::createCPUGenerator(3);
  Dataset d;
  d.name = "test_images";
  d.data = at::rand({n, 1, 4, 4}, g, at::kFloat) * 2 - 1;
  return d;
}

std::shared_ptr<const NoiseSchedule> ddpm() { return make_schedule("discrete"); }

TinyMlp make_mlp(uint64_t init_seed, int64_t dim = 2, int64_t classes = 0, int64_t hidden = 16) {
  torch::manual_seed(init_seed);
  return TinyMlp(dim, hidden, classes);
}

fs::path scratch(const std::string& name) {
  fs::path p =
      fs::temp_directory_path() / ("diffuse_trainer_test_" + std::to_string(::getpid())) / name;
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int64_t count_temporaries(const fs::path& dir) {
  int64_t n = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.find(".tmp") != std::string::npos) ++n;
  }
  return n;
}

void expect_same_parameters(torch::nn::Module& a, torch::nn::Module& b) {
  auto pa = a.named_parameters(), pb = b.named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (const auto& item : pa) {
    EXPECT_TRUE(at::equal(item.value(), pb[item.key()])) << item.key();
  }
}

class TrainerTest : public ::testing::Test {
 protected:
  void SetUp() override { at::set_num_threads(1); }
  static void TearDownTestSuite() {
    std::error_code ec;
    fs::remove_all(
        fs::temp_directory_path() / ("diffuse_trainer_test_" + std::to_string(::getpid())), ec);
  }
};

// A configuration that exercises everything that carries state across steps: labels + dropout,
// warm-up, clipping, accumulation, EMA, a log window that straddles the checkpoint.
TrainerOptions resume_options(const fs::path& out) {
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
      .checkpoint_every(4)
      .keep_checkpoints(2)
      .log_every(3)
      .output_dir(out.string());
}

struct Trajectory {
  std::vector<double> losses;
  std::vector<double> grad_norms;
};

TrainerCallbacks record(Trajectory& r, int64_t crash_at = -1) {
  TrainerCallbacks cb;
  cb.on_step = [&r, crash_at](const StepStats& st) {
    r.losses.push_back(st.loss);
    r.grad_norms.push_back(st.grad_norm);
    if (st.step == crash_at) throw std::runtime_error("simulated crash");
  };
  return cb;
}

TEST_F(TrainerTest, ResumeAfterDestroyContinuesBitExactly) {
  const Dataset data = toy_points(50, 3);  // 50 is not a multiple of 24: batches straddle epochs
  auto obj = std::make_shared<EpsMse>();
  // Uninterrupted.
  const fs::path da = scratch("resume_a");
  Trajectory a;
  Trainer<TinyMlp> ta(make_mlp(1, 2, 3), obj, ddpm(), data, resume_options(da), record(a));
  ta.train();
  ASSERT_EQ(a.losses.size(), 12u);
  // Interrupted after step 6 (last checkpoint: step 4), trainer destroyed.
  const fs::path db = scratch("resume_b");
  Trajectory b1;
  {
    Trainer<TinyMlp> tb(make_mlp(1, 2, 3), obj, ddpm(), data, resume_options(db), record(b1, 6));
    EXPECT_THROW(tb.train(), std::runtime_error);
  }
  ASSERT_EQ(b1.losses.size(), 6u);
  EXPECT_EQ(list_checkpoints((db / "checkpoints").string()).back().first, 4);
  // A row cut short by a kill while appending (here: just "1" of a step number, no newline).
  std::ofstream(db / "loss.csv", std::ios::app) << "1";
  // A new trainer with a differently initialised model resumes and finishes.
  Trajectory b2;
  Trainer<TinyMlp> tb(make_mlp(99, 2, 3), obj, ddpm(), data, resume_options(db), record(b2));
  const std::string from = tb.resume_latest();
  EXPECT_EQ(fs::path(from).filename().string(), checkpoint_filename(4));
  EXPECT_EQ(tb.step(), 4);
  tb.train();
  ASSERT_EQ(b2.losses.size(), 8u);
  for (size_t i = 0; i < 8; ++i) {
    EXPECT_EQ(b2.losses[i], a.losses[i + 4]) << "step " << i + 5;
    EXPECT_EQ(b2.grad_norms[i], a.grad_norms[i + 4]) << "step " << i + 5;
  }
  for (size_t i = 0; i < 6; ++i) EXPECT_EQ(b1.losses[i], a.losses[i]);
  expect_same_parameters(*ta.model(), *tb.model());
  expect_same_parameters(*ta.ema(), *tb.ema());
  EXPECT_EQ(ta.epoch(), tb.epoch());
  EXPECT_EQ(ta.epoch_position(), tb.epoch_position());
  // The loss curve of the resumed run equals the uninterrupted one (rows after step 4 that the
  // interrupted run wrote were dropped, the log window across the checkpoint was restored).
  EXPECT_EQ(read_file(da / "loss.csv"), read_file(db / "loss.csv"));
  EXPECT_TRUE(fs::exists(db / "loss.png"));
  // keep_checkpoints = 2, no temporaries left.
  auto kept = list_checkpoints((da / "checkpoints").string());
  ASSERT_EQ(kept.size(), 2u);
  EXPECT_EQ(kept[0].first, 8);
  EXPECT_EQ(kept[1].first, 12);
  EXPECT_EQ(count_temporaries(da), 0);
  EXPECT_EQ(count_temporaries(db), 0);
  // The losses are not all equal (the test would be vacuous otherwise).
  EXPECT_NE(a.losses[4], a.losses[5]);
}

TEST_F(TrainerTest, ResumeAfterSigkillContinuesBitExactly) {
  const Dataset data = toy_points(50, 3);
  auto obj = std::make_shared<EpsMse>();
  Trajectory a;
  const fs::path da = scratch("kill_a");
  Trainer<TinyMlp> ta(make_mlp(1, 2, 3), obj, ddpm(), data, resume_options(da), record(a));
  ta.train();

  const fs::path db = scratch("kill_b");
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::alarm(60);  // never hang the test
    TrainerCallbacks cb;
    cb.on_step = [](const StepStats& st) {
      if (st.step == 10) ::raise(SIGKILL);
    };
    try {
      Trainer<TinyMlp> t(make_mlp(1, 2, 3), obj, ddpm(), data, resume_options(db), cb);
      t.train();
    } catch (...) {
    }
    ::_exit(3);  // not reached when the kill happens
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status)) << "child exited with status " << status;
  ASSERT_EQ(WTERMSIG(status), SIGKILL);
  Trajectory b;
  Trainer<TinyMlp> tb(make_mlp(5, 2, 3), obj, ddpm(), data, resume_options(db), record(b));
  ASSERT_NE(tb.resume_latest(), "");
  EXPECT_EQ(tb.step(), 8);
  tb.train();
  ASSERT_EQ(b.losses.size(), 4u);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(b.losses[i], a.losses[i + 8]) << "step " << i + 9;
  expect_same_parameters(*ta.model(), *tb.model());
  expect_same_parameters(*ta.ema(), *tb.ema());
  EXPECT_EQ(read_file(da / "loss.csv"), read_file(db / "loss.csv"));
}

TEST_F(TrainerTest, LearningRateWarmsUpLinearly) {
  Trajectory r;
  std::vector<double> lrs, group_lrs;
  TrainerCallbacks cb;
  Trainer<TinyMlp>* self = nullptr;
  cb.on_step = [&](const StepStats& st) {
    lrs.push_back(st.lr);
    group_lrs.push_back(
        static_cast<torch::optim::AdamWOptions&>(self->optimizer().param_groups()[0].options())
            .lr());
  };
  Trainer<TinyMlp> t(make_mlp(1), std::make_shared<EpsMse>(), ddpm(), toy_points(32, 0),
                     TrainerOptions().steps(6).batch_size(8).lr(1e-3).warmup_steps(4).threads(1),
                     cb);
  self = &t;
  t.train();
  const std::vector<double> want{2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3};
  ASSERT_EQ(lrs.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_DOUBLE_EQ(lrs[i], want[i]) << i;
    EXPECT_DOUBLE_EQ(group_lrs[i], want[i]) << i;
  }
}

TEST_F(TrainerTest, EmaFollowsTheWarmedUpRecurrence) {
  // decay_n = min(0.8, (1 + n) / (10 + n)): 2/11, 3/12, ..., reaching 0.8 at n = 35.
  EXPECT_DOUBLE_EQ(ema_decay_at(0.8, 1), 2.0 / 11.0);
  EXPECT_DOUBLE_EQ(ema_decay_at(0.8, 7), 8.0 / 17.0);
  EXPECT_DOUBLE_EQ(ema_decay_at(0.8, 100), 0.8);
  EXPECT_DOUBLE_EQ(ema_decay_at(0.8, 1, /*warmup=*/false), 0.8);
  EXPECT_THROW(ema_decay_at(1.5, 1), Error);

  TinyMlp model = make_mlp(2);
  std::map<std::string, Tensor> expect;
  for (const auto& item : model->named_parameters())
    expect[item.key()] = item.value().detach().clone();
  std::vector<double> decays;
  TrainerCallbacks cb;
  cb.on_step = [&](const StepStats& st) {
    decays.push_back(st.ema_decay);
    const double d = std::min(0.8, (1.0 + st.step) / (10.0 + st.step));
    for (const auto& item : model->named_parameters()) {
      expect[item.key()] = expect[item.key()] * d + item.value().detach() * (1 - d);
    }
  };
  Trainer<TinyMlp> t(model, std::make_shared<EpsMse>(), ddpm(), toy_points(32, 0),
                     TrainerOptions().steps(40).batch_size(8).lr(1e-2).ema_decay(0.8).threads(1),
                     cb);
  t.train();
  ASSERT_EQ(decays.size(), 40u);
  EXPECT_DOUBLE_EQ(decays[0], 2.0 / 11.0);
  EXPECT_DOUBLE_EQ(decays[39], 0.8);
  for (const auto& item : t.ema()->named_parameters()) {
    EXPECT_TRUE(at::allclose(item.value(), expect[item.key()], 1e-5, 1e-6)) << item.key();
    // ... and it differs from the model itself.
    EXPECT_FALSE(at::allclose(item.value(), model->named_parameters()[item.key()], 1e-5, 1e-6))
        << item.key();
  }
}

std::vector<Tensor> grads_after_one_step(int64_t accum, double clip, double* grad_norm = nullptr,
                                         double* loss = nullptr) {
  Trainer<TinyMlp> t(
      make_mlp(4), std::make_shared<FixedRegression>(), ddpm(), toy_points(64, 0),
      TrainerOptions().steps(1).batch_size(32).grad_accum(accum).grad_clip(clip).lr(1e-3).threads(
          1));
  StepStats st = t.train_step();
  if (grad_norm) *grad_norm = st.grad_norm;
  if (loss) *loss = st.loss;
  std::vector<Tensor> g;
  for (const auto& p : t.model()->parameters()) g.push_back(p.grad().clone());
  return g;
}

TEST_F(TrainerTest, GradientAccumulationEqualsOneBigBatch) {
  double l1 = 0, l4 = 0;
  auto g1 = grads_after_one_step(1, 0, nullptr, &l1);
  auto g4 = grads_after_one_step(4, 0, nullptr, &l4);
  ASSERT_EQ(g1.size(), g4.size());
  for (size_t i = 0; i < g1.size(); ++i) {
    EXPECT_TRUE(at::allclose(g1[i], g4[i], 1e-4, 1e-7))
        << i << ": " << (g1[i] - g4[i]).abs().max().item<double>();
  }
  EXPECT_NEAR(l1, l4, 1e-6 * std::abs(l1));
  // Not vacuous: the gradient is not zero.
  EXPECT_GT(g1[0].abs().max().item<double>(), 1e-4);
}

TEST_F(TrainerTest, GradientClippingCapsTheGlobalNorm) {
  double raw_norm = 0, clipped_reported = 0;
  auto raw = grads_after_one_step(1, 0, &raw_norm);
  const double cap = raw_norm / 4;
  auto clipped = grads_after_one_step(1, cap, &clipped_reported);
  EXPECT_DOUBLE_EQ(clipped_reported, raw_norm);  // the reported norm is the one before clipping
  double sum = 0;
  for (size_t i = 0; i < clipped.size(); ++i) {
    sum += clipped[i].pow(2).sum().item<double>();
    // Same direction, scaled by cap / norm.
    EXPECT_TRUE(at::allclose(clipped[i], raw[i] * (cap / raw_norm), 1e-4, 1e-7)) << i;
  }
  EXPECT_NEAR(std::sqrt(sum), cap, 1e-4 * cap);
  // A cap above the norm changes nothing.
  auto same = grads_after_one_step(1, raw_norm * 2);
  for (size_t i = 0; i < raw.size(); ++i) EXPECT_TRUE(at::equal(same[i], raw[i])) << i;
}

TEST_F(TrainerTest, LabelDropoutUsesTheNullIdAtRateP) {
  const Dataset data = toy_points(64, 3);
  Trainer<TinyMlp> t(make_mlp(1, 2, 3), std::make_shared<EpsMse>(), ddpm(), data,
                     TrainerOptions().steps(1).batch_size(8).label_dropout(0.25).threads(1));
  Tensor labels = at::arange(20000, at::kLong).remainder(3);
  Tensor out = t.drop_labels(labels);
  Tensor dropped = out == 3;
  const double rate = dropped.to(at::kDouble).mean().item<double>();
  EXPECT_NEAR(rate, 0.25, 4 * std::sqrt(0.25 * 0.75 / 20000));  // 4 sigma
  EXPECT_TRUE(at::equal(out.masked_select(~dropped), labels.masked_select(~dropped)));
  // The network sees the dropped labels during training.
  std::vector<Tensor> seen;
  TinyMlp model = make_mlp(1, 2, 3);
  model->seen_labels = &seen;
  Trainer<TinyMlp> t2(model, std::make_shared<EpsMse>(), ddpm(), data,
                      TrainerOptions().steps(20).batch_size(32).label_dropout(0.25).threads(1));
  t2.train();
  Tensor all = at::cat(seen);
  EXPECT_EQ(all.numel(), 20 * 32);
  const double seen_rate = (all == 3).to(at::kDouble).mean().item<double>();
  EXPECT_NEAR(seen_rate, 0.25, 4 * std::sqrt(0.25 * 0.75 / 640));
  // Unlabelled data, or p = 0: labels untouched / absent.
  Trainer<TinyMlp> t3(make_mlp(1, 2, 3), std::make_shared<EpsMse>(), ddpm(), data,
                      TrainerOptions().steps(1).batch_size(8).label_dropout(0).threads(1));
  EXPECT_TRUE(at::equal(t3.drop_labels(labels), labels));
}

TEST_F(TrainerTest, NanLossNamesTheStepAndLeavesTheLastCheckpointIntact) {
  const fs::path dir = scratch("nan");
  std::string written;
  TrainerCallbacks cb;
  cb.on_checkpoint = [&](const std::string& path, int64_t) { written = read_file(path); };
  Trainer<TinyMlp> t(
      make_mlp(1), std::make_shared<NanAt>(6), ddpm(), toy_points(32, 0),
      TrainerOptions().steps(10).batch_size(8).checkpoint_every(4).threads(1).output_dir(
          dir.string()),
      cb);
  try {
    t.train();
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("loss is nan at step 6"), std::string::npos) << e.what();
  }
  auto ckpts = list_checkpoints((dir / "checkpoints").string());
  ASSERT_EQ(ckpts.size(), 1u);
  EXPECT_EQ(ckpts[0].first, 4);
  EXPECT_EQ(read_file(ckpts[0].second), written);
  EXPECT_EQ(checkpoint_step(ckpts[0].second), 4);
  EXPECT_EQ(count_temporaries(dir), 0);
}

TEST_F(TrainerTest, AtomicWriteNeverLeavesAPartialFile) {
  const fs::path dir = scratch("atomic");
  const std::string path = (dir / checkpoint_filename(3)).string();
  write_text_file_atomic(path, "complete old contents");
  // A writer that fails half-way.
  try {
    write_file_atomic(path, [](std::ostream& os) {
      os << "partial";
      throw std::runtime_error("disk on fire");
    });
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("disk on fire"), std::string::npos) << e.what();
  }
  EXPECT_EQ(read_file(path), "complete old contents");
  EXPECT_EQ(count_temporaries(dir), 0);
  // A process killed while writing the temporary file: the old file survives, the stale temporary
  // is ignored by latest_checkpoint and removed by remove_stale_temporaries.
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::alarm(30);
    const std::string big(1 << 20, 'x');
    const fs::path tmp = dir / ("." + fs::path(path).filename().string() + "." +
                                std::to_string(::getpid()) + ".tmp");
    std::ofstream(tmp) << big.substr(0, 1000);  // what a writer killed mid-way leaves behind
    ::raise(SIGKILL);
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(read_file(path), "complete old contents");
  EXPECT_EQ(count_temporaries(dir), 1);
  EXPECT_EQ(*latest_checkpoint(dir.string()), path);
  EXPECT_EQ(remove_stale_temporaries(dir.string()), 1);
  EXPECT_EQ(count_temporaries(dir), 0);
  // A successful write replaces the file.
  write_text_file_atomic(path, "new");
  EXPECT_EQ(read_file(path), "new");
  // Unwritable destination: an error naming the path.
  EXPECT_THROW(write_text_file_atomic((dir / "no_such_dir" / "f").string(), "x"), Error);
}

TEST_F(TrainerTest, CheckpointNamesAndDiscovery) {
  EXPECT_EQ(checkpoint_filename(1234), "ckpt_00001234.pt");
  EXPECT_EQ(*parse_checkpoint_filename("ckpt_00001234.pt"), 1234);
  EXPECT_FALSE(parse_checkpoint_filename(".ckpt_00001234.pt.77.tmp"));
  EXPECT_FALSE(parse_checkpoint_filename("ckpt_12a.pt"));
  EXPECT_FALSE(latest_checkpoint("/nonexistent/diffuse"));
  const fs::path dir = scratch("names");
  for (int s : {5, 40, 300}) write_text_file_atomic((dir / checkpoint_filename(s)).string(), "x");
  EXPECT_EQ(fs::path(*latest_checkpoint(dir.string())).filename().string(),
            checkpoint_filename(300));
  prune_checkpoints(dir.string(), 1);
  ASSERT_EQ(list_checkpoints(dir.string()).size(), 1u);
}

TEST_F(TrainerTest, IncompatibleResumeIsAClearError) {
  const fs::path dir = scratch("incompatible");
  const Dataset data = toy_points(32, 0);
  auto opts = TrainerOptions().steps(2).batch_size(8).threads(1).output_dir(dir.string());
  Trainer<TinyMlp>(make_mlp(1), std::make_shared<EpsMse>(), ddpm(), data, opts).train();
  const std::string ckpt = *latest_checkpoint((dir / "checkpoints").string());
  {
    Trainer<TinyMlp> t(make_mlp(1), std::make_shared<EpsMse>(), ddpm(), data,
                       TrainerOptions(opts).batch_size(16));
    try {
      t.load_checkpoint(ckpt);
      FAIL() << "expected an error";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(ckpt), std::string::npos) << msg;
      EXPECT_NE(msg.find("batch_size: checkpoint 8, this run 16"), std::string::npos) << msg;
    }
  }
  {
    Trainer<TinyMlp> t(make_mlp(1, 2, 0, 24), std::make_shared<EpsMse>(), ddpm(), data, opts);
    try {
      t.load_checkpoint(ckpt);
      FAIL() << "expected an error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("model_shapes"), std::string::npos) << e.what();
    }
  }
  {
    Trainer<TinyMlp> t(make_mlp(1), std::make_shared<FixedRegression>(), ddpm(), data, opts);
    EXPECT_THROW(t.load_checkpoint(ckpt), Error);
  }
  {
    Trainer<TinyMlp> t(make_mlp(1), std::make_shared<EpsMse>(), ddpm(), data,
                       TrainerOptions(opts).model_config("heads 4"));
    try {
      t.load_checkpoint(ckpt);
      FAIL() << "expected an error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("model_config: checkpoint , this run heads 4"),
                std::string::npos)
          << e.what();
    }
  }
  {
    Trainer<TinyMlp> t(make_mlp(1), std::make_shared<EpsMse>(), ddpm(), data, opts);
    EXPECT_THROW(t.load_checkpoint((dir / "missing.pt").string()), Error);
    // steps, output/cadence options and threads may change on resume.
    Trainer<TinyMlp> t2(make_mlp(1), std::make_shared<EpsMse>(), ddpm(), data,
                        TrainerOptions(opts).steps(50).log_every(1).checkpoint_every(7));
    EXPECT_NO_THROW(t2.load_checkpoint(ckpt));
    EXPECT_EQ(t2.step(), 2);
  }
}

TEST_F(TrainerTest, BadOptionsAreErrorsThatNameTheValue) {
  const Dataset data = toy_points(16, 0);
  auto make = [&](TrainerOptions o) {
    Trainer<TinyMlp>(make_mlp(1), std::make_shared<EpsMse>(), ddpm(), data, o.threads(1));
  };
  auto expect_error = [&](TrainerOptions o, const std::string& what) {
    try {
      make(o);
      ADD_FAILURE() << "expected an error mentioning " << what;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  expect_error(TrainerOptions().batch_size(10).grad_accum(3), "divisible by grad_accum (3)");
  expect_error(TrainerOptions().lr(-1), "lr must be > 0, got -1");
  expect_error(TrainerOptions().ema_decay(1.5), "ema_decay must be in [0, 1], got 1.5");
  expect_error(TrainerOptions().label_dropout(2), "label_dropout must be in [0, 1], got 2");
  expect_error(TrainerOptions().sample_every(5).sampler("no_such_sampler"), "no_such_sampler");
}

TEST_F(TrainerTest, OneBatchOverfitDropsTheLossTenfold) {
  Trajectory r;
  Trainer<TinyMlp> t(make_mlp(3, 2, 0, 32), std::make_shared<FixedRegression>(), ddpm(),
                     toy_points(16, 0),
                     TrainerOptions().steps(300).batch_size(16).lr(1e-2).threads(1), record(r));
  t.train();
  EXPECT_LT(r.losses.back(), r.losses.front() / 10)
      << r.losses.front() << " -> " << r.losses.back();
}

TEST_F(TrainerTest, PreviewsAndLossCurveAreWritten) {
  const fs::path dir = scratch("previews");
  std::vector<std::string> previews;
  TrainerCallbacks cb;
  cb.on_sample = [&](const Tensor& x, const std::string& path, int64_t) {
    EXPECT_EQ(x.sizes(), (std::vector<int64_t>{6, 1, 4, 4}));
    EXPECT_LE(x.abs().max().item<double>(), 1.0);
    previews.push_back(path);
  };
  Trainer<TinyMlp> t(make_mlp(1, 16), std::make_shared<EpsMse>(), ddpm(), toy_images(32),
                     TrainerOptions()
                         .steps(6)
                         .batch_size(8)
                         .sample_every(3)
                         .sample_count(6)
                         .sample_nrow(3)
                         .sample_steps(4)
                         .log_every(2)
                         .threads(1)
                         .output_dir(dir.string()),
                     cb);
  TrainResult res = t.train();
  EXPECT_EQ(res.final_step, 6);
  EXPECT_EQ(res.steps_done, 6);
  EXPECT_EQ(res.reason, StopReason::kFinished);
  EXPECT_GT(res.step_seconds, 0);
  EXPECT_LE(res.step_seconds, res.seconds);
  ASSERT_EQ(previews.size(), 2u);
  EXPECT_TRUE(fs::exists(dir / "samples_00000003.png"));
  EXPECT_TRUE(fs::exists(dir / "samples_00000006.png"));
  EXPECT_TRUE(fs::exists(dir / "loss.png"));
  EXPECT_EQ(res.last_checkpoint, (dir / "checkpoints" / checkpoint_filename(6)).string());
  // loss.csv: header and one row per log_every steps, rows = averages of the per-step losses.
  std::ifstream in(dir / "loss.csv");
  std::string header, row;
  std::getline(in, header);
  EXPECT_EQ(header, "step,loss,half,mse,lr,grad_norm");
  int rows = 0;
  while (std::getline(in, row)) ++rows;
  EXPECT_EQ(rows, 3);
  // The same seed draws the same preview twice (previews do not consume training randomness).
  EXPECT_TRUE(at::equal(t.sample(4, 9), t.sample(4, 9)));
  // ProgressBar text.
  StepStats st;
  st.step = 5;
  st.total_steps = 10;
  st.loss = 0.5;
  st.lr = 1e-4;
  st.it_per_s = 2;
  st.images_per_s = 128;
  st.eta_s = 65;
  st.progress = 0.5;
  const std::string line = ProgressBar(10).line(st);
  EXPECT_NE(line.find("[#####-----] 5/10"), std::string::npos) << line;
  EXPECT_NE(line.find("128 img/s"), std::string::npos) << line;
  EXPECT_NE(line.find("ETA 01:05"), std::string::npos) << line;
  EXPECT_EQ(format_duration(3725), "1:02:05");
  // The plain line for output that is not a terminal (no "\r", no ANSI codes), and its throttle.
  EXPECT_EQ(train_progress_line(st), "train: 5/10 steps (50%), loss 0.5, 2.00 it/s, ETA 01:05");
  EXPECT_EQ(progress_log_line("sampling", 2, 3, "", 2.0 / 3.0, 4.1, -1),
            "sampling: 2/3 (66%), 4.10 it/s, ETA --:--");
  ProgressLogThrottle every5(5.0), every_time(0.0);
  EXPECT_FALSE(every5.due(1.0, false));
  EXPECT_TRUE(every5.due(5.5, false));
  EXPECT_FALSE(every5.due(9.0, false));
  EXPECT_TRUE(every5.due(9.0, true));  // the last update always
  EXPECT_TRUE(every_time.due(0.0, false));
  EXPECT_TRUE(every_time.due(0.0, false));
}

TEST_F(TrainerTest, TimeBudgetStopsWithACheckpoint) {
  const fs::path dir = scratch("budget");
  StepStats last;
  TrainerCallbacks cb;
  cb.on_step = [&](const StepStats& st) { last = st; };
  Trainer<TinyMlp> t(
      make_mlp(1), std::make_shared<EpsMse>(), ddpm(), toy_points(16, 0),
      TrainerOptions().steps(1000000).batch_size(8).max_minutes(1e-9).threads(1).output_dir(
          dir.string()),
      cb);
  TrainResult res = t.train();
  EXPECT_EQ(res.reason, StopReason::kTimeBudget);
  EXPECT_EQ(res.final_step, 1);
  EXPECT_EQ(last.progress, 1.0);  // the budget, not the 10^6 steps, sets the progress
  EXPECT_EQ(last.eta_s, 0.0);
  EXPECT_EQ(res.last_checkpoint, (dir / "checkpoints" / checkpoint_filename(1)).string());
}

// ----- the real model ---------------------------------------------------------------------------

Dataset labelled_images(int64_t n) {
  at::Generator g = at::detail::createCPUGenerator(5);
  Dataset d;
  d.name = "test_8x8";
  d.labels = at::randint(0, 3, {n}, g, at::kLong);
  // Class-dependent brightness plus noise, in [-1, 1].
  d.data =
      (d.labels.to(at::kFloat).reshape({n, 1, 1, 1}) * 0.5 - 0.5 + 0.2 * at::randn({n, 1, 8, 8}, g))
          .clamp(-1, 1);
  d.num_classes = 3;
  return d;
}

DiT tiny_dit(bool decoder) {
  torch::manual_seed(21);
  DiTOptions o(8, 1);
  o.patch_size(2).hidden_size(32).depth(2).num_heads(2).num_classes(3);
  if (decoder) o.decoder_depth(1).decoder_hidden_size(32).decoder_num_heads(2);
  return DiT(o);
}

TrainerOptions dit_options(const fs::path& out) {
  return TrainerOptions()
      .steps(6)
      .batch_size(8)
      .lr(1e-3)
      .ema_decay(0.9)
      .threads(1)
      .checkpoint_every(3)
      .log_every(2)
      .sample_every(6)
      .sample_count(4)
      .sample_nrow(2)
      .sample_steps(3)
      .cfg_scale(2.0)
      .output_dir(out.string());
}

TEST_F(TrainerTest, DiTTrainsAndResumesBitExactly) {
  const Dataset data = labelled_images(24);
  std::shared_ptr<const Objective> obj = objective_from_spec("ddpm_ip");
  Trajectory a, b1, b2;
  const fs::path da = scratch("dit_a"), db = scratch("dit_b");
  Trainer<DiT> ta(tiny_dit(false), obj, ddpm(), data, dit_options(da), record(a));
  ta.train();
  for (double l : a.losses) EXPECT_TRUE(std::isfinite(l));
  EXPECT_TRUE(fs::exists(da / "samples_00000006.png"));
  {
    Trainer<DiT> tb(tiny_dit(false), obj, ddpm(), data, dit_options(db), record(b1, 5));
    EXPECT_THROW(tb.train(), std::runtime_error);
  }
  Trainer<DiT> tb(tiny_dit(false), obj, ddpm(), data, dit_options(db), record(b2));
  ASSERT_NE(tb.resume_latest(), "");
  EXPECT_EQ(tb.step(), 3);
  tb.train();
  ASSERT_EQ(b2.losses.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(b2.losses[i], a.losses[i + 3]) << "step " << i + 4;
  expect_same_parameters(*ta.model(), *tb.model());
  expect_same_parameters(*ta.ema(), *tb.ema());
}

TEST_F(TrainerTest, MaskedDiTTrainsWithTheMaskedObjective) {
  const Dataset data = labelled_images(16);
  std::shared_ptr<const Objective> obj = objective_from_spec("maskdit:mask_ratio=0.5");
  Trajectory r;
  Trainer<DiT> t(tiny_dit(true), obj, ddpm(), data,
                 TrainerOptions(dit_options(scratch("maskdit"))).steps(3), record(r));
  t.train();
  ASSERT_EQ(r.losses.size(), 3u);
  for (double l : r.losses) EXPECT_TRUE(std::isfinite(l));
  Tensor x = t.sample(2, 0);
  EXPECT_EQ(x.sizes(), (std::vector<int64_t>{2, 1, 8, 8}));
}

TEST_F(TrainerTest, UnmaskingPhaseStartsFromTheMaskedRunsWeights) {
  // MaskDiT's second phase: the same model, mask ratio 0, a new optimiser and lr.
  const Dataset data = labelled_images(16);
  const fs::path masked_dir = scratch("phase1"), unmask_dir = scratch("phase2");
  Trainer<DiT> phase1(tiny_dit(true), objective_from_spec("maskdit:mask_ratio=0.5"), ddpm(), data,
                      TrainerOptions(dit_options(masked_dir)).steps(3).sample_every(0));
  const std::string last = phase1.train().last_checkpoint;
  ASSERT_FALSE(last.empty());

  DiT fresh = tiny_dit(true);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : fresh->parameters()) p.add_(1.0);  // differs from phase 1's weights everywhere
  }
  Trainer<DiT> phase2(fresh, objective_from_spec("maskdit:mask_ratio=0"), ddpm(), data,
                      TrainerOptions(dit_options(unmask_dir)).steps(2).lr(5e-4).sample_every(0));
  // A resume would refuse: the objective differs. A new phase takes the weights only.
  EXPECT_THROW(phase2.load_checkpoint(last), Error);
  phase2.initialize_from(last);
  expect_same_parameters(*phase1.model(), *phase2.model());
  expect_same_parameters(*phase1.ema(), *phase2.ema());
  EXPECT_EQ(phase2.step(), 0);
  phase2.train();
  EXPECT_EQ(phase2.step(), 2);

  // A model with other parameter shapes (no decoder) is refused with a clear error.
  Trainer<DiT> other(tiny_dit(false), objective_from_spec("denoising"), ddpm(), data,
                     TrainerOptions(dit_options(scratch("phase2_other"))).sample_every(0));
  try {
    other.initialize_from(last);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(last), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace diffuse
