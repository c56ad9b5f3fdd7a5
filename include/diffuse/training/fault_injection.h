// SPDX-License-Identifier: Apache-2.0
// Fault injection for crash tests: named points in the atomic file writer and the training loop at
// which the process can be made to kill itself with SIGKILL, deterministically.
//
// Enabled by the environment variable DIFFUSE_FAULT_INJECT (read once, at the first point reached)
// or by set_fault_injection(); off by default. The spec is
//     <point>[:<n>[:<substring>]]
// and kills the process (raise(SIGKILL): no destructors, no flushing, like kill -9) the n-th time
// (1-based, default 1) the point is reached with a subject (a file path, or "" in the trainer)
// that contains <substring> (default: any). Points:
//   atomic_file.h (subject: the target path)
//     after_temp_create   the temporary file exists and is empty
//     mid_temp_write      half of the bytes are in the temporary file
//     before_rename       the temporary file is complete, fsync'ed and closed; not yet renamed
//     after_rename        renamed over the target; the directory not yet fsync'ed
//   trainer.h (subject: "")
//     after_step          an optimiser step is done; nothing of it logged or saved yet
//     mid_log_append      half of a loss.csv row is written and flushed (subject: loss.csv path)
//     after_checkpoint    a checkpoint is written; older ones not yet pruned
// Example: DIFFUSE_FAULT_INJECT=before_rename:2:ckpt_ kills the process just before the second
// checkpoint file would appear. A disarmed point costs two atomic loads and a branch.
// tests/training/faults_test.cpp and tests/cli/train_test.cpp use it; docs/reliability.md has the
// results.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <string>

#include <signal.h>

#include <diffuse/config.h>

namespace diffuse {

namespace detail {

struct FaultSpec {
  std::string point;  // empty: off
  int64_t n = 1;
  std::string substring;
  std::atomic<int64_t> hits{0};
};

inline FaultSpec& fault_spec() {
  static FaultSpec spec;
  return spec;
}

inline std::atomic<bool>& fault_enabled() {
  static std::atomic<bool> enabled{false};
  return enabled;
}

inline void parse_fault_spec(const std::string& text, FaultSpec& out) {
  out.point.clear();
  out.n = 1;
  out.substring.clear();
  out.hits = 0;
  if (text.empty()) return;
  const auto c1 = text.find(':');
  out.point = text.substr(0, c1);
  check(!out.point.empty(), "fault injection spec '", text, "': the point name is empty");
  if (c1 == std::string::npos) return;
  const auto c2 = text.find(':', c1 + 1);
  const std::string n =
      text.substr(c1 + 1, c2 == std::string::npos ? std::string::npos : c2 - c1 - 1);
  check(!n.empty() && n.find_first_not_of("0123456789") == std::string::npos && n.size() < 18,
        "fault injection spec '", text, "': the count must be a positive integer, got '", n, "'");
  out.n = std::stoll(n);
  check(out.n >= 1, "fault injection spec '", text, "': the count must be >= 1, got ", out.n);
  if (c2 != std::string::npos) out.substring = text.substr(c2 + 1);
}

inline std::once_flag& fault_env_once() {
  static std::once_flag once;
  return once;
}

}  // namespace detail

/// Arms (spec non-empty) or disarms (spec "") fault injection in this process, replacing what
/// DIFFUSE_FAULT_INJECT said; the hit counter restarts. Throws diffuse::Error for a malformed spec.
/// For tests; not thread-safe with respect to points being reached concurrently.
inline void set_fault_injection(const std::string& spec) {
  std::call_once(detail::fault_env_once(), [] {});  // the environment no longer applies
  detail::parse_fault_spec(spec, detail::fault_spec());
  detail::fault_enabled() = !detail::fault_spec().point.empty();
}

/// Whether a fault spec is armed (for code that must prepare a fault point, e.g. split a write).
inline bool fault_injection_armed() {
  std::call_once(detail::fault_env_once(), [] {
    const char* env = std::getenv("DIFFUSE_FAULT_INJECT");
    if (env == nullptr || *env == '\0') return;
    detail::parse_fault_spec(env, detail::fault_spec());
    detail::fault_enabled() = !detail::fault_spec().point.empty();
  });
  return detail::fault_enabled().load(std::memory_order_relaxed);
}

/// A named fault point (see the file comment): kills the process if the armed spec matches.
inline void fault_point(const char* point, const std::string& subject = std::string()) {
  if (!fault_injection_armed()) return;
  detail::FaultSpec& s = detail::fault_spec();
  if (s.point != point) return;
  if (!s.substring.empty() && subject.find(s.substring) == std::string::npos) return;
  if (++s.hits == s.n) ::raise(SIGKILL);
}

}  // namespace diffuse
