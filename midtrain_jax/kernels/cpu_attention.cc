// Causal attention within documents for XLA's CPU backend, float32, forward
// and backward: what torch's CPU flash attention does, for the model's masks.
//
// A query sees the keys at or before its own slot, inside an optional sliding
// window, in its own document (same segment id); GQA: query head n uses KV
// head n / (N / K). Layouts are the model's: q, o [B, T, N, H]; k, v
// [B, T, K, H]; segment ids [B, T]; lse (log-sum-exp of each query's scaled
// scores, kept for the backward pass) [B, N, T]. With `rotate`, q and k are
// first rotated by RoPE (model/rope.py: pairs (i, i + H/2) by the angle of
// cos/sin [B, T, H/2], which carry any YaRN scale), and the gradients of q and
// k rotated back, so RoPE costs no passes over q and k in XLA.
//
// Work is split into one task per (batch row, KV head): a task owns its KV
// head's dk / dv rows, so the backward pass accumulates without locks. In a
// task, each block of query rows takes its scores against only the keys the
// block can see (blocks above the diagonal and outside the window are never
// computed) as MKL GEMMs on strided views, softmax in between; the backward
// pass recomputes the probabilities from lse instead of storing them.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <unordered_set>
#include <vector>

#include "kernel_support.h"

namespace {

using namespace midtrain_kernels;  // NOLINT: the kernels' own helpers.

constexpr int64_t kQueryBlock = 64;
// Scores of masked keys; finite, so no inf arithmetic is needed anywhere.
constexpr float kMasked = -1e30f;

// exp(x) for x <= 0 as 2^n * p(r) (Cephes expf polynomial, ~2 ulp), written so
// the compiler vectorises the loops that call it.
inline float Exp(float x) {
  x = std::max(x, -87.0f);
  const float n = std::floor(x * 1.44269504088896341f + 0.5f);
  const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  return p * __builtin_bit_cast(float, bits);
}

struct Dims {
  int64_t b, t, n, k, h, window;
  float scale;
  int64_t group() const { return n / k; }
};

// Keys [lo, hi) that the query rows [t0, t1) can see.
inline void KeyRange(const Dims& d, int64_t t0, int64_t t1, int64_t* lo, int64_t* hi) {
  *lo = d.window > 0 ? std::max<int64_t>(0, t0 - d.window + 1) : 0;
  *hi = t1;
}

// Calls block(head, t0, rows, lo, len) for every query block [t0, t0 + rows) of
// every query head sharing KV head `kv`, with the keys [lo, lo + len) it sees.
template <typename Block>
void ForEachBlock(const Dims& d, int64_t kv, Block block) {
  for (int64_t head = kv * d.group(); head < (kv + 1) * d.group(); ++head) {
    for (int64_t t0 = 0; t0 < d.t; t0 += kQueryBlock) {
      const int64_t rows = std::min(kQueryBlock, d.t - t0);
      int64_t lo, hi;
      KeyRange(d, t0, t0 + rows, &lo, &hi);
      block(head, t0, rows, lo, hi - lo);
    }
  }
}

// One batch row's documents. Packed rows hold each document as one run of
// equal segment ids; then a query sees exactly the keys from its run's start
// (or its window's) up to itself, an interval. When an id comes back after
// another (not a packing layout, but allowed), keys inside that interval are
// also checked one by one.
struct Documents {
  const int32_t* seg;
  std::vector<int64_t> run_start;  // first slot of the run holding each slot
  bool runs_are_documents;

  Documents(const int32_t* seg_row, int64_t t) : seg(seg_row), run_start(t) {
    std::unordered_set<int32_t> seen;
    runs_are_documents = true;
    for (int64_t i = 0; i < t; ++i) {
      const bool starts = i == 0 || seg[i] != seg[i - 1];
      run_start[i] = starts ? i : run_start[i - 1];
      if (starts && !seen.insert(seg[i]).second) runs_are_documents = false;
    }
  }

