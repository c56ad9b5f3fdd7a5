// SPDX-License-Identifier: Apache-2.0
// Atomic file writes, shared by checkpoints, PNG output, the shipped classifier and the loss log.
//
// The bytes are written to a temporary file in the destination directory
// (".<name>.<pid>.tmp"), flushed and fsync'ed, then renamed over the final name (rename(2) is
// atomic within one file system) and the directory is fsync'ed. A reader therefore sees either
// the previous complete file or the new complete one, never a partial file, even if the process
// is killed while writing. On any failure the temporary file is removed, the target is left as
// it was, and a diffuse::IOError naming the target is thrown. remove_stale_temporaries() in
// <diffuse/training/checkpoint.h> cleans up after writers that were killed.
#pragma once

#include <cstddef>
#include <functional>
#include <ostream>
#include <string>

namespace diffuse {

/// Creates `dir` and its parents if missing; throws diffuse::IOError naming the folder and the
/// reason (not std::filesystem::filesystem_error) if that fails.
void create_directories_or_throw(const std::string& dir);

/// Writes `n` bytes to `path` atomically (see the file comment). The directory must exist.
void write_bytes_atomic(const std::string& path, const void* data, size_t n);

/// Writes what `writer` streams to `path` atomically. If `writer` throws, nothing is written.
void write_file_atomic(const std::string& path, const std::function<void(std::ostream&)>& writer);

/// Replaces `path` atomically by `text`.
void write_text_file_atomic(const std::string& path, const std::string& text);

}  // namespace diffuse
