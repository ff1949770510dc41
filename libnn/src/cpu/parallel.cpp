#include "cpu/parallel.h"

#include <Eigen/Core>

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>

#include "nn/error.h"

namespace nn {
namespace {
std::atomic<int> num_threads{0};
thread_local int this_thread_limit = 0;  // 0: none

// omp_set_num_threads only sets the calling thread's default; Eigen's GEMM reads its own global
// setting, which holds on every thread (data-loader and server workers included).
void apply_thread_count(int n) {
  omp_set_num_threads(n);
  Eigen::setNbThreads(n);
}
std::once_flag init_flag;

void init_from_environment() {
  int n = static_cast<int>(std::thread::hardware_concurrency());
  if (const char* env = std::getenv("NN_NUM_THREADS")) {
    char* end = nullptr;
    long v = std::strtol(env, &end, 10);
    if (end != env && *end == '\0' && v > 0 && v <= 1024) n = static_cast<int>(v);
  }
  num_threads = n > 0 ? n : 1;
  apply_thread_count(num_threads);
}
}  // namespace

void cpu::ensure_threads_initialised() { std::call_once(init_flag, init_from_environment); }

void set_num_threads(int n) {
  NN_CHECK(n > 0 && n <= 1024, "set_num_threads: expected 1..1024 threads, got ", n);
  cpu::ensure_threads_initialised();
  num_threads = n;
  apply_thread_count(n);
}

int get_num_threads() {
  cpu::ensure_threads_initialised();
  return this_thread_limit > 0 ? std::min<int>(this_thread_limit, num_threads) : num_threads.load();
}

void set_this_thread_num_threads(int n) {
  NN_CHECK(n >= 0 && n <= 1024, "set_this_thread_num_threads: expected 0..1024 threads, got ", n);
  this_thread_limit = n;
}

}  // namespace nn