  // First key slot query slot `t` may see.
  int64_t First(const Dims& d, int64_t t) const {
    const int64_t first = runs_are_documents ? run_start[t] : 0;
    return d.window > 0 ? std::max(first, t - d.window + 1) : first;
  }
};

// Rows of one head: row t at data + t * ld.
struct HeadRows {
  const float* data;
  int64_t ld;
  const float* row(int64_t t) const { return data + t * ld; }
};

// dst row t = src row t rotated by its RoPE angles: (x1 cos - x2 sin,
// x2 cos + x1 sin) on the halves; `inverse` applies the transpose (sin negated),
// which is what the gradient needs. dst may be src.
void Rotate(const float* src, int64_t src_ld, float* dst, int64_t dst_ld, int64_t t, int64_t h,
            const float* cos, const float* sin, bool inverse) {
  const int64_t half = h / 2;
  const float sign = inverse ? -1.0f : 1.0f;
  for (int64_t i = 0; i < t; ++i) {
    const float *x = src + i * src_ld, *c = cos + i * half, *s = sin + i * half;
    float* y = dst + i * dst_ld;
#pragma omp simd
    for (int64_t j = 0; j < half; ++j) {
      const float x1 = x[j], x2 = x[j + half], sn = sign * s[j];
      y[j] = x1 * c[j] - x2 * sn;
      y[j + half] = x2 * c[j] + x1 * sn;
    }
  }
}

// The q rows of a KV group's heads and the k rows of its KV head, as the scores
// see them: the input buffers' rows, or rotated copies when rotating (k's whole,
// made once per task; q's one query block at a time, so a long sequence costs
// no copy of q).
class Operands {
 public:
  Operands(const Dims& d, const float* qp, const float* kp, const float* cos, const float* sin,
           bool rotate, int64_t bi, int64_t kv)
      : d_(d), q_(qp + bi * d.t * d.n * d.h), k_(kp + (bi * d.t * d.k + kv) * d.h),
        cos_(cos + bi * d.t * (d.h / 2)), sin_(sin + bi * d.t * (d.h / 2)), rotate_(rotate) {
    if (!rotate) return;
    k_rotated_.resize(d.t * d.h);
    Rotate(k_, d.k * d.h, k_rotated_.data(), d.h, d.t, d.h, cos_, sin_, false);
  }

  // Rows [t0, t0 + rows) of query head `head`, row 0 first; rotated into
  // `scratch` (kQueryBlock x H) when rotating.
  HeadRows QBlock(int64_t head, int64_t t0, int64_t rows, float* scratch) const {
    const float* src = q_ + (t0 * d_.n + head) * d_.h;
    if (!rotate_) return HeadRows{src, d_.n * d_.h};
    const int64_t half = d_.h / 2;
    Rotate(src, d_.n * d_.h, scratch, d_.h, rows, d_.h, cos_ + t0 * half, sin_ + t0 * half,
           false);
    return HeadRows{scratch, d_.h};
  }
  // All T key rows, row 0 first.
  HeadRows K() const {
    return rotate_ ? HeadRows{k_rotated_.data(), d_.h} : HeadRows{k_, d_.k * d_.h};
  }

 private:
  Dims d_;
  const float* q_;  // row (bi, 0), head 0
  const float* k_;  // row (bi, 0), KV head kv
  const float *cos_, *sin_;  // row (bi, 0)
  bool rotate_;
  std::vector<float> k_rotated_;  // [T, H]
};

// s[rows, len] = scale * q_block . k_keys[lo, lo + len) for the query rows
// [t0, t0 + rows) in `q_block`. Only the entries a row can see are meaningful
// (Documents::First to the row's own slot); for rows whose documents are not
// runs, other-document keys in that interval are set to kMasked.
void Scores(const Dims& d, HeadRows q_block, HeadRows k, const Documents& docs, int64_t t0,
            int64_t rows, int64_t lo, int64_t len, float* s) {
  cblas_sgemm(kRowMajor, kNoTrans, kTrans, rows, len, d.h, d.scale, q_block.data, q_block.ld,
              k.row(lo), k.ld, 0.0f, s, len);
  if (docs.runs_are_documents) return;
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t t = t0 + i;
    float* row = s + i * len;
    for (int64_t key = docs.First(d, t); key <= t; ++key) {
      if (docs.seg[key] != docs.seg[t]) row[key - lo] = kMasked;
    }
  }
}

// exp(row - shift) on the visible keys [a, b) (masked ones -> 0) and 0 elsewhere;
// returns their sum.
inline float ExpRow(float* row, int64_t len, int64_t a, int64_t b, float shift) {
  std::fill(row, row + a, 0.0f);
  std::fill(row + b, row + len, 0.0f);
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = a; j < b; ++j) {
    const float e = Exp(row[j] - shift);
    row[j] = row[j] > kMasked ? e : 0.0f;
    sum += row[j];
  }
  return sum;
}

