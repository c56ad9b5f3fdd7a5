// SPDX-License-Identifier: Apache-2.0
// Checkpoint files (declared in <diffuse/training/checkpoint.h>).
#include <diffuse/training/checkpoint.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <signal.h>
#include <unistd.h>

#include <ATen/ATen.h>
#include <ATen/core/Generator.h>
#include <torch/serialize/input-archive.h>

#include <diffuse/config.h>

namespace diffuse {

/// "ckpt_00001234.pt" for step 1234 (eight digits, wider when needed; sorts by step).
std::string checkpoint_filename(int64_t step) {
  check(step >= 0, "checkpoint step must be >= 0, got ", step);
  char buf[48];
  std::snprintf(buf, sizeof(buf), "ckpt_%08lld.pt", static_cast<long long>(step));
  return buf;
}

/// The step encoded in a checkpoint file name, or nullopt if the name is not "ckpt_<digits>.pt".
std::optional<int64_t> parse_checkpoint_filename(const std::string& name) {
  const std::string pre = "ckpt_", post = ".pt";
  if (name.size() <= pre.size() + post.size()) return std::nullopt;
  if (name.compare(0, pre.size(), pre) != 0) return std::nullopt;
  if (name.compare(name.size() - post.size(), post.size(), post) != 0) return std::nullopt;
  const std::string digits = name.substr(pre.size(), name.size() - pre.size() - post.size());
  if (digits.empty() || digits.size() > 18) return std::nullopt;
  for (char c : digits)
    if (c < '0' || c > '9') return std::nullopt;
  return static_cast<int64_t>(std::stoll(digits));
}

/// All checkpoints in `dir` as (step, path), sorted by step. A missing directory gives none.
std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& dir) {
  namespace fs = std::filesystem;
  std::vector<std::pair<int64_t, std::string>> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (!entry.is_regular_file(ec)) continue;
    if (auto step = parse_checkpoint_filename(entry.path().filename().string())) {
      out.emplace_back(*step, entry.path().string());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

/// The path of the checkpoint with the highest step in `dir`, or nullopt if there is none.
std::optional<std::string> latest_checkpoint(const std::string& dir) {
  auto all = list_checkpoints(dir);
  if (all.empty()) return std::nullopt;
  return all.back().second;
}

/// Deletes all but the `keep` newest checkpoints in `dir` (keep = 0: delete nothing).
void prune_checkpoints(const std::string& dir, int64_t keep) {
  check(keep >= 0, "keep_checkpoints must be >= 0, got ", keep);
  if (keep == 0) return;
  auto all = list_checkpoints(dir);
  for (size_t i = 0; i + static_cast<size_t>(keep) < all.size(); ++i) {
    std::error_code ec;
    std::filesystem::remove(all[i].second, ec);
  }
}

/// Removes temporary files left in `dir` by writers of this process id or of processes that no
/// longer run (".<name>.<pid>.tmp" where <pid> is not alive). Returns how many were removed.
int64_t remove_stale_temporaries(const std::string& dir) {
  namespace fs = std::filesystem;
  int64_t removed = 0;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return 0;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.size() < 6 || name[0] != '.' || name.compare(name.size() - 4, 4, ".tmp") != 0)
      continue;
    const auto dot = name.rfind('.', name.size() - 5);
    if (dot == std::string::npos || dot == 0) continue;
    const std::string pid_text = name.substr(dot + 1, name.size() - 4 - dot - 1);
    if (pid_text.empty() || pid_text.find_first_not_of("0123456789") != std::string::npos) continue;
    const long pid = std::stol(pid_text);
    const bool alive =
        pid != ::getpid() && (::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM);
    if (!alive && fs::remove(entry.path(), ec)) ++removed;
  }
  return removed;
}

/// The full state of a generator as a uint8 tensor (a copy).
at::Tensor generator_state(at::Generator& gen) {
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state().clone();
}

/// Restores a state obtained from generator_state() on a generator of the same kind.
void set_generator_state(at::Generator& gen, const at::Tensor& state) {
  check(state.defined() && state.scalar_type() == at::kByte,
        "generator state must be a uint8 tensor");
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state);
}

int64_t checkpoint_step(const std::string& path) {
  torch::serialize::InputArchive ar;
  try {
    ar.load_from(path);
  } catch (const std::exception& e) {
    throw IOError(detail::cat("cannot read checkpoint '", path, "': ", e.what()));
  }
  c10::IValue v;
  check_io(ar.try_read("step", v) && v.isInt(), "'", path,
           "' is not a diffuse trainer checkpoint (no step)");
  return v.toInt();
}

}  // namespace diffuse
