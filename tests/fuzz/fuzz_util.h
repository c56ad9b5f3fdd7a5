// SPDX-License-Identifier: Apache-2.0
// Shared by the libFuzzer targets: the contract every parser is held to (a diffuse::Error or
// success; any other exception is a finding and aborts so that libFuzzer saves the input) and a
// per-process temporary file for the APIs that only take a path.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <string>
#include <typeinfo>

#include <unistd.h>

#include <diffuse/config.h>

namespace diffuse::fuzz {

/// Runs fn; returns true on success, false on a diffuse::Error; aborts (a libFuzzer crash) on any
/// other exception, printing its type and message.
template <class Fn>
bool clean(const char* what, Fn&& fn) {
  try {
    fn();
    return true;
  } catch (const diffuse::Error&) {
    return false;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "FINDING: %s threw %s (not diffuse::Error): %s\n", what, typeid(e).name(),
                 e.what());
    std::abort();
  } catch (...) {
    std::fprintf(stderr, "FINDING: %s threw a non-std exception\n", what);
    std::abort();
  }
}

/// A file name in $TMPDIR (default /tmp) unique to this process, ending in `suffix`.
inline std::string temp_path(const std::string& suffix) {
  const char* dir = std::getenv("TMPDIR");
  return std::string(dir && *dir ? dir : "/tmp") + "/diffuse_fuzz_" + std::to_string(::getpid()) +
         suffix;
}

/// Writes the bytes to `path` (truncating it).
inline void write_bytes(const std::string& path, const uint8_t* data, size_t size) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  if (!f) {
    std::fprintf(stderr, "fuzz harness: cannot write %s\n", path.c_str());
    std::abort();
  }
}

}  // namespace diffuse::fuzz