bool ParseDims(ffi::Buffer<ffi::F32>& q, ffi::Buffer<ffi::F32>& k, ffi::Buffer<ffi::F32>& v,
               ffi::Buffer<ffi::S32>& seg, ffi::Buffer<ffi::F32>& cos,
               ffi::Buffer<ffi::F32>& sin, bool rotate, int64_t window, float scale, Dims* d) {
  auto dq = q.dimensions(), dk = k.dimensions(), dv = v.dimensions(), ds = seg.dimensions();
  if (dq.size() != 4 || dk.size() != 4 || dv.size() != 4 || ds.size() != 2) return false;
  *d = Dims{dq[0], dq[1], dq[2], dk[2], dq[3], window, scale};
  for (int i = 0; i < 4; ++i) {
    if (dk[i] != dv[i]) return false;
  }
  if (rotate) {
    auto dc = cos.dimensions(), dsin = sin.dimensions();
    if (dc.size() != 3 || dsin.size() != 3 || d->h % 2) return false;
    for (int i = 0; i < 3; ++i) {
      if (dc[i] != dsin[i]) return false;
    }
    if (dc[0] != d->b || dc[1] != d->t || dc[2] != d->h / 2) return false;
  }
  return dk[0] == d->b && dk[1] == d->t && dk[3] == d->h && ds[0] == d->b && ds[1] == d->t &&
         d->k > 0 && d->n % d->k == 0;
}

ffi::Future Forward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> q, ffi::Buffer<ffi::F32> k,
                    ffi::Buffer<ffi::F32> v, ffi::Buffer<ffi::S32> seg,
                    ffi::Buffer<ffi::F32> cos, ffi::Buffer<ffi::F32> sin,
                    ffi::ResultBuffer<ffi::F32> o, ffi::ResultBuffer<ffi::F32> lse,
                    int64_t window, float scale, bool rotate) {
  Dims d;
  if (!ParseDims(q, k, v, seg, cos, sin, rotate, window, scale, &d)) {
    return InvalidArgument("cpu_attention: inconsistent shapes");
  }
  const float *qp = q.typed_data(), *kp = k.typed_data(), *vp = v.typed_data();
  const float *cp = cos.typed_data(), *snp = sin.typed_data();
  const int32_t* sp = seg.typed_data();
  float *op = o->typed_data(), *lp = lse->typed_data();
  return RunTasks(pool, d.b * d.k, [=](int64_t task) {
    const int64_t bi = task / d.k, kv = task % d.k;
    const Documents docs(sp + bi * d.t, d.t);
    const Operands x(d, qp, kp, cp, snp, rotate, bi, kv);
    std::vector<float> s(kQueryBlock * d.t), q_scratch(kQueryBlock * d.h);
    ForEachBlock(d, kv, [&](int64_t head, int64_t t0, int64_t rows, int64_t lo, int64_t len) {
      Scores(d, x.QBlock(head, t0, rows, q_scratch.data()), x.K(), docs, t0, rows, lo, len,
             s.data());
      for (int64_t i = 0; i < rows; ++i) {
        const int64_t t = t0 + i, a = docs.First(d, t) - lo, b = t - lo + 1;
        float* row = s.data() + i * len;
        float peak = kMasked;
#pragma omp simd reduction(max : peak)
        for (int64_t j = a; j < b; ++j) peak = std::max(peak, row[j]);
        // A query always sees itself, so sum >= 1.
        const float sum = ExpRow(row, len, a, b, peak), inv = 1.0f / sum;
#pragma omp simd
        for (int64_t j = a; j < b; ++j) row[j] *= inv;
        lp[(bi * d.n + head) * d.t + t] = peak + std::log(sum);
      }
      cblas_sgemm(kRowMajor, kNoTrans, kNoTrans, rows, d.h, len, 1.0f, s.data(), len,
                  vp + ((bi * d.t + lo) * d.k + kv) * d.h, d.k * d.h, 0.0f,
                  op + ((bi * d.t + t0) * d.n + head) * d.h, d.n * d.h);
    });
  });
}

