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
#include <mutex>
#include <string>

#include <diffuse/config.h>  // diffuse::Error and its kinds, thrown here

namespace diffuse {

namespace detail {

struct FaultSpec {
  std::string point;  // empty: off
  int64_t n = 1;
  std::string substring;
  std::atomic<int64_t> hits{0};
};

FaultSpec& fault_spec();

std::atomic<bool>& fault_enabled();

void parse_fault_spec(const std::string& text, FaultSpec& out);

std::once_flag& fault_env_once();

}  // namespace detail

/// Arms (spec non-empty) or disarms (spec "") fault injection in this process, replacing what
/// DIFFUSE_FAULT_INJECT said; the hit counter restarts. Throws diffuse::Error for a malformed spec.
/// For tests; not thread-safe with respect to points being reached concurrently.
void set_fault_injection(const std::string& spec);

/// Whether a fault spec is armed (for code that must prepare a fault point, e.g. split a write).
bool fault_injection_armed();

/// A named fault point (see the file comment): kills the process if the armed spec matches.
void fault_point(const char* point, const std::string& subject = std::string());

}  // namespace diffuse
