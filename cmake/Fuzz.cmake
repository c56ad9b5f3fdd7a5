# DIFFUSE_FUZZ=ON (Clang only): the libFuzzer targets of tests/fuzz (parsers of every file format
# and spec string a user can hand the library). Every one of our targets is compiled with
# -fsanitize=fuzzer-no-link,address,undefined so that the library code is coverage-instrumented;
# scripts/fuzz.sh builds them in a separate build folder and runs each for a bounded time.
option(DIFFUSE_FUZZ "Build the libFuzzer targets (needs Clang)" OFF)
if(DIFFUSE_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "DIFFUSE_FUZZ=ON needs Clang (libFuzzer), not ${CMAKE_CXX_COMPILER_ID}; "
                        "configure with -DCMAKE_CXX_COMPILER=clang++")
  endif()
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
                      -fno-omit-frame-pointer -gline-tables-only)
  add_link_options(-fsanitize=address,undefined)
endif()
