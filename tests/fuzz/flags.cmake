# NN_FUZZ=ON: the whole build (libnn included) is instrumented for libFuzzer, AddressSanitizer and
# UndefinedBehaviorSanitizer, and only what the fuzz targets need is configured. Included from the
# root CMakeLists.txt before any target, so the flags reach libnn; the targets are in
# tests/fuzz/CMakeLists.txt. See tests/fuzz/README.md.
if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "NN_FUZZ=ON needs clang (libFuzzer), but the C++ compiler is "
                      "${CMAKE_CXX_COMPILER_ID}: configure with CC=clang CXX=clang++ in a fresh build "
                      "directory")
endif()
# A fuzz build is a CPU build of the library plus the targets: no CUDA, examples, bench or tests.
set(NN_CUDA OFF CACHE STRING "Build the CUDA backend: AUTO, ON or OFF" FORCE)
set(NN_BUILD_EXAMPLES OFF CACHE BOOL "Build the examples" FORCE)
set(NN_BUILD_BENCH OFF CACHE BOOL "Build the benchmarks" FORCE)
set(NN_BUILD_TESTS OFF CACHE BOOL "Build the tests" FORCE)
# fuzzer-no-link: coverage instrumentation without libFuzzer's main (the targets link it). UB is
# fatal (no recovery), so libFuzzer records it as a crash instead of printing and going on.
set(_nn_fuzz_flags -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
                   -fno-omit-frame-pointer -g)
add_compile_options("$<$<COMPILE_LANGUAGE:C,CXX>:${_nn_fuzz_flags}>")
add_link_options("$<$<LINK_LANGUAGE:C,CXX>:-fsanitize=address,undefined>")
message(STATUS "nn: fuzz build (libFuzzer + ASan + UBSan); targets in tests/fuzz")
