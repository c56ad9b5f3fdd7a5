// SPDX-License-Identifier: Apache-2.0
// `diffuse train`: a tiny run from a JSON config, its automatic resume, the model file it writes,
// and one-line errors for bad configs.
#include <chrono>
#include <csignal>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include <diffuse/training/data.h>
#include <diffuse/training/model_file.h>
#include <torch/serialize/input-archive.h>

#include "cli/cli_test_util.h"
#include "test_util.h"

namespace {

namespace fs = std::filesystem;
using diffuse::test::cli_test_dir;
using diffuse::test::expect_clean_error;
using diffuse::test::read_text_file;
using diffuse::test::run_cli;
using diffuse::test::start_cli;
using diffuse::test::wait_cli;
using diffuse::test::write_file;

/// The step column of loss.csv.
std::vector<int64_t> loss_steps(const std::string& path) {
  std::istringstream is(read_text_file(path));
  std::string line;
  std::vector<int64_t> steps;
  std::getline(is, line);  // header
  while (std::getline(is, line))
    if (!line.empty()) steps.push_back(std::stoll(line.substr(0, line.find(','))));
  return steps;
}

// objective=flow_matching with the default schedule "auto" trains on the flow schedule; the model
// file says so (schedule flow, flow_prediction) and `diffuse sample --model` samples it.
TEST(CliTrain, FlowMatchingRunMakesASelfDescribingFlowModel) {
  const std::string dir = cli_test_dir("train_flow");
  const std::string out = dir + "/run";
  auto r = run_cli({"train",
                    "--out",
                    out,
                    "--set",
                    "objective=flow_matching",
                    "--set",
                    "limit=64",
                    "--set",
                    "batch_size=8",
                    "--set",
                    "steps=2",
                    "--set",
                    "minutes=0",
                    "--set",
                    "sample_every=0",
                    "--set",
                    "sample_steps=2",
                    "--set",
                    "checkpoint_every=0",
                    "--set",
                    "warmup=0"});
  ASSERT_EQ(r.code, 0) << r.err;
  const diffuse::LoadedModel m = diffuse::load_model(out + "/model.pt");
  EXPECT_EQ(m.card.prediction_type, "flow_prediction");
  EXPECT_EQ(m.card.schedule.rfind("flow", 0), 0u) << m.card.schedule;
  r = run_cli(
      {"sample", "--model", out + "/model.pt", "--steps", "2", "-n", "2", "-o", dir + "/flow.png"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(fs::exists(dir + "/flow.png"));
  // Align Your Steps on the flow model: the noise range tops out at sigma_ve = 1e4 (sigma = 1 is
  // sigma_ve = inf), and the schedule file samples the same model.
  r = run_cli({"ays", "--model", out + "/model.pt", "--steps", "3", "--sweeps", "1",
               "--search-iters", "3", "--nodes", "2", "--limit", "8", "--out",
               dir + "/flow_schedule.json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find(", 10000], "), std::string::npos) << r.err;
  r = run_cli({"sample", "--model", out + "/model.pt", "--schedule",
               "file:" + dir + "/flow_schedule.json", "-n", "2", "-o", dir + "/flow_ays.png"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(fs::exists(dir + "/flow_ays.png"));
}

TEST(CliTrain, TinyRunFromConfigThenResume) {
  const std::string dir = cli_test_dir("train_resume");
  write_file(dir + "/tiny.json",
             R"({"preset": "tiny", "patch": 4, "limit": 64, "batch_size": 8, "steps": 3,
    "minutes": 0, "sample_every": 0, "sample_steps": 2, "checkpoint_every": 0, "log_every": 1,
    // comments are allowed
    "warmup": 0})");
  const std::string out = dir + "/run";
  auto r = run_cli({"train", "--config", dir + "/tiny.json", "--out", out, "--set", "lr=1e-4"});
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* f : {"config.json", "loss.csv", "loss.png", "samples_final.png", "model.pt",
                        "checkpoints/ckpt_00000003.pt"})
    EXPECT_TRUE(fs::exists(out + "/" + f)) << f << "\n" << r.err;
  EXPECT_EQ(loss_steps(out + "/loss.csv"), (std::vector<int64_t>{1, 2, 3}));
  // The saved config is the resolved one: file values, the --set override and defaults.
  const nlohmann::json saved = nlohmann::json::parse(read_text_file(out + "/config.json"));
  EXPECT_EQ(saved.at("batch_size"), 8);
  EXPECT_DOUBLE_EQ(saved.at("lr").get<double>(), 1e-4);
  EXPECT_EQ(saved.at("objective"), "denoising");
  EXPECT_EQ(saved.at("steps"), 3);

  // The model file: EMA weights + the card (prediction type of the objective, class names).
  const diffuse::LoadedModel m = diffuse::load_model(out + "/model.pt");
  EXPECT_EQ(m.card.architecture, "DiT");
  EXPECT_EQ(m.card.prediction_type, "epsilon");
  EXPECT_EQ(m.card.num_classes, 10);
  ASSERT_EQ(m.card.class_names.size(), 10u);
  EXPECT_EQ(m.card.class_names[0], "T-shirt/top");
  EXPECT_EQ(m.card.class_names[9], "Ankle boot");
  EXPECT_EQ(m.card.sample_shape, (std::vector<int64_t>{1, 28, 28}));
  EXPECT_EQ(m.card.schedule.rfind("discrete", 0), 0u) << m.card.schedule;
  const std::string model_bytes = read_text_file(out + "/model.pt");

  // Same folder again, no --config: the saved config, 2 more steps (CLI option wins).
  r = run_cli({"train", "--out", out, "--steps", "5"}, "", 300, {"DIFFUSE_PROGRESS_INTERVAL=0"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("resumed from"), std::string::npos) << r.err;
  // stderr is not a terminal: plain progress lines (here one per step) instead of a bar.
  EXPECT_NE(r.err.find("info: train: 4/5 steps (80%), loss "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("info: train: 5/5 steps (100%), loss "), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find('\r'), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("ckpt_00000003.pt at step 3"), std::string::npos) << r.err;
  EXPECT_EQ(loss_steps(out + "/loss.csv"), (std::vector<int64_t>{1, 2, 3, 4, 5}));
  EXPECT_TRUE(fs::exists(out + "/checkpoints/ckpt_00000005.pt"));
  EXPECT_EQ(nlohmann::json::parse(read_text_file(out + "/config.json")).at("steps"), 5);
  EXPECT_NE(read_text_file(out + "/model.pt"), model_bytes)
      << "model.pt not rewritten after 2 more steps";
  EXPECT_NE(diffuse::load_model(out + "/model.pt").card.description.find("5 steps"),
            std::string::npos);

  // An incompatible config for the same folder is refused with the trainer's reasons (a
  // configuration error, exit 2), and the saved config is left alone.
  r = run_cli({"train", "--out", out, "--set", "objective=ddpm_ip", "--steps", "6"});
  expect_clean_error(r, {"cannot resume", "objective", "input_perturbation=0.1"}, 2);
  EXPECT_EQ(nlohmann::json::parse(read_text_file(out + "/config.json")).at("objective"),
            "denoising");
  EXPECT_FALSE(fs::exists(out + "/checkpoints/ckpt_00000006.pt"));
}

/// Every tensor of the "model" and "ema" archives of a trainer checkpoint, by dotted name.
void collect_tensors(torch::serialize::InputArchive& ar, const std::string& prefix,
                     std::map<std::string, at::Tensor>& out) {
  for (const std::string& key : ar.keys()) {
    at::Tensor t;
    torch::serialize::InputArchive sub;
    if (ar.try_read(key, t)) {
      out[prefix + key] = t;
    } else if (ar.try_read(key, sub)) {
      collect_tensors(sub, prefix + key + ".", out);
    }
  }
}
std::map<std::string, at::Tensor> model_and_ema(const std::string& checkpoint) {
  torch::serialize::InputArchive ar;
  ar.load_from(checkpoint);
  std::map<std::string, at::Tensor> out;
  for (const char* part : {"model", "ema"}) {
    torch::serialize::InputArchive sub;
    ar.read(part, sub);
    collect_tensors(sub, std::string(part) + ".", out);
  }
  return out;
}

// `diffuse train` killed with SIGKILL (DIFFUSE_FAULT_INJECT, training/fault_injection.h) inside a
// checkpoint write and after a step, then run again on the same folder: it resumes and ends with
// the uninterrupted run's weights, loss curve and model file. tests/training/faults_test.cpp
// covers more kill points on the Trainer itself.
TEST(CliTrain, KilledRunResumesToTheUninterruptedResult) {
  const std::string dir = cli_test_dir("train_kill");
  write_file(dir + "/tiny.json",
             R"({"preset": "tiny", "patch": 7, "limit": 32, "batch_size": 4, "steps": 4,
    "minutes": 0, "sample_every": 0, "sample_steps": 1, "checkpoint_every": 1, "log_every": 1, "warmup": 0})");
  auto r = run_cli({"train", "--config", dir + "/tiny.json", "--out", dir + "/ref"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto want = model_and_ema(dir + "/ref/checkpoints/ckpt_00000004.pt");
  ASSERT_GT(want.size(), 10u);
  for (const std::string fault : {"before_rename:3:ckpt_", "after_step:2"}) {
    const std::string out = dir + "/killed_" + fault.substr(0, fault.find(':'));
    r = run_cli({"train", "--config", dir + "/tiny.json", "--out", out}, "", 300,
                {"DIFFUSE_FAULT_INJECT=" + fault});
    ASSERT_EQ(r.code, 128 + SIGKILL) << fault << "\n" << r.err;
    r = run_cli({"train", "--out", out});
    ASSERT_EQ(r.code, 0) << fault << "\n" << r.err;
    EXPECT_NE(r.err.find("resumed from"), std::string::npos) << fault << "\n" << r.err;
    const auto got = model_and_ema(out + "/checkpoints/ckpt_00000004.pt");
    ASSERT_EQ(got.size(), want.size()) << fault;
    for (const auto& [name, t] : want) {
      ASSERT_EQ(got.count(name), 1u) << fault << ": " << name;
      EXPECT_TRUE(at::equal(got.at(name), t)) << fault << ": " << name;
    }
    EXPECT_EQ(read_text_file(out + "/loss.csv"), read_text_file(dir + "/ref/loss.csv")) << fault;
    EXPECT_TRUE(read_text_file(out + "/model.pt") == read_text_file(dir + "/ref/model.pt"))
        << fault;
    for (const auto& e : fs::recursive_directory_iterator(out))
      EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
  }
}

// Ctrl-C (SIGINT) and SIGTERM during `diffuse train`: the step in progress is finished and
// checkpointed (one log line names the checkpoint and the step), the exit status is 128 + signal,
// and the same command resumes from that step. (A second signal exiting at once is tested on the
// handler itself, deterministically: tests/training/faults_test.cpp, StopSignal.)
// Latent training: `diffuse encode` (Fashion-MNIST through a small random VAE, tests/reference/
// latent_models.py) killed after its first shard resumes to the same shards; a latent DiT run
// killed after step 2 resumes to the uninterrupted run's checkpoint and model file, bit for bit;
// the model's card names the VAE and does not clip; the final grid is decoded RGB.
TEST(CliTrain, LatentRunEncodesTrainsAndResumesBitExactly) {
  const std::string dir = cli_test_dir("train_latent");
  const std::string vae = diffuse::testing::fixture_path("latent/vae_tiny");
  const std::vector<std::string> encode = {
      "encode", "--vae",        vae,  "--fashion-mnist", "--limit",
      "40",     "--shard-size", "16", "--batch-size",    "5"};
  auto with_out = [](std::vector<std::string> args, const std::string& out) {
    args.push_back("--out");
    args.push_back(out);
    return args;
  };
  auto r = run_cli(with_out(encode, dir + "/lat"));
  ASSERT_EQ(r.code, 0) << r.err;
  r = run_cli(with_out(encode, dir + "/lat_killed"), "", 300,
              {"DIFFUSE_FAULT_INJECT=before_rename:2:shard_"});
  ASSERT_EQ(r.code, 128 + SIGKILL) << r.err;
  EXPECT_TRUE(fs::exists(dir + "/lat_killed/shard_000000.safetensors"));
  EXPECT_FALSE(fs::exists(dir + "/lat_killed/shard_000001.safetensors"));
  r = run_cli(with_out(encode, dir + "/lat_killed"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("1 kept from an earlier run"), std::string::npos) << r.err;
  for (const char* shard : {"shard_000000", "shard_000001", "shard_000002"})
    EXPECT_TRUE(read_text_file(dir + "/lat/" + shard + ".safetensors") ==
                read_text_file(dir + "/lat_killed/" + shard + ".safetensors"))
        << shard;
  // Other settings into the same folder: refused, nothing overwritten.
  auto other = with_out(encode, dir + "/lat");
  other.push_back("--mode");
  r = run_cli(other);
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("shard_000000.safetensors: an existing shard made with other settings "
                       "(metadata 'posterior'"),
            std::string::npos)
      << r.err;

  write_file(dir + "/latent.json",
             R"({"latents": "LAT", "preset": "tiny", "patch": 2, "batch_size": 4, "steps": 4,
    "minutes": 0, "sample_every": 0, "sample_steps": 2, "checkpoint_every": 1, "log_every": 1,
    "warmup": 0})");
  std::string cfg = read_text_file(dir + "/latent.json");
  cfg.replace(cfg.find("LAT"), 3, dir + "/lat");
  write_file(dir + "/latent.json", cfg);
  r = run_cli({"train", "--config", dir + "/latent.json", "--out", dir + "/ref"});
  ASSERT_EQ(r.code, 0) << r.err;
  r = run_cli({"train", "--config", dir + "/latent.json", "--out", dir + "/killed"}, "", 300,
              {"DIFFUSE_FAULT_INJECT=after_step:2"});
  ASSERT_EQ(r.code, 128 + SIGKILL) << r.err;
  r = run_cli({"train", "--out", dir + "/killed"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("resumed from"), std::string::npos) << r.err;
  const auto want = model_and_ema(dir + "/ref/checkpoints/ckpt_00000004.pt");
  const auto got = model_and_ema(dir + "/killed/checkpoints/ckpt_00000004.pt");
  ASSERT_EQ(got.size(), want.size());
  for (const auto& [name, t] : want) EXPECT_TRUE(at::equal(got.at(name), t)) << name;
  for (const char* f : {"model.pt", "loss.csv", "samples_final.png"})
    EXPECT_TRUE(read_text_file(dir + "/killed/" + f) == read_text_file(dir + "/ref/" + f)) << f;
  const diffuse::LoadedModel m = diffuse::load_model(dir + "/ref/model.pt");
  EXPECT_EQ(m.card.vae, vae);
  EXPECT_FALSE(m.card.clip_sample);
  EXPECT_EQ(m.card.sample_shape, (std::vector<int64_t>{4, 8, 8}));  // 32 x 32 through a x4 VAE
  ASSERT_EQ(m.card.class_names.size(), 10u);
  // The final grid: 100 decoded RGB images of 32 x 32 in rows of 10 (padding 2).
  const at::Tensor grid = diffuse::read_image(dir + "/ref/samples_final.png", 3);
  EXPECT_EQ(grid.sizes(), (std::vector<int64_t>{3, 10 * 34 + 2, 10 * 34 + 2}));
}

TEST(CliTrain, SignalCheckpointsTheStepAndExitsWith128PlusSignal) {
  for (const int sig : {SIGINT, SIGTERM}) {
    const std::string name = sig == SIGINT ? "SIGINT" : "SIGTERM";
    const std::string dir = cli_test_dir("train_signal_" + name);
    const std::string out = dir + "/run";
    auto p = start_cli({"train",   "--out",          out,   "--preset",
                        "tiny",    "--patch",        "7",   "--steps",
                        "100000",  "--limit",        "256", "--batch-size",
                        "8",       "--sample-every", "0",   "--checkpoint-every",
                        "1000000", "--log-every",    "1",   "--minutes",
                        "0",       "--warmup",       "0"});
    // Until a few steps are logged (the handler is installed before the first step).
    const auto rows_logged = [&]() -> size_t {
      try {
        return fs::exists(out + "/loss.csv") ? loss_steps(out + "/loss.csv").size() : 0;
      } catch (const std::exception&) {  // a row being appended
        return 0;
      }
    };
    const auto t0 = std::chrono::steady_clock::now();
    while (rows_logged() < 3) {
      ASSERT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(240)) << p.err_so_far();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ASSERT_EQ(::kill(p.pid, sig), 0);
    auto r = wait_cli(p, 240);
    ASSERT_FALSE(r.timed_out) << r.err;
    EXPECT_EQ(r.code, 128 + sig) << r.err;
    EXPECT_NE(r.err.find("diffuse train: " + name + " received, stopping after the current step"),
              std::string::npos)
        << r.err;
    std::smatch m;
    ASSERT_TRUE(std::regex_search(
        r.err, m,
        std::regex("interrupted by " + name + ": checkpoint (\\S+) written at step (\\d+)")))
        << r.err;
    const int64_t step = std::stoll(m[2].str());
    char ckpt[32];
    std::snprintf(ckpt, sizeof(ckpt), "ckpt_%08lld.pt", static_cast<long long>(step));
    EXPECT_EQ(m[1].str(), out + "/checkpoints/" + ckpt) << r.err;
    EXPECT_TRUE(fs::exists(out + "/checkpoints/" + ckpt)) << r.err;
    EXPECT_GE(step, 3);
    EXPECT_EQ(loss_steps(out + "/loss.csv").back(), step);
    EXPECT_FALSE(fs::exists(out + "/model.pt"));  // stopped: no final samples or model file

    // The same folder continues from that step.
    r = run_cli({"train", "--out", out, "--steps", std::to_string(step + 2)});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.err.find(std::string(ckpt) + " at step " + std::to_string(step)), std::string::npos)
        << r.err;
    std::vector<int64_t> want;
    for (int64_t i = 1; i <= step + 2; ++i) want.push_back(i);
    EXPECT_EQ(loss_steps(out + "/loss.csv"), want);
  }
}

// A damaged newest checkpoint: the run resumes from the newest intact one, with a warning naming
// the skipped file; it is kept as <name>.corrupt. All damaged: a clear error with a relevant hint.
TEST(CliTrain, CorruptNewestCheckpointFallsBackWithAWarning) {
  const std::string dir = cli_test_dir("train_corrupt");
  write_file(dir + "/tiny.json",
             R"({"preset": "tiny", "patch": 7, "limit": 32, "batch_size": 4, "steps": 4,
    "minutes": 0, "sample_every": 0, "sample_steps": 1, "checkpoint_every": 2, "log_every": 1, "warmup": 0})");
  const std::string out = dir + "/run";
  auto r = run_cli({"train", "--config", dir + "/tiny.json", "--out", out});
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string c2 = out + "/checkpoints/ckpt_00000002.pt",
                    c4 = out + "/checkpoints/ckpt_00000004.pt";
  const std::string bytes = read_text_file(c4);
  write_file(c4, bytes.substr(0, bytes.size() / 3));  // truncated
  r = run_cli({"train", "--out", out, "--steps", "6"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("warning: skipped checkpoint " + c4 + ": cannot read checkpoint"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("kept as " + c4 + ".corrupt"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("resumed from " + c2 + " at step 2"), std::string::npos) << r.err;
  EXPECT_EQ(loss_steps(out + "/loss.csv"), (std::vector<int64_t>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(read_text_file(c4 + ".corrupt"), bytes.substr(0, bytes.size() / 3));
  EXPECT_TRUE(fs::exists(c4));  // written again by the resumed run
  EXPECT_TRUE(fs::exists(out + "/checkpoints/ckpt_00000006.pt"));

  // Every checkpoint damaged: exit 3 (an I/O error), the files named, the hint to move them,
  // nothing renamed.
  for (const auto& e : fs::directory_iterator(out + "/checkpoints"))
    if (e.path().extension() == ".pt") write_file(e.path().string(), "garbage");
  r = run_cli({"train", "--out", out, "--steps", "8"});
  expect_clean_error(
      r,
      {"cannot resume the run", c4, "ckpt_00000006.pt", "remove or move the corrupt checkpoint(s)"},
      3);
  EXPECT_EQ(r.err.find("use the run's own config.json"), std::string::npos) << r.err;
  EXPECT_TRUE(fs::exists(out + "/checkpoints/ckpt_00000006.pt"));
}

// loss.png exists from the first loss.csv row on (README and docs/cli.md list it in every run
// folder), even for a one-step run.
TEST(CliTrain, LossPlotExistsFromTheFirstRow) {
  const std::string dir = cli_test_dir("train_one_step");
  const auto r =
      run_cli({"train", "--out",          dir + "/run", "--preset",       "tiny", "--patch",
               "7",     "--steps",        "1",          "--limit",        "8",    "--batch-size",
               "4",     "--sample-every", "0",          "--sample-steps", "1",    "--log-every",
               "1",     "--minutes",      "0",          "--warmup",       "0"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(loss_steps(dir + "/run/loss.csv"), (std::vector<int64_t>{1}));
  EXPECT_TRUE(fs::exists(dir + "/run/loss.png"));
  EXPECT_EQ(read_text_file(dir + "/run/loss.png").substr(1, 3), "PNG");
}

// Values the trainer would refuse are refused while reading the config (exit 2, before
// --print-config prints), naming the value as it was written.
TEST(CliTrain, BadValuesAreRefusedBeforePrintConfig) {
  const std::string dir = cli_test_dir("train_bad_values");
  const std::string out = dir + "/r";
  for (const auto& [args, needles] :
       std::vector<std::pair<std::vector<std::string>, std::vector<std::string>>>{
           {{"--set", "lr=nan"}, {"config key 'lr' = nan must be a finite number > 0"}},
           {{"--lr", "NaN"}, {"config key 'lr' = NaN must be a finite number > 0"}},
           {{"--lr", "inf"}, {"config key 'lr' = inf must be"}},
           {{"--set", "lr=-inf"}, {"config key 'lr' = -inf must be"}},
           {{"--lr", "0"}, {"--lr", "config key 'lr' = 0 must be a finite number > 0"}},
           {{"--set", "ema_decay=1.5"},
            {"config key 'ema_decay' = 1.5 must be a finite number in [0, 1]"}},
           {{"--set", "cfg_scale=inf"}, {"config key 'cfg_scale' = inf must be a finite number"}},
           {{"--patch", "5"}, {"'patch' = 5 does not divide the image size 28"}},
           {{"--preset", "huge"}, {"config key 'preset'", "huge"}},
           {{"--set", "autocast=fp32"},
            {"config key 'autocast' must be off, bf16 or fp16, got 'fp32'"}},
           {{"--set", "objective=no_such_objective"},
            {"config key 'objective'", "no_such_objective"}},
           {{"--set", "sampler=no_such_sampler"}, {"config key 'sampler'", "no_such_sampler"}},
           {{"--device", "tpu"}, {"unknown device 'tpu'"}},
       }) {
    std::vector<std::string> cmd = {"train", "--out", out, "--print-config"};
    cmd.insert(cmd.end(), args.begin(), args.end());
    const auto r = run_cli(cmd);
    expect_clean_error(r, needles, 2);
    EXPECT_TRUE(r.out.empty()) << args[0] << ": printed " << r.out;
  }
  EXPECT_FALSE(fs::exists(out));
}

TEST(CliTrain, DuplicateKeysInAConfigFileAreRefused) {
  const std::string dir = cli_test_dir("train_duplicate");
  write_file(dir + "/dup.json", R"({"lr": 0.001, "batch_size": 16,
    "lr": 0.002})");
  expect_clean_error(
      run_cli({"train", "--config", dir + "/dup.json", "--out", dir + "/r", "--print-config"}),
      {"dup.json", "duplicate key 'lr'"}, 2);
  // The same key in different objects is not a duplicate (only the top-level object is a config;
  // a nested one is a type error of its key).
  write_file(dir + "/nested.json", R"({"lr": 0.001, "objective": {"lr": 1}})");
  expect_clean_error(
      run_cli({"train", "--config", dir + "/nested.json", "--out", dir + "/r", "--print-config"}),
      {"'objective' must be a string"}, 2);
}

TEST(CliTrain, HelpOfTrainEvalAysShowsExamples) {
  for (const char* cmd : {"train", "eval", "ays"}) {
    const auto r = run_cli({cmd, "--help"});
    EXPECT_EQ(r.code, 0) << cmd << ": " << r.err;
    EXPECT_NE(r.out.find("Examples:"), std::string::npos) << cmd << ":\n" << r.out;
    EXPECT_NE(r.out.find(std::string("diffuse ") + cmd + " --"), std::string::npos) << cmd << ":\n"
                                                                                    << r.out;
  }
  // train documents every config key.
  const auto r = run_cli({"train", "--help"});
  for (const char* key :
       {"objective", "batch_size", "ema_decay", "checkpoint_every", "data_dir", "eval"})
    EXPECT_NE(r.out.find(std::string("\n  ") + key + " "), std::string::npos) << key;
}

TEST(CliTrain, PrintConfigShowsPrecedence) {
  const std::string dir = cli_test_dir("train_print");
  write_file(dir + "/c.json", R"({"lr": 0.001, "batch_size": 16, "preset": "tiny"})");
  const auto r = run_cli({"train", "--config", dir + "/c.json", "--set", "batch_size=32", "--lr",
                          "0.002", "--out", dir + "/run", "--print-config"});
  ASSERT_EQ(r.code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.at("batch_size"), 32);                  // --set over the file
  EXPECT_DOUBLE_EQ(j.at("lr").get<double>(), 0.002);  // the option over the file
  EXPECT_EQ(j.at("preset"), "tiny");
  EXPECT_EQ(j.at("ema_decay"), 0.9999);  // a default
  EXPECT_FALSE(fs::exists(dir + "/run"));
}

TEST(CliTrain, BadConfigsAreOneLineErrors) {
  const std::string dir = cli_test_dir("train_bad");
  write_file(dir + "/unknown.json", R"({"objective": "denoising", "learning_rate": 0.1})");
  expect_clean_error(run_cli({"train", "--config", dir + "/unknown.json", "--out", dir + "/r"}),
                     {"unknown config key 'learning_rate'", "unknown.json"}, 2);
  expect_clean_error(run_cli({"train", "--out", dir + "/r", "--set", "colour=red"}), {"'colour'"},
                     2);
  expect_clean_error(run_cli({"train", "--out", dir + "/r", "--set", "steps=-3"}), {"steps", "-3"},
                     2);
  expect_clean_error(run_cli({"train", "--out", dir + "/r", "--steps", "-3"}), {"steps", "-3"}, 2);
  expect_clean_error(run_cli({"train", "--out", dir + "/r", "--set", "lr=fast"}), {"lr", "fast"},
                     2);
  expect_clean_error(run_cli({"train", "--config", dir + "/missing.json", "--out", dir + "/r"}),
                     {"missing.json", "does not exist"}, 2);
  write_file(dir + "/broken.json", "{\"steps\": 3,");
  expect_clean_error(run_cli({"train", "--config", dir + "/broken.json", "--out", dir + "/r"}),
                     {"broken.json", "not valid JSON"}, 2);
  write_file(dir + "/typed.json", R"({"steps": "many"})");
  expect_clean_error(run_cli({"train", "--config", dir + "/typed.json", "--out", dir + "/r"}),
                     {"'steps'", "integer"}, 2);
  expect_clean_error(run_cli({"train", "--out", dir + "/r", "--set", "objective=no_such_objective",
                              "--limit", "8"}),
                     {"objective", "no_such_objective"}, 2);
  EXPECT_FALSE(fs::exists(dir + "/r/config.json"));
}

}  // namespace
