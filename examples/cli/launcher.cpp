// SPDX-License-Identifier: Apache-2.0
// `diffuse`: sets the OpenMP wait policy, then runs the tool itself (`diffuse-core`, next to this
// program). libgomp, the OpenMP runtime of LibTorch and OpenBLAS, reads OMP_WAIT_POLICY once, when
// it is loaded, which is before any code of a program linked with LibTorch runs; so a program that
// wants passive waits must have the variable in its environment when it starts. With libgomp's
// default, idle threads spin at every barrier, and on a CPU shared with another busy process that
// starves the thread with the work: `diffuse sample` with 2 threads took 37-40 s instead of 6-7 s
// next to two compilers (docs/benchmarks.md, "Threads"). A value already set is kept.
// This program links nothing but the C++ runtime, so the extra exec costs about a millisecond.
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <unistd.h>

int main(int argc, char** argv) {
  (void)argc;
  if (::setenv("OMP_WAIT_POLICY", "PASSIVE", /*overwrite=*/0) != 0) {
    std::fprintf(stderr, "diffuse: error: cannot set OMP_WAIT_POLICY: %s\n", std::strerror(errno));
    return 1;
  }
  char self[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n <= 0) {
    std::fprintf(stderr, "diffuse: error: cannot find this program's path (/proc/self/exe): %s\n",
                 std::strerror(errno));
    return 1;
  }
  self[n] = '\0';
  std::string core(self);
  core = core.substr(0, core.rfind('/') + 1) + "diffuse-core";
  ::execv(core.c_str(), argv);
  std::fprintf(stderr, "diffuse: error: cannot run '%s': %s\n", core.c_str(), std::strerror(errno));
  return 1;
}
