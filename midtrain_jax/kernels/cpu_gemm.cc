// Float32 GEMM for XLA's CPU backend: MKL's sequential sgemm on blocks of the
// output's rows or columns, spread over XLA's intra-op thread pool.
//
// On CPUs where MKL's sgemm outruns XLA's own CPU GEMMs (YNNPACK/Eigen), the
// model's projections, MLP and output layer call this through an XLA FFI custom
// call (kernels/cpu_gemm.py). MKL runs single-threaded inside each block so it
// never starts threads of its own beside XLA's pool; the handler returns a
// future instead of waiting for its blocks, so a pool thread is never parked
// while another GEMM waits for it.
#include <algorithm>
#include <climits>
#include <cstdint>

#include "kernel_support.h"

extern "C" int MKL_Set_Threading_Layer(int layer);

namespace {

using namespace midtrain_kernels;  // NOLINT: the kernels' own helpers.

constexpr int kMklThreadingSequential = 1;
// Output rows (or columns) per block at least: below this a block's GEMM is too
// small to amortise the hand-off to another thread.
constexpr int64_t kMinBlock = 64;

// Before MKL's first call: one thread per call, the parallelism is XLA's pool.
const bool kSequential = (MKL_Set_Threading_Layer(kMklThreadingSequential), true);

struct Gemm {
  const float* a;
  const float* b;
  float* c;
  int64_t m, n, k;
  bool transpose_a, transpose_b;

  // C[rows, cols] = op(A)[rows, :] op(B)[:, cols] for rows [r0, r1), cols [c0, c1).
  void Block(int64_t r0, int64_t r1, int64_t c0, int64_t c1) const {
    const int64_t lda = transpose_a ? m : k, ldb = transpose_b ? k : n;
    const float* a_rows = transpose_a ? a + r0 : a + r0 * lda;
    const float* b_cols = transpose_b ? b + c0 * ldb : b + c0;
    cblas_sgemm(kRowMajor, transpose_a ? kTrans : kNoTrans, transpose_b ? kTrans : kNoTrans,
                static_cast<int>(r1 - r0), static_cast<int>(c1 - c0), static_cast<int>(k), 1.0f,
                a_rows, static_cast<int>(lda), b_cols, static_cast<int>(ldb), 0.0f,
                c + r0 * n + c0, static_cast<int>(n));
  }

  // Block i of `blocks` along the longer side of C (a weight gradient [D, V]
  // split by rows runs MKL on narrow strided slices of A, ~40% slower).
  void Part(int64_t i, int64_t blocks) const {
    if (n > m) {
      Block(0, m, i * n / blocks, (i + 1) * n / blocks);
    } else {
      Block(i * m / blocks, (i + 1) * m / blocks, 0, n);
    }
  }
};

ffi::Future GemmImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> a, ffi::Buffer<ffi::F32> b,
                     ffi::ResultBuffer<ffi::F32> c, bool transpose_a, bool transpose_b) {
  auto da = a.dimensions(), db = b.dimensions(), dc = c->dimensions();
  if (da.size() != 2 || db.size() != 2 || dc.size() != 2) {
    return InvalidArgument("cpu_gemm: operands must be 2-D");
  }
  const int64_t m = transpose_a ? da[1] : da[0], k = transpose_a ? da[0] : da[1];
  const int64_t kb = transpose_b ? db[1] : db[0], n = transpose_b ? db[0] : db[1];
  if (k != kb || dc[0] != m || dc[1] != n) {
    return InvalidArgument("cpu_gemm: shapes do not match");
  }
  if (std::max({m, n, k}) > INT_MAX) {
    return InvalidArgument("cpu_gemm: a dimension exceeds 32 bits");
  }
  if (m == 0 || n == 0) return Done();
  if (k == 0) {
    std::fill(c->typed_data(), c->typed_data() + m * n, 0.0f);
    return Done();
  }
  const Gemm gemm{a.typed_data(), b.typed_data(), c->typed_data(), m, n, k,
                  transpose_a, transpose_b};
  const int64_t blocks = std::max<int64_t>(
      1, std::min<int64_t>(pool.num_threads(), std::max(m, n) / kMinBlock));
  return RunTasks(pool, blocks, [gemm, blocks](int64_t i) { gemm.Part(i, blocks); });
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(MidtrainCpuGemm, GemmImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<bool>("transpose_a")
                                  .Attr<bool>("transpose_b"));
