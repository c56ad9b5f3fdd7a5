// SPDX-License-Identifier: Apache-2.0
// A scratch directory for one test, removed with everything in it at the end of the scope.
#pragma once

#include <cstddef>
#include <filesystem>
#include <iterator>
#include <string>
#include <system_error>

#include <unistd.h>

namespace diffuse::test {

struct TempDir {
  std::filesystem::path path;
  /// <tmp>/diffuse_test_<tag>_<pid>, emptied first.
  explicit TempDir(const std::string& tag) {
    path = std::filesystem::temp_directory_path() /
           ("diffuse_test_" + tag + "_" + std::to_string(::getpid()));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string operator/(const std::string& name) const { return (path / name).string(); }
  /// Entries directly in the directory (e.g. to check that no temporary file was left).
  size_t count() const {
    return static_cast<size_t>(std::distance(std::filesystem::directory_iterator(path),
                                             std::filesystem::directory_iterator()));
  }
};

}  // namespace diffuse::test
