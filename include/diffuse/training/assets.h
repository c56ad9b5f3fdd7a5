// SPDX-License-Identifier: Apache-2.0
// Files shipped with diffuse (training/assets/ in the source tree, share/diffuse when installed):
// the Fashion-MNIST evaluation classifier and the default Fashion-MNIST DiT of the CLI.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include <diffuse/config.h>

namespace diffuse {

/// The path of the shipped file `name`, searched in, in order:
///   1. $DIFFUSE_ASSET_DIR,
///   2. $DIFFUSE_SOURCE_DIR/training/assets,
///   3. <directory of the running executable>/../share/diffuse (an installed program finds the
///      installed files wherever the prefix was moved to; Linux),
///   4. the directory given at compile time by the macro DIFFUSE_ASSET_DIR (a string literal), if
///      defined (the source tree for a build tree, share/diffuse for an installed package).
/// Throws diffuse::Error naming `what` and listing every place tried when none has it.
inline std::string find_asset(const std::string& name, const std::string& what) {
  std::vector<std::string> tried;
  std::string found;
  auto consider = [&](const std::string& dir, const std::string& origin) {
    if (!found.empty() || dir.empty()) return;
    const std::string candidate = dir + "/" + name;
    std::error_code ec;
    if (std::filesystem::is_regular_file(candidate, ec))
      found = candidate;
    else
      tried.push_back(candidate + " (" + origin + ")");
  };
  const char* asset_env = std::getenv("DIFFUSE_ASSET_DIR");
  const char* source_env = std::getenv("DIFFUSE_SOURCE_DIR");
  consider(asset_env ? asset_env : "", "$DIFFUSE_ASSET_DIR");
  consider(source_env && *source_env ? std::string(source_env) + "/training/assets" : std::string(),
           "$DIFFUSE_SOURCE_DIR/training/assets");
  {
    std::error_code ec;
    const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
    if (!ec && !exe.empty())
      consider((exe.parent_path().parent_path() / "share" / "diffuse").string(),
               "next to the executable");
  }
#ifdef DIFFUSE_ASSET_DIR
  consider(DIFFUSE_ASSET_DIR, "compile-time DIFFUSE_ASSET_DIR");
#endif
  if (found.empty()) {
    std::string list;
    for (const auto& t : tried) list += "\n  " + t;
    if (tried.empty()) list = " (none: set DIFFUSE_ASSET_DIR or DIFFUSE_SOURCE_DIR)";
    throw Error("cannot find " + what + " " + name + "; tried:" + list);
  }
  return found;
}

}  // namespace diffuse
