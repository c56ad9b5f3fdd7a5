// SPDX-License-Identifier: Apache-2.0
// `diffuse`: sets the OpenMP wait policy (and mends OpenBLAS's kernel choice), then runs the tool
// itself (`diffuse-core`, next to this program). libgomp, the OpenMP runtime of LibTorch and
// OpenBLAS, reads OMP_WAIT_POLICY once, when it is loaded, which is before any code of a program
// linked with LibTorch runs; so a program that wants passive waits must have the variable in its
// environment when it starts. With libgomp's default, idle threads spin at every barrier, and on a
// CPU shared with another busy process that starves the thread with the work: `diffuse sample` with
// 2 threads took 37-40 s instead of 6-7 s next to two compilers (docs/benchmarks.md, "Threads"). A
// value already set is kept.
//
// Fully passive waits cost as much on an idle machine: every parallel region then wakes the other
// thread through a system call, and a training step of the tiny DiT is ~340 short regions, so 2
// threads trained no faster than 1. When it sets the policy itself, the launcher also sets
// GOMP_SPINCOUNT=1000 (libgomp's own throttled spin for ACTIVE, about 10 us by its estimate of
// 100000 spins per ms), which libgomp puts before the policy: a thread spins that long before it
// sleeps, and not at all when there are more OpenMP threads than CPUs. Measured on 2 vCPUs against
// fully passive waits, 2 threads: training +22-31 % images/s idle and -13-16 % next to a busy
// process, sampling -11-18 % time idle and +13-16 % busy (libgomp's default spin: -54 % busy
// training; docs/benchmarks.md, "A short spin by default"). A GOMP_SPINCOUNT already set is kept.
//
// It also mends OpenBLAS's choice of kernels. OpenBLAS (the BLAS of Debian's LibTorch) picks them
// by CPU model when it is loaded, and falls back to its SSE3 "Prescott" kernels for a model it
// does not know: 0.3.21 on an Emerald Rapids Xeon (family 6, model 207) with AVX-512 ran the
// shipped model's `diffuse --threads 1 sample -n 40 --steps 50` in 7.3-8.1 s, against 3.6-4.2 s
// with OPENBLAS_CORETYPE=SkylakeX (docs/benchmarks.md, "OpenBLAS kernels"). So the launcher loads
// the OpenBLAS that LibTorch will load, asks which core it picked, and when that is a pre-AVX core
// on a CPU that has AVX2 and FMA, sets OPENBLAS_CORETYPE to SkylakeX (the CPU has AVX-512 F, CD,
// BW, DQ and VL) or Haswell, and DIFFUSE_OPENBLAS_MENDED to the core OpenBLAS had picked (the tool
// logs both at --verbose). An OPENBLAS_CORETYPE already set is kept. Without OpenBLAS nothing
// changes.
// This program links nothing but the C++ runtime (and dlopen), so the extra exec costs about a
// millisecond, and the OpenBLAS check 3-4 ms.
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <dlfcn.h>
#include <unistd.h>

namespace {

/// OpenBLAS's name for its core ("" without OpenBLAS).
std::string openblas_core() {
  void* lib = ::dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) return "";
  std::string core;
  using CoreName = char* (*)();
  if (auto f = reinterpret_cast<CoreName>(::dlsym(lib, "openblas_get_corename"))) {
    if (const char* name = f()) core = name;
  }
  ::dlclose(lib);
  return core;
}

/// The core to ask for, when OpenBLAS picked kernels older than the CPU (else nullptr).
const char* better_openblas_core(std::string picked) {
#if defined(__x86_64__) && defined(__GNUC__)
  for (char& c : picked) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  static const char* const kPreAvx[] = {"prescott",  "core2",  "penryn", "dunnington",
                                        "nehalem",   "atom",   "katmai", "coppermine",
                                        "northwood", "banias", "unknown"};
  bool old = false;
  for (const char* name : kPreAvx) old = old || picked == name;
  if (!old) return nullptr;
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return nullptr;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl"))
    return "SkylakeX";
  return "Haswell";
#else
  (void)picked;
  return nullptr;
#endif
}

}  // namespace

int main(int argc, char** argv) {
  (void)argc;
  if (std::getenv("OMP_WAIT_POLICY") == nullptr) {
    if (::setenv("OMP_WAIT_POLICY", "PASSIVE", 1) != 0 ||
        ::setenv("GOMP_SPINCOUNT", "1000", /*overwrite=*/0) != 0) {
      std::fprintf(stderr, "diffuse: error: cannot set OMP_WAIT_POLICY and GOMP_SPINCOUNT: %s\n",
                   std::strerror(errno));
      return 1;
    }
  }
  if (std::getenv("OPENBLAS_CORETYPE") == nullptr) {
    const std::string picked = openblas_core();
    if (const char* core = better_openblas_core(picked)) {
      if (::setenv("OPENBLAS_CORETYPE", core, 1) != 0 ||
          ::setenv("DIFFUSE_OPENBLAS_MENDED", picked.c_str(), 1) != 0) {
        std::fprintf(stderr, "diffuse: error: cannot set OPENBLAS_CORETYPE: %s\n",
                     std::strerror(errno));
        return 1;
      }
    }
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
