// SPDX-License-Identifier: Apache-2.0
// Checkpoint files: atomic writes, naming, discovery of the latest one, pruning, and the state of
// at::Generator objects (get_state / set_state, available on CPUGeneratorImpl in LibTorch 1.13
// and 2.x).
//
// A checkpoint is written to a temporary file in the destination directory, flushed and fsync'ed,
// then renamed over the final name (rename(2) is atomic within one file system) and the directory
// is fsync'ed. A reader therefore sees either the previous complete file or the new complete one,
// never a partial file, even if the process is killed while writing. Temporary names start with
// '.' and end in ".tmp" and are ignored by latest_checkpoint().
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ATen/ATen.h>
#include <ATen/core/Generator.h>

#include <diffuse/config.h>

namespace diffuse {

namespace detail {

inline void write_all_or_throw(int fd, const char* data, size_t n, const std::string& path) {
  while (n > 0) {
    const ssize_t w = ::write(fd, data, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      throw Error(cat("cannot write '", path, "': ", std::strerror(errno)));
    }
    data += w;
    n -= static_cast<size_t>(w);
  }
}

inline void fsync_directory(const std::string& dir) {
  const int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;  // best effort: some file systems do not allow opening directories
  (void)::fsync(fd);
  ::close(fd);
}

}  // namespace detail

/// Writes the bytes produced by `writer` to `path` atomically: a temporary file ".<name>.<pid>.tmp"
/// in the same directory is written, flushed, fsync'ed and renamed over `path`. If `writer` throws
/// or any system call fails, the temporary file is removed, `path` is left as it was, and a
/// diffuse::Error naming `path` is thrown. The directory must exist.
inline void write_file_atomic(const std::string& path, const std::function<void(std::ostream&)>& writer) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  const fs::path tmp = dir / ("." + target.filename().string() + "." + std::to_string(::getpid()) + ".tmp");
  std::string bytes;
  try {
    std::ostringstream os(std::ios::out | std::ios::binary);
    writer(os);
    check(static_cast<bool>(os), "the serializer failed");
    bytes = os.str();
  } catch (const std::exception& e) {
    throw Error(detail::cat("cannot write '", path, "': ", e.what()));
  }
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(detail::cat("cannot write '", path, "': cannot create '", tmp.string(), "': ",
                                      std::strerror(errno)));
  try {
    detail::write_all_or_throw(fd, bytes.data(), bytes.size(), path);
    if (::fsync(fd) != 0) throw Error(detail::cat("cannot write '", path, "': fsync: ", std::strerror(errno)));
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (::close(fd) != 0) {
    ::unlink(tmp.c_str());
    throw Error(detail::cat("cannot write '", path, "': close: ", std::strerror(errno)));
  }
  if (::rename(tmp.c_str(), target.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw Error(detail::cat("cannot write '", path, "': rename: ", std::strerror(err)));
  }
  detail::fsync_directory(dir.string());
}

/// Replaces `path` atomically by `text`.
inline void write_text_file_atomic(const std::string& path, const std::string& text) {
  write_file_atomic(path, [&](std::ostream& os) { os << text; });
}

/// "ckpt_00001234.pt" for step 1234 (eight digits, wider when needed; sorts by step).
inline std::string checkpoint_filename(int64_t step) {
  check(step >= 0, "checkpoint step must be >= 0, got ", step);
  char buf[48];
  std::snprintf(buf, sizeof(buf), "ckpt_%08lld.pt", static_cast<long long>(step));
  return buf;
}

/// The step encoded in a checkpoint file name, or nullopt if the name is not "ckpt_<digits>.pt".
inline std::optional<int64_t> parse_checkpoint_filename(const std::string& name) {
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
inline std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& dir) {
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
inline std::optional<std::string> latest_checkpoint(const std::string& dir) {
  auto all = list_checkpoints(dir);
  if (all.empty()) return std::nullopt;
  return all.back().second;
}

/// Deletes all but the `keep` newest checkpoints in `dir` (keep = 0: delete nothing).
inline void prune_checkpoints(const std::string& dir, int64_t keep) {
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
inline int64_t remove_stale_temporaries(const std::string& dir) {
  namespace fs = std::filesystem;
  int64_t removed = 0;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return 0;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.size() < 6 || name[0] != '.' || name.compare(name.size() - 4, 4, ".tmp") != 0) continue;
    const auto dot = name.rfind('.', name.size() - 5);
    if (dot == std::string::npos || dot == 0) continue;
    const std::string pid_text = name.substr(dot + 1, name.size() - 4 - dot - 1);
    if (pid_text.empty() || pid_text.find_first_not_of("0123456789") != std::string::npos) continue;
    const long pid = std::stol(pid_text);
    const bool alive = pid != ::getpid() && (::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM);
    if (!alive && fs::remove(entry.path(), ec)) ++removed;
  }
  return removed;
}

/// The full state of a generator as a uint8 tensor (a copy).
inline at::Tensor generator_state(at::Generator& gen) {
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state().clone();
}

/// Restores a state obtained from generator_state() on a generator of the same kind.
inline void set_generator_state(at::Generator& gen, const at::Tensor& state) {
  check(state.defined() && state.scalar_type() == at::kByte, "generator state must be a uint8 tensor");
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state);
}

}  // namespace diffuse