ffi::Future Backward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> q, ffi::Buffer<ffi::F32> k,
                     ffi::Buffer<ffi::F32> v, ffi::Buffer<ffi::S32> seg,
                     ffi::Buffer<ffi::F32> cos, ffi::Buffer<ffi::F32> sin,
                     ffi::Buffer<ffi::F32> o, ffi::Buffer<ffi::F32> lse,
                     ffi::Buffer<ffi::F32> dout, ffi::ResultBuffer<ffi::F32> dq,
                     ffi::ResultBuffer<ffi::F32> dk, ffi::ResultBuffer<ffi::F32> dv,
                     int64_t window, float scale, bool rotate) {
  Dims d;
  if (!ParseDims(q, k, v, seg, cos, sin, rotate, window, scale, &d)) {
    return InvalidArgument("cpu_attention: inconsistent shapes");
  }
  const float *qp = q.typed_data(), *kp = k.typed_data(), *vp = v.typed_data();
  const float *cp = cos.typed_data(), *snp = sin.typed_data();
  const float *op = o.typed_data(), *lp = lse.typed_data(), *gp = dout.typed_data();
  const int32_t* sp = seg.typed_data();
  float *dqp = dq->typed_data(), *dkp = dk->typed_data(), *dvp = dv->typed_data();
  return RunTasks(pool, d.b * d.k, [=](int64_t task) {
    const int64_t bi = task / d.k, kv = task % d.k;
    for (int64_t t = 0; t < d.t; ++t) {
      const int64_t at = ((bi * d.t + t) * d.k + kv) * d.h;
      std::fill(dkp + at, dkp + at + d.h, 0.0f);
      std::fill(dvp + at, dvp + at + d.h, 0.0f);
    }
    const Documents docs(sp + bi * d.t, d.t);
    const Operands x(d, qp, kp, cp, snp, rotate, bi, kv);
    std::vector<float> p(kQueryBlock * d.t), dp(kQueryBlock * d.t), q_scratch(kQueryBlock * d.h);
    ForEachBlock(d, kv, [&](int64_t head, int64_t t0, int64_t rows, int64_t lo, int64_t len) {
      const int64_t q_at = ((bi * d.t + t0) * d.n + head) * d.h;
      const int64_t kv_at = ((bi * d.t + lo) * d.k + kv) * d.h;
      const HeadRows qh = x.QBlock(head, t0, rows, q_scratch.data()), kh = x.K();
      Scores(d, qh, kh, docs, t0, rows, lo, len, p.data());
      // dp = dout . v^T
      cblas_sgemm(kRowMajor, kNoTrans, kTrans, rows, len, d.h, 1.0f, gp + q_at, d.n * d.h,
                  vp + kv_at, d.k * d.h, 0.0f, dp.data(), len);
      for (int64_t i = 0; i < rows; ++i) {
        const int64_t t = t0 + i, a = docs.First(d, t) - lo, b = t - lo + 1;
        const float* o_row = op + q_at + i * d.n * d.h;
        const float* g_row = gp + q_at + i * d.n * d.h;
        float delta = 0.0f;  // sum_h dout * out = sum_j p * dp
#pragma omp simd reduction(+ : delta)
        for (int64_t c = 0; c < d.h; ++c) delta += o_row[c] * g_row[c];
        float* p_row = p.data() + i * len;
        float* dp_row = dp.data() + i * len;
        ExpRow(p_row, len, a, b, lp[(bi * d.n + head) * d.t + t]);
        std::fill(dp_row, dp_row + a, 0.0f);
        std::fill(dp_row + b, dp_row + len, 0.0f);
#pragma omp simd
        for (int64_t j = a; j < b; ++j) {
          dp_row[j] = p_row[j] * (dp_row[j] - delta);  // d score (before the scale)
        }
      }
      // dq = scale * ds . k;  dk += scale * ds^T . q;  dv += p^T . dout (of the
      // rotated q and k when rotating: turned back below)
      cblas_sgemm(kRowMajor, kNoTrans, kNoTrans, rows, d.h, len, d.scale, dp.data(), len,
                  kh.row(lo), kh.ld, 0.0f, dqp + q_at, d.n * d.h);
      cblas_sgemm(kRowMajor, kTrans, kNoTrans, len, d.h, rows, d.scale, dp.data(), len,
                  qh.data, qh.ld, 1.0f, dkp + kv_at, d.k * d.h);
      cblas_sgemm(kRowMajor, kTrans, kNoTrans, len, d.h, rows, 1.0f, p.data(), len,
                  gp + q_at, d.n * d.h, 1.0f, dvp + kv_at, d.k * d.h);
    });
    if (!rotate) return;
    // The task owns its heads' dq rows and its KV head's dk rows.
    const float *c = cp + bi * d.t * (d.h / 2), *sn = snp + bi * d.t * (d.h / 2);
    for (int64_t head = kv * d.group(); head < (kv + 1) * d.group(); ++head) {
      float* rows = dqp + (bi * d.t * d.n + head) * d.h;
      Rotate(rows, d.n * d.h, rows, d.n * d.h, d.t, d.h, c, sn, true);
    }
    float* rows = dkp + (bi * d.t * d.k + kv) * d.h;
    Rotate(rows, d.k * d.h, rows, d.k * d.h, d.t, d.h, c, sn, true);
  });
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(MidtrainCpuAttentionForward, Forward,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("window")
                                  .Attr<float>("scale")
                                  .Attr<bool>("rotate"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(MidtrainCpuAttentionBackward, Backward,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("window")
                                  .Attr<float>("scale")
                                  .Attr<bool>("rotate"));
