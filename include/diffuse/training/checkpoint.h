// SPDX-License-Identifier: Apache-2.0
// Checkpoint files: naming, discovery of the latest one, pruning, clean-up of temporaries left by
// killed writers, and the state of at::Generator objects (get_state / set_state, available on
// CPUGeneratorImpl in LibTorch 1.13 and 2.x). Checkpoints are written with write_file_atomic
// (training/atomic_file.h); its temporary names start with '.' and end in ".tmp" and are ignored
// by latest_checkpoint().
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <diffuse/config.h>
#include <diffuse/tensor.h>
#include <diffuse/training/atomic_file.h>

namespace at {
struct Generator;
}  // namespace at

namespace diffuse {

/// A checkpoint file that cannot be used because of the file itself: unreadable, truncated, not a
/// trainer checkpoint, another format, or entries missing or malformed. A checkpoint that is intact
/// but was written for a different setup is a plain Error instead (a configuration mistake, which
/// resume_latest() never skips).
class CorruptCheckpointError : public IOError {
 public:
  using IOError::IOError;
};

/// "ckpt_00001234.pt" for step 1234 (eight digits, wider when needed; sorts by step).
std::string checkpoint_filename(int64_t step);

/// The step encoded in a checkpoint file name, or nullopt if the name is not "ckpt_<digits>.pt".
std::optional<int64_t> parse_checkpoint_filename(const std::string& name);

/// All checkpoints in `dir` as (step, path), sorted by step. A missing directory gives none.
std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& dir);

/// The path of the checkpoint with the highest step in `dir`, or nullopt if there is none.
std::optional<std::string> latest_checkpoint(const std::string& dir);

/// Deletes all but the `keep` newest checkpoints in `dir` (keep = 0: delete nothing).
void prune_checkpoints(const std::string& dir, int64_t keep);

/// Removes temporary files left in `dir` by writers of this process id or of processes that no
/// longer run (".<name>.<pid>.tmp" where <pid> is not alive). Returns how many were removed.
int64_t remove_stale_temporaries(const std::string& dir);

/// The full state of a generator as a uint8 tensor (a copy).
at::Tensor generator_state(at::Generator& gen);

/// Restores a state obtained from generator_state() on a generator of the same kind.
void set_generator_state(at::Generator& gen, const at::Tensor& state);

/// The step encoded in a trainer checkpoint without loading the model (reads the archive).
/// Throws IOError if the file cannot be read or is not a trainer checkpoint.
int64_t checkpoint_step(const std::string& path);

}  // namespace diffuse
