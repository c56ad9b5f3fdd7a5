// SPDX-License-Identifier: Apache-2.0
// `diffuse sample` options a new user trips over: A1111 names that carry a schedule, corrections
// whose defaults would do nothing, values that are valid as numbers but not for the run (a guidance
// scale beyond the dtype, a negative seed), output names that promise another format, strict
// records and schedule files, the thread count and OpenMP waits, automatic batches and the grid's
// size.
#include "cli/cli_test_util.h"

#include <filesystem>
#include <fstream>

#include <sched.h>

#include <nlohmann/json.hpp>

#include <diffuse/training/data.h>
#include <diffuse/training/image.h>

namespace {

namespace fs = std::filesystem;
using diffuse::test::cli_test_dir;
using diffuse::test::expect_clean_error;
using diffuse::test::read_text_file;
using diffuse::test::run_cli;
using diffuse::test::with;
using diffuse::test::write_file;
using nlohmann::json;

const std::vector<std::string> kTinyOptions = {"--steps", "2", "-n", "4"};

json record_of(const std::string& png) {
  return json::parse(diffuse::read_png_text(png).at("diffuse"));
}

TEST(CliSampleOptions, A1111NameWithScheduleSelectsSamplerAndSpacing) {
  const std::string dir = cli_test_dir("sample_a1111_karras");
  auto r =
      run_cli(with({"sample", "--sampler", "DPM++ 2M Karras", "-o", "a.png"}, kTinyOptions), dir);
  ASSERT_EQ(r.code, 0) << r.err;
  const json rec = record_of(dir + "/a.png");
  EXPECT_EQ(rec["settings"]["sampler"], "DPM++ 2M");
  EXPECT_EQ(rec["settings"]["schedule"], "karras");
  EXPECT_EQ(rec["resolved"]["spacing"].get<std::string>().rfind("karras", 0), 0u)
      << rec["resolved"];
  // The same images as naming the two separately.
  ASSERT_EQ(run_cli(with({"sample", "--sampler", "DPM++ 2M", "--schedule", "karras", "-o", "b.png"},
                         kTinyOptions),
                    dir)
                .code,
            0);
  EXPECT_EQ(read_text_file(dir + "/a.png"), read_text_file(dir + "/b.png"));
  // And a different image from the sampler's default spacing.
  ASSERT_EQ(
      run_cli(with({"sample", "--sampler", "DPM++ 2M", "-o", "c.png"}, kTinyOptions), dir).code, 0);
  EXPECT_NE(read_text_file(dir + "/a.png"), read_text_file(dir + "/c.png"));
  // Exponential too; the record regenerates it.
  r = run_cli(
      with({"sample", "--sampler", "DPM++ 2M SDE Exponential", "-o", "d.png"}, kTinyOptions), dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(record_of(dir + "/d.png")["settings"]["schedule"], "exponential");
  ASSERT_EQ(run_cli({"sample", "--from-record", "d.png", "-o", "e.png"}, dir).code, 0);
  EXPECT_EQ(read_text_file(dir + "/d.png"), read_text_file(dir + "/e.png"));
  // A schedule that contradicts the name is refused, naming both.
  expect_clean_error(
      run_cli(
          with({"sample", "--sampler", "DPM++ 2M Karras", "--schedule", "trailing"}, kTinyOptions),
          dir),
      {"DPM++ 2M Karras", "karras", "trailing"}, 2);
  // The same spacing with options is not a contradiction.
  EXPECT_EQ(run_cli(with({"sample", "--sampler", "DPM++ 2M Karras", "--schedule", "karras:rho=5",
                          "-o", "f.png"},
                         kTinyOptions),
                    dir)
                .code,
            0);
}

TEST(CliSampleOptions, EveryDtypeOfTheHelpRuns) {
  // Every sampler x dtype x model format is tests/training/dtype_test.cpp, in process; here each
  // dtype goes once through `sample` (the three sampler families in turn, with CADS acting on the
  // condition embedding) and once through `ays`.
  const std::string dir = cli_test_dir("sample_dtypes");
  const std::vector<std::string> samplers = {"dpmpp_2m", "euler_a", "DPM++ 2M SDE Karras"};
  const std::vector<std::string> dtypes = {"float32", "float64", "float16", "bfloat16"};
  for (size_t i = 0; i < dtypes.size(); ++i) {
    const std::string& dtype = dtypes[i];
    const std::string& sampler = samplers[i % samplers.size()];
    const auto r = run_cli(
        with({"sample", "--dtype", dtype, "--sampler", sampler, "-c", "cads", "-o", "d.png"},
             kTinyOptions),
        dir);
    EXPECT_EQ(r.code, 0) << dtype << " " << sampler << " + cads: " << r.err;
    const auto ays =
        run_cli({"ays", "--dtype", dtype, "--steps", "3", "--sweeps", "1", "--search-iters", "3",
                 "--nodes", "2", "--limit", "8", "--out", "a.json"},
                dir);
    EXPECT_EQ(ays.code, 0) << dtype << " ays: " << ays.err;
  }
}

TEST(CliSampleOptions, CorrectionsWhoseDefaultsDoNothingAreRefused) {
  const std::string dir = cli_test_dir("sample_identity_corrections");
  expect_clean_error(run_cli(with({"sample", "-c", "time_shift"}, kTinyOptions), dir),
                     {"time_shift needs window", "time_shift_pndm"}, 2);
  expect_clean_error(run_cli(with({"sample", "-c", "epsilon_scaling"}, kTinyOptions), dir),
                     {"epsilon_scaling needs b", "es_comfyui"}, 2);
  // With the window (or a preset) they run and act.
  ASSERT_EQ(run_cli(with({"sample", "-o", "plain.png"}, kTinyOptions), dir).code, 0);
  ASSERT_EQ(
      run_cli(with({"sample", "-c", "time_shift_pndm", "-o", "ts.png"}, kTinyOptions), dir).code,
      0);
  ASSERT_EQ(
      run_cli(with({"sample", "-c", "epsilon_scaling:b=1.05", "-o", "es.png"}, kTinyOptions), dir)
          .code,
      0);
  EXPECT_NE(read_text_file(dir + "/plain.png"), read_text_file(dir + "/es.png"));
}

TEST(CliSampleOptions, ValuesCheckedForTheRun) {
  const std::string dir = cli_test_dir("sample_values");
  // A guidance scale that is +-inf in the run's dtype.
  expect_clean_error(run_cli(with({"sample", "--cfg", "1e308"}, kTinyOptions), dir),
                     {"--cfg", "1e+308", "float32"}, 2);
  expect_clean_error(
      run_cli(with({"sample", "--cfg", "1e5", "--dtype", "float16"}, kTinyOptions), dir),
      {"--cfg", "100000", "float16"}, 2);
  // A negative seed does not wrap around to 2^64 - 1.
  expect_clean_error(run_cli(with({"sample", "--seed", "-1"}, kTinyOptions), dir), {"--seed", "-1"},
                     2);
  const auto big =
      run_cli(with({"sample", "--seed", "18446744073709551615", "-o", "s.png"}, kTinyOptions), dir);
  EXPECT_EQ(big.code, 0) << big.err;
  // Outputs whose names promise another format.
  expect_clean_error(run_cli(with({"sample", "-o", "x.gif"}, kTinyOptions), dir),
                     {"x.gif", "png", "jpg"}, 2);
  // A JPEG grid (the record only in the .json next to it).
  const auto jpeg = run_cli(with({"sample", "-o", "grid.jpg"}, kTinyOptions), dir);
  ASSERT_EQ(jpeg.code, 0) << jpeg.err;
  const std::string bytes = read_text_file(dir + "/grid.jpg");
  ASSERT_GT(bytes.size(), 2u);
  EXPECT_EQ(static_cast<unsigned char>(bytes[0]), 0xFF);  // JPEG SOI marker
  EXPECT_EQ(static_cast<unsigned char>(bytes[1]), 0xD8);
  EXPECT_TRUE(fs::exists(dir + "/grid.json"));
  expect_clean_error(run_cli(with({"sample", "--save-tensor", "x.txt"}, kTinyOptions), dir),
                     {"x.txt", ".npy", ".pt"}, 2);
  expect_clean_error(run_cli(with({"sample", "--record", "r.txt"}, kTinyOptions), dir),
                     {"r.txt", "json"}, 2);
  EXPECT_FALSE(fs::exists(dir + "/x.gif"));
  // --threads beyond the CPUs is refused (it used to run hundreds of spinning threads).
  expect_clean_error(
      run_cli(with({"--threads", "100000", "sample"}, kTinyOptions), dir, 300, {}, false),
      {"--threads", "100000"}, 2);
  // --model-card on a file that has a card changes only the keys it names.
  const auto card = run_cli(
      with({"sample", "--model-card", "description=my reading", "-o", "card.png"}, kTinyOptions),
      dir);
  ASSERT_EQ(card.code, 0) << card.err;
  EXPECT_NE(
      record_of(dir + "/card.png")["resolved"]["model_card"].get<std::string>().find("my reading"),
      std::string::npos);
}

TEST(CliSampleOptions, RecordsAreStrictAndNameTheirFields) {
  const std::string dir = cli_test_dir("sample_strict_record");
  ASSERT_EQ(run_cli(with({"sample", "-o", "a.png"}, kTinyOptions), dir).code, 0);
  const json good = json::parse(read_text_file(dir + "/a.json"));
  // A bad value read from the record names the record and its field, not an option.
  json bad = good;
  bad["settings"]["steps"] = 0;
  write_file(dir + "/steps.json", bad.dump());
  expect_clean_error(run_cli({"sample", "--from-record", "steps.json", "-o", "b.png"}, dir),
                     {"record 'steps.json' field 'steps'", "got 0"}, 2);
  // Given explicitly, the option is named (and overrides the record).
  expect_clean_error(
      run_cli({"sample", "--from-record", "steps.json", "--steps", "0", "-o", "b.png"}, dir),
      {"--steps", "got 0"}, 2);
  // Unknown fields, wrong types and repeated keys are refused.
  bad = good;
  bad["settings"]["stpes"] = 3;
  write_file(dir + "/unknown.json", bad.dump());
  expect_clean_error(run_cli({"sample", "--from-record", "unknown.json"}, dir),
                     {"unknown field 'stpes'"}, 2);
  bad = good;
  bad["settings"]["seed"] = -1;
  write_file(dir + "/seed.json", bad.dump());
  expect_clean_error(run_cli({"sample", "--from-record", "seed.json"}, dir), {"field 'seed'", "-1"},
                     2);
  std::string dup = good.dump();
  dup.insert(dup.rfind('}'), ",\"extra\":1,\"extra\":2");
  write_file(dir + "/dup.json", dup);
  expect_clean_error(run_cli({"sample", "--from-record", "dup.json"}, dir),
                     {"duplicate key 'extra'"}, 2);
}

TEST(CliSampleOptions, ScheduleFilesAreChecked) {
  const std::string dir = cli_test_dir("sample_schedule_file_checks");
  ASSERT_EQ(run_cli(with({"sample", "-o", "grid.png"}, kTinyOptions), dir).code, 0);
  // A PNG given as a schedule file: one printable line, no raw bytes echoed.
  const auto r = run_cli(with({"sample", "--schedule", "file:grid.png"}, kTinyOptions), dir);
  expect_clean_error(r, {"grid.png", "not a JSON schedule"}, 3);  // a file of the wrong format: I/O
  for (const char ch : r.err)
    EXPECT_TRUE(ch == '\n' || (ch >= 0x20 && ch < 0x7f)) << static_cast<int>(ch);
  // A steps field that disagrees with the list.
  write_file(
      dir + "/s.json",
      R"({"format": "diffuse-schedule", "version": 1, "noise_schedule": "discrete", "timesteps": [999, 500],)"
      R"( "final": "zero", "steps": 3})");
  expect_clean_error(run_cli({"sample", "--schedule", "file:s.json", "-n", "2"}, dir),
                     {"s.json", "steps = 3", "2"}, 3);
}

TEST(CliSampleOptions, FromRecordReusesTheThreadCount) {
  cpu_set_t set;
  CPU_ZERO(&set);
  ASSERT_EQ(::sched_getaffinity(0, sizeof(set), &set), 0);
  if (CPU_COUNT(&set) < 2) GTEST_SKIP() << "needs 2 CPUs (--threads 2)";
  const std::string dir = cli_test_dir("sample_threads_record");
  const auto r = run_cli(with({"--threads", "2", "sample", "-o", "two.png"}, kTinyOptions), dir,
                         300, {}, false);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(record_of(dir + "/two.png")["settings"]["threads"], 2);
  // No --threads: the record's 2 threads, the same bytes.
  ASSERT_EQ(
      run_cli({"sample", "--from-record", "two.png", "-o", "again.png"}, dir, 300, {}, false).code,
      0);
  EXPECT_EQ(read_text_file(dir + "/two.png"), read_text_file(dir + "/again.png"));
  EXPECT_EQ(record_of(dir + "/again.png")["settings"]["threads"], 2);
  // --threads overrides the record, and the new record says so.
  ASSERT_EQ(run_cli({"sample", "--from-record", "two.png", "-o", "one.png"}, dir).code, 0);
  EXPECT_EQ(record_of(dir + "/one.png")["settings"]["threads"], 1);
}

// The launcher's OpenMP waits: passive after a short spin (GOMP_SPINCOUNT=1000) when the
// environment names no policy; a policy or spin count of the environment is kept as it is. The
// tool logs both at -v with the thread count.
TEST(CliSampleOptions, LauncherSetsAShortSpinUnlessTheEnvironmentChose) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr || std::getenv("GOMP_SPINCOUNT") != nullptr)
    GTEST_SKIP() << "this test's own environment sets the OpenMP wait";
  const std::string dir = cli_test_dir("sample_wait_policy");
  const auto logged = [&](const std::vector<std::string>& env) {
    auto r = run_cli(with({"-v", "sample", "-o", "w.png"}, kTinyOptions), dir, 300, env);
    EXPECT_EQ(r.code, 0) << r.err;
    const auto at = r.err.find("1 intra-op thread(s) (");
    if (at == std::string::npos) return r.err;
    return r.err.substr(at, r.err.find('\n', at) - at);
  };
  const std::string plain = logged({});
  EXPECT_NE(plain.find("OMP_WAIT_POLICY=PASSIVE, GOMP_SPINCOUNT=1000)"), std::string::npos)
      << plain;
  const std::string active = logged({"OMP_WAIT_POLICY=ACTIVE"});
  EXPECT_NE(active.find("OMP_WAIT_POLICY=ACTIVE, GOMP_SPINCOUNT=unset)"), std::string::npos)
      << active;
  const std::string none = logged({"GOMP_SPINCOUNT=0"});
  EXPECT_NE(none.find("OMP_WAIT_POLICY=PASSIVE, GOMP_SPINCOUNT=0)"), std::string::npos) << none;
}

