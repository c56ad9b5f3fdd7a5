# Compile-time levers for our own multi-file targets (docs/benchmarks.md, "CI time").
#
# Every translation unit here pays ~10-15 s to parse the LibTorch headers before it compiles a line
# of ours; a unity ("jumbo") build pays that once per batch of sources instead of once per source.
# DIFFUSE_UNITY_BUILD (default ON) batches the sources of the libraries, the test binaries and the
# CLI; -DDIFFUSE_UNITY_BUILD=OFF compiles one object per source (what you want while editing one
# test file over and over). The module sources (one algorithm per .cpp, each with a registration
# anchor) are batched by cmake/DiffuseGenerateUmbrella.cmake instead, thirty to a generated file
# with one anchor each, so a one-file edit of a sampler recompiles one object (its batch).
# The batch sizes (library 11, modules 30, training 14, tests 19, CLI 7, CLI tests 9) make two
# objects of most targets: both cores busy, the header parse paid twice per target. Against the
# earlier 8 / 14 / 8 / 10 / 6 / 5 the fresh `test.sh` build took 422 s instead of 476 s and the
# add_subdirectory consumer 56 s instead of 93 s; a one-file edit costs more (samplers/euler.cpp
# 23 s, training/trainer.cpp 47 s: docs/benchmarks.md, "Compile cost").
#
# Tests are compiled with -O0: their own code is a thin layer over calls into the library and
# LibTorch (compiled with the build type's flags). Measured on one unity batch of the samplers
# tests (g++ 12, alone on the machine): -O3 about 38 s, -O1 25.2 s, -O0 20.0 s; the test run time
# did not change measurably (docs/benchmarks.md, "CI time").
option(DIFFUSE_UNITY_BUILD "Batch the sources of diffuse's own targets into unity translation units" ON)

function(diffuse_unity target batch)
  if(DIFFUSE_UNITY_BUILD)
    set_target_properties(${target} PROPERTIES UNITY_BUILD ON UNITY_BUILD_BATCH_SIZE ${batch})
  endif()
endfunction()

function(diffuse_test_optimisation target)
  if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang" AND CMAKE_BUILD_TYPE MATCHES "^(Release|RelWithDebInfo|MinSizeRel)$")
    target_compile_options(${target} PRIVATE -O0)
  endif()
endfunction()

# A precompiled header costs 20-60 s to build and saves a few seconds per translation unit that
# uses it: worth it for a target of many sources, a loss for the two to four unity batches of a
# target in a unity build. So: precompiled headers only when DIFFUSE_UNITY_BUILD is OFF.
function(diffuse_precompile_headers target)
  if(NOT DIFFUSE_UNITY_BUILD)
    target_precompile_headers(${target} PRIVATE ${ARGN})
  endif()
endfunction()
