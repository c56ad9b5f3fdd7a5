# DIFFUSE_SANITIZE=address,undefined (any list -fsanitize accepts; empty = off): instruments our own
# targets. Prebuilt dependencies (LibTorch, libstb, gtest) are not instrumented; see
# scripts/sanitize.sh for the ASAN_OPTIONS this needs. Applied directory-wide before any of our
# targets is created, so the library, tests, examples and benchmarks all get it.
set(DIFFUSE_SANITIZE "" CACHE STRING "Sanitizers for our targets, e.g. address,undefined (empty = none)")
if(DIFFUSE_SANITIZE)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    message(FATAL_ERROR "DIFFUSE_SANITIZE needs GCC or Clang, not ${CMAKE_CXX_COMPILER_ID}")
  endif()
  set(_diffuse_san_flags "-fsanitize=${DIFFUSE_SANITIZE}" -fno-omit-frame-pointer)
  if(DIFFUSE_SANITIZE MATCHES "undefined")
    # A UBSan report fails the run instead of printing and continuing.
    list(APPEND _diffuse_san_flags -fno-sanitize-recover=undefined)
  endif()
  add_compile_options(${_diffuse_san_flags})
  if(CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    add_compile_options(-gline-tables-only)  # file:line in reports, at a fraction of -g's cost
  endif()
  add_link_options(${_diffuse_san_flags})
  message(STATUS "diffuse: sanitizers ${DIFFUSE_SANITIZE} on our targets")
endif()
