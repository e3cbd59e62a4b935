// What the native CPU kernels share: MKL's sgemm, and running a kernel's work
// as tasks on XLA's intra-op thread pool behind an FFI future.
#ifndef MIDTRAIN_JAX_KERNELS_KERNEL_SUPPORT_H_
#define MIDTRAIN_JAX_KERNELS_KERNEL_SUPPORT_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>

#include "xla/ffi/api/ffi.h"

extern "C" void cblas_sgemm(int layout, int trans_a, int trans_b, int m, int n, int k,
                            float alpha, const float* a, int lda, const float* b, int ldb,
                            float beta, float* c, int ldc);

namespace midtrain_kernels {

namespace ffi = xla::ffi;

constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;

// A future already failed with InvalidArgument(`message`).
inline ffi::Future InvalidArgument(const char* message) {
  ffi::Promise promise;
  ffi::Future future(promise);
  promise.SetError(ffi::Error::InvalidArgument(message));
  return future;
}

// A future already complete.
inline ffi::Future Done() {
  ffi::Promise promise;
  ffi::Future future(promise);
  promise.SetAvailable();
  return future;
}

// Runs task(i) for i in [0, tasks) on the caller and the pool; the future
// completes when all have run. The caller never waits for the pool, so a pool
// thread is never parked while another kernel waits for it.
template <typename Task>
ffi::Future RunTasks(ffi::ThreadPool& pool, int64_t tasks, Task task) {
  ffi::Promise promise;
  ffi::Future future(promise);
  const int64_t workers = std::max<int64_t>(1, std::min<int64_t>(pool.num_threads(), tasks));
  auto next = std::make_shared<std::atomic<int64_t>>(0);
  auto done = std::make_shared<ffi::CountDownPromise>(promise, workers);
  auto work = [next, done, tasks, task] {
    for (int64_t i; (i = next->fetch_add(1)) < tasks;) task(i);
    done->CountDown();
  };
  for (int64_t w = 1; w < workers; ++w) pool.Schedule([work] { work(); });
  work();
  return future;
}

}  // namespace midtrain_kernels

#endif  // MIDTRAIN_JAX_KERNELS_KERNEL_SUPPORT_H_