TEST(CliSampleOptions, AutomaticBatchesFollowTheMemoryBudgetAndTheGridIsBounded) {
  const std::string dir = cli_test_dir("sample_auto_batch");
  // A 1 MiB budget: a handful of guided images per batch, recorded; the same first images as a
  // run that fits in one batch.
  auto r = run_cli({"sample", "-n", "24", "--steps", "2", "--batch-memory", "1", "-o", "small.png",
                    "--save-tensor", "small.npy"},
                   dir);
  ASSERT_EQ(r.code, 0) << r.err;
  const int64_t batch = record_of(dir + "/small.png")["settings"]["batch_size"].get<int64_t>();
  EXPECT_GE(batch, 1);
  EXPECT_LT(batch, 24);
  EXPECT_NE(r.err.find("in batches of " + std::to_string(batch)), std::string::npos) << r.err;
  r = run_cli({"sample", "-n", "24", "--steps", "2", "-o", "big.png"}, dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(record_of(dir + "/big.png")["settings"]["batch_size"], 24);
  expect_clean_error(run_cli({"sample", "--batch-memory", "0"}, dir), {"--batch-memory", "0"}, 2);
  // More images than the grid shows: a warning, a grid of 1024, every image in the tensor file.
  r = run_cli({"sample", "-n", "1030", "--steps", "1", "--cfg", "1", "-o", "many.png",
               "--save-tensor", "many.pt"},
              dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("the grid shows the first 1024 of the 1030 images"), std::string::npos)
      << r.err;
  const at::Tensor grid = diffuse::read_image(dir + "/many.png", 1);
  EXPECT_EQ(grid.size(-1), 10 * 30 + 2);   // 10 per row (the classes)
  EXPECT_EQ(grid.size(-2), 103 * 30 + 2);  // ceil(1024 / 10) rows
  EXPECT_GT(fs::file_size(dir + "/many.pt"), 1030u * 28 * 28 * 4);
  // The log describes the grid as written.
  r = run_cli({"sample", "-n", "4", "--steps", "1", "-o", "four.png"}, dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("(4 images in 1 row of 4)"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("model model"), std::string::npos) << r.err;
}

}  // namespace
