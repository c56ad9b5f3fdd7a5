// SPDX-License-Identifier: Apache-2.0
// Atomic file writes (declared in <diffuse/training/atomic_file.h>, which describes the protocol).
#include <diffuse/training/atomic_file.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <mutex>
#include <sstream>
#include <string>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <diffuse/config.h>
#include <diffuse/training/fault_injection.h>

namespace diffuse {

namespace {

void write_all_or_throw(int fd, const char* data, size_t n, const std::string& path) {
  while (n > 0) {
    const ssize_t w = ::write(fd, data, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      throw IOError(detail::cat("cannot write '", path, "': ", std::strerror(errno)));
    }
    data += w;
    n -= static_cast<size_t>(w);
  }
}

void fsync_directory(const std::string& dir) {
  const int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;  // best effort: some file systems do not allow opening directories
  (void)::fsync(fd);
  ::close(fd);
}

}  // namespace

void create_directories_or_throw(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw IOError(detail::cat("cannot create the folder '", dir, "': ", ec.message()));
}

void write_bytes_atomic(const std::string& path, const void* data, size_t n) {
  namespace fs = std::filesystem;
  check(!path.empty(), "cannot write a file with an empty path");
  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  const fs::path tmp =
      dir / ("." + target.filename().string() + "." + std::to_string(::getpid()) + ".tmp");
  // One writer per target at a time within this process (the temporary name is per process).
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  const char* bytes = static_cast<const char*>(data);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    throw IOError(detail::cat("cannot write '", path, "': cannot create '", tmp.string(),
                              "': ", std::strerror(errno)));
  try {
    fault_point("after_temp_create", path);
    write_all_or_throw(fd, bytes, n / 2, path);
    fault_point("mid_temp_write", path);
    write_all_or_throw(fd, bytes + n / 2, n - n / 2, path);
    if (::fsync(fd) != 0)
      throw IOError(detail::cat("cannot write '", path, "': fsync: ", std::strerror(errno)));
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (::close(fd) != 0) {
    ::unlink(tmp.c_str());
    throw IOError(detail::cat("cannot write '", path, "': close: ", std::strerror(errno)));
  }
  fault_point("before_rename", path);
  if (::rename(tmp.c_str(), target.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw IOError(detail::cat("cannot write '", path, "': rename: ", std::strerror(err)));
  }
  fault_point("after_rename", path);
  fsync_directory(dir.string());
}

void write_file_atomic(const std::string& path, const std::function<void(std::ostream&)>& writer) {
  std::string bytes;
  try {
    std::ostringstream os(std::ios::out | std::ios::binary);
    writer(os);
    check(static_cast<bool>(os), "the serializer failed");
    bytes = os.str();
  } catch (const std::exception& e) {
    throw IOError(detail::cat("cannot write '", path, "': ", e.what()));
  }
  write_bytes_atomic(path, bytes.data(), bytes.size());
}

void write_text_file_atomic(const std::string& path, const std::string& text) {
  write_file_atomic(path, [&](std::ostream& os) { os << text; });
}

}  // namespace diffuse
