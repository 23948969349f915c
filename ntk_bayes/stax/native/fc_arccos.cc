// NNGP and NTK of a fully connected network of Dense and ABRelu layers (ReLU, leaky
// ReLU, Abs, any a * min(x, 0) + b * max(x, 0)), in one pass per tile of pairs.
//
// An XLA FFI handler for JAX's CPU backend (ntk_bayes/stax/_native.py builds, loads and
// calls it). The recursion is the library's own (stax._dense.Dense.kernel,
// stax._elementwise.ABRelu.dual, the self-pair rule of Elementwise.kernel), with the
// same polynomial angle (unit_angle, its coefficients passed in); what differs is the
// schedule: each 64 x 64 tile of pairs takes its products, every layer and its writes
// (and, with x2 omitted, its mirror image) while it sits in the core's cache, and the
// tiles are shared out over XLA's intra-op threads. XLA's own program of the same
// recursion runs the layers as separate passes and writes every tile into the outputs
// from one thread (docs/kernels.md, "The native fully connected kernel").
//
// Inputs: x1 (n1, d); x2t (d, n2), x2 transposed; id1 (n1), id2 (n2): two points are a
// self-pair iff their ids are equal. Attributes: ops, 5 numbers per layer (0, w2, b2,
// alpha, beta: a Dense, alpha < 0 for the "ntk" parameterization, else the NTK's
// alpha Σ + w2 Θ + beta of the "standard" one; 1, a, b, 0, 0: an ABRelu), coef (the
// angle polynomial's coefficients), sym (x2 is x1: upper tiles only, mirrored).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <thread>
#include <vector>

#include "xla/ffi/api/ffi.h"

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace ffi = xla::ffi;

namespace {

constexpr int B = 64;   // tile side (pairs)
constexpr int KB = 256; // inner-dimension block of the products
#if defined(__AVX512F__)
constexpr int VBYTES = 64, NREG = 16;
#else
constexpr int VBYTES = 32, NREG = 8;
#endif

struct Prog {
  int64_t n_ops;
  const double* ops;
  const double* coef;
  int64_t n_coef;
};

// S[i][j] += sum_k x1[I + i, k0 + k] * xt[k][j]: register-blocked rank-1 updates.
template <typename T>
inline void products(const T* x1, int64_t I, int64_t n1, int64_t d, int64_t k0, int64_t kn,
                     const T (*xt)[B], T (*S)[B]) {
  constexpr int W = VBYTES / sizeof(T);
  typedef T V __attribute__((vector_size(VBYTES)));
  constexpr int CV = 4 < (B / W) ? 4 : (B / W);
  constexpr int RB = NREG / CV;
  for (int c = 0; c < B; c += CV * W) {
    for (int i0 = 0; i0 < B; i0 += RB) {
      const T* xr[RB];
#pragma GCC unroll 16
      for (int r = 0; r < RB; ++r) xr[r] = x1 + std::min<int64_t>(I + i0 + r, n1 - 1) * d + k0;
      V acc[RB][CV];
#pragma GCC unroll 16
      for (int r = 0; r < RB; ++r)
#pragma GCC unroll 16
        for (int v = 0; v < CV; ++v) std::memcpy(&acc[r][v], &S[i0 + r][c + v * W], VBYTES);
      for (int64_t k = 0; k < kn; ++k) {
        V b[CV];
#pragma GCC unroll 16
        for (int v = 0; v < CV; ++v) std::memcpy(&b[v], &xt[k][c + v * W], VBYTES);
#pragma GCC unroll 16
        for (int r = 0; r < RB; ++r) {
          V a = {};
          a += xr[r][k];
#pragma GCC unroll 16
          for (int v = 0; v < CV; ++v) acc[r][v] += a * b[v];
        }
      }
#pragma GCC unroll 16
      for (int r = 0; r < RB; ++r)
#pragma GCC unroll 16
        for (int v = 0; v < CV; ++v) std::memcpy(&S[i0 + r][c + v * W], &acc[r][v], VBYTES);
    }
  }
}

template <typename T, int DEG, bool NTK>
void tile(const T* x1, const T* x2t, const int32_t* id1, const int32_t* id2, const T* Q1,
          const T* Q2, const T* RQ1, const T* RQ2, int64_t n1, int64_t n2, int64_t d,
          const Prog& p, int64_t I, int64_t J, bool sym, T* outk, T* outt) {
  alignas(64) T xt[KB][B];
  alignas(64) T S[B][B];
  alignas(64) T Th[B][B];
  alignas(64) T q2[B], rq2[B];
  alignas(64) int32_t ids2[B];
  const int64_t ni = std::min<int64_t>(B, n1 - I), nj = std::min<int64_t>(B, n2 - J);
  for (int i = 0; i < B; ++i)
    for (int j = 0; j < B; ++j) S[i][j] = T(0);
  for (int64_t k0 = 0; k0 < d; k0 += KB) {
    const int64_t kn = std::min<int64_t>(KB, d - k0);
    for (int64_t k = 0; k < kn; ++k) {
      const T* src = x2t + (k0 + k) * n2 + J;
      if (nj == B) {
        std::memcpy(xt[k], src, B * sizeof(T));
      } else {
        for (int j = 0; j < B; ++j) xt[k][j] = j < nj ? src[j] : T(0);
      }
    }
    products<T>(x1, I, n1, d, k0, kn, xt, S);
  }
  for (int j = 0; j < B; ++j) ids2[j] = j < nj ? id2[J + j] : std::numeric_limits<int32_t>::min();
  const T dd_ = T(d);
  const T half_pi = T(M_PI / 2), pi = T(M_PI);
  T cf[DEG + 1];
  for (int e = 0; e <= DEG; ++e) cf[e] = e < p.n_coef ? T(p.coef[e]) : T(0);
  for (int64_t i = 0; i < ni; ++i) {
    T* s = S[i];
    T* t = Th[i];
#pragma omp simd
    for (int j = 0; j < B; ++j) {
      s[j] /= dd_;
      t[j] = T(0);
    }
  }
  int64_t layer = 0;  // which ABRelu: a row of the per-point tables
  for (int64_t o = 0; o < p.n_ops; ++o) {
    const double* op = p.ops + 5 * o;
    if (op[0] == 0) {
      const T w2 = T(op[1]), b2 = T(op[2]), alpha = T(op[3]), beta = T(op[4]);
      const bool ntk_param = op[3] < 0;
      for (int64_t i = 0; i < ni; ++i) {
        T* s = S[i];
        T* t = Th[i];
        if (ntk_param) {
#pragma omp simd
          for (int j = 0; j < B; ++j) {
            s[j] = w2 * s[j] + b2;
            if (NTK) t[j] = s[j] + w2 * t[j];
          }
        } else {
#pragma omp simd
          for (int j = 0; j < B; ++j) {
            if (NTK) t[j] = alpha * s[j] + w2 * t[j] + beta;
            s[j] = w2 * s[j] + b2;
          }
        }
      }
      continue;
    }
    const double a = op[1], b = op[2];
    const T A = T((a * a + b * b) / 2), c = T((a - b) * (a - b) / (2 * M_PI));
    for (int j = 0; j < B; ++j) {
      q2[j] = j < nj ? Q2[layer * n2 + J + j] : T(1);
      rq2[j] = j < nj ? RQ2[layer * n2 + J + j] : T(1);
    }
    for (int64_t i = 0; i < ni; ++i) {
      T* s = S[i];
      T* t = Th[i];
      const T q1 = Q1[layer * n1 + I + i], rq1 = RQ1[layer * n1 + I + i];
      const int32_t idi = id1[I + i];
#pragma omp simd
      for (int j = 0; j < B; ++j) {
        const T sv = s[j];
        const T prod = q1 * q2[j];
        const T diff = prod - sv * sv;
        T dd;
        if (sizeof(T) == 8) {
          // float64: a difference of a few ulp of q1 q2 is round-off (stax.sin_root)
          dd = diff > T(8) * std::numeric_limits<T>::epsilon() * std::fabs(prod) ? diff : T(0);
        } else {
          dd = diff > T(0) ? diff : T(0);
        }
        const T root = std::sqrt(dd);
        const T rq = rq1 * rq2[j];
        const T sn = root * rq, cs = sv * rq;
        const T acs = std::fabs(cs);
        const T m = sn < acs ? sn : acs;
        const T m2 = m * m;
        T poly = cf[DEG];
#pragma GCC unroll 32
        for (int e = DEG - 1; e >= 0; --e) poly = poly * m2 + cf[e];
        T r = m * poly;
        r = sn >= acs ? half_pi - r : r;
        r = cs < T(0) ? pi - r : r;
        const T factor = A - c * r;
        const bool same = idi == ids2[j];
        T ns = c * root + factor * sv;
        ns = same ? T(0.5) * (A * q1) + T(0.5) * (A * q2[j]) : ns;
        s[j] = ns;
        if (NTK) t[j] = (same ? A : factor) * t[j];
      }
    }
    ++layer;
  }
  for (int64_t i = 0; i < ni; ++i) {
    std::memcpy(outk + (I + i) * n2 + J, S[i], nj * sizeof(T));
    if (NTK) std::memcpy(outt + (I + i) * n2 + J, Th[i], nj * sizeof(T));
  }
  if (sym && I != J) {
    for (int64_t j = 0; j < nj; ++j) {
      T* rk = outk + (J + j) * n2 + I;
      for (int64_t i = 0; i < ni; ++i) rk[i] = S[i][j];
      if (NTK) {
        T* rt = outt + (J + j) * n2 + I;
        for (int64_t i = 0; i < ni; ++i) rt[i] = Th[i][j];
      }
    }
  }
}

// Fresh output pages fault in one 4 KiB page at a time on first touch (~1.4 us each on
// the project's VM: 6-7 ms of a 2048 x 2048 NNGP and NTK call). Asked to back the
// output's whole 2 MiB spans with transparent huge pages, the kernel faults them in
// 2 MiB at a time; it is advice (ignored where THP is off, a no-op for pages already
// there), and only for the output, which is the call's to write.
void advise_huge(void* p, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t H = uintptr_t(1) << 21;
  const uintptr_t lo = (reinterpret_cast<uintptr_t>(p) + H - 1) & ~(H - 1);
  const uintptr_t hi = (reinterpret_cast<uintptr_t>(p) + bytes) & ~(H - 1);
  if (hi > lo) madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_HUGEPAGE);
#else
  (void)p;
  (void)bytes;
#endif
}

// Per point, the variance at the input of each ABRelu layer (row l of q) and 1/sqrt of
// it (0 where it is 0), by the recursion of Dense.kernel and ABRelu.dual_diag: the
// input's mean square over its d entries, then w2 q + b2 per Dense, (a² + b²)/2 q per
// ABRelu. Computed here, in one fixed order, so that a call gives the same numbers
// eagerly and inside any caller's jit, and a point the same numbers as either input
// (the loop over x2's transposed layout is vectorised across points, x1's is not: the
// multiply-adds are fused explicitly so that both round alike).
template <typename T>
void point_tables(const T* x, int64_t x_stride, int64_t k_stride, int64_t n, int64_t d,
                  const Prog& p, T* q, T* rq) {
  for (int64_t i = 0; i < n; ++i) {
    T sq = T(0);
    for (int64_t k = 0; k < d; ++k) {
      const T v = x[i * x_stride + k * k_stride];
      sq = std::fma(v, v, sq);  // fused, stated: the same rounding for both sides' loops
    }
    T v = sq / T(d);
    int64_t layer = 0;
    for (int64_t o = 0; o < p.n_ops; ++o) {
      const double* op = p.ops + 5 * o;
      if (op[0] == 0) {
        v = std::fma(T(op[1]), v, T(op[2]));
      } else {
        q[layer * n + i] = v;
        rq[layer * n + i] = v > T(0) ? std::sqrt(T(1) / v) : T(0);
        v = T((op[1] * op[1] + op[2] * op[2]) / 2) * v;
        ++layer;
      }
    }
  }
}

template <typename T, bool NTK>
void run_all(ffi::ThreadPool& pool, const T* x1, const T* x2t, const int32_t* id1,
             const int32_t* id2, int64_t n1, int64_t n2, int64_t d, Prog p, bool sym,
             T* outk, T* outt) {
  constexpr int DEG = sizeof(T) == 4 ? 7 : 19;
  const int64_t nb1 = (n1 + B - 1) / B, nb2 = (n2 + B - 1) / B;
  const int64_t total = sym ? nb1 * (nb1 + 1) / 2 : nb1 * nb2;
  if (total == 0) return;
  int64_t n_relu = 0;
  for (int64_t o = 0; o < p.n_ops; ++o) n_relu += p.ops[5 * o] != 0;
  std::vector<T> tables(2 * n_relu * (n1 + n2));
  T* Q1 = tables.data();
  T* RQ1 = Q1 + n_relu * n1;
  T* Q2 = RQ1 + n_relu * n1;
  T* RQ2 = Q2 + n_relu * n2;
  point_tables<T>(x1, d, 1, n1, d, p, Q1, RQ1);
  if (sym) {
    std::copy(Q1, Q1 + 2 * n_relu * n1, Q2);
  } else {
    point_tables<T>(x2t, 1, n2, n2, d, p, Q2, RQ2);
  }
  advise_huge(outk, size_t(n1) * size_t(n2) * sizeof(T));
  if (NTK) advise_huge(outt, size_t(n1) * size_t(n2) * sizeof(T));
  struct Shared {
    std::atomic<int64_t> next{0}, done{0};
  };
  auto shared = std::make_shared<Shared>();
  auto work = [=]() {
    for (;;) {
      const int64_t k = shared->next.fetch_add(1, std::memory_order_relaxed);
      if (k >= total) return;  // a late helper touches nothing of the call's buffers
      int64_t bi = 0, bj;
      if (sym) {
        int64_t rem = k;
        while (rem >= nb1 - bi) rem -= nb1 - bi++;
        bj = bi + rem;
      } else {
        bi = k / nb2;
        bj = k % nb2;
      }
      tile<T, DEG, NTK>(x1, x2t, id1, id2, Q1, Q2, RQ1, RQ2, n1, n2, d, p, bi * B, bj * B,
                        sym, outk, outt);
      shared->done.fetch_add(1, std::memory_order_release);
    }
  };
  const int64_t helpers = std::min<int64_t>(pool.num_threads(), total) - 1;
  for (int64_t h = 0; h < helpers; ++h) pool.Schedule([work]() { work(); });
  work();
  // Tiles are claimed one at a time and a claimed tile is always finished, so waiting
  // for the count (not for the helpers) never waits on a helper that has not started.
  while (shared->done.load(std::memory_order_acquire) < total) std::this_thread::yield();
}

template <ffi::DataType DT, bool NTK>
ffi::Error fc_call(ffi::ThreadPool pool, ffi::Buffer<DT> x1, ffi::Buffer<DT> x2t,
                   ffi::Buffer<ffi::S32> id1, ffi::Buffer<ffi::S32> id2,
                   ffi::Span<const double> ops, ffi::Span<const double> coef, bool sym,
                   ffi::Result<ffi::Buffer<DT>> nngp, ffi::Result<ffi::Buffer<DT>> ntk) {
  const auto dims1 = x1.dimensions(), dims2 = x2t.dimensions();
  if (dims1.size() != 2 || dims2.size() != 2 || dims1[1] != dims2[0] || ops.size() % 5 != 0) {
    return ffi::Error::InvalidArgument("fc_arccos: inconsistent shapes or layer table");
  }
  Prog p{int64_t(ops.size() / 5), ops.begin(), coef.begin(), int64_t(coef.size())};
  run_all<ffi::NativeType<DT>, NTK>(pool, x1.typed_data(), x2t.typed_data(), id1.typed_data(),
                                    id2.typed_data(), dims1[0], dims2[1], dims1[1], p, sym,
                                    nngp->typed_data(), NTK ? ntk->typed_data() : nullptr);
  return ffi::Error::Success();
}

template <ffi::DataType DT>
ffi::Error nngp_only(ffi::ThreadPool pool, ffi::Buffer<DT> x1, ffi::Buffer<DT> x2t,
                     ffi::Buffer<ffi::S32> id1, ffi::Buffer<ffi::S32> id2,
                     ffi::Span<const double> ops, ffi::Span<const double> coef, bool sym,
                     ffi::Result<ffi::Buffer<DT>> nngp) {
  return fc_call<DT, false>(pool, x1, x2t, id1, id2, ops, coef, sym, nngp, nngp);
}

}  // namespace

#define NTK_BAYES_ARGS(DT)                                                               \
  ffi::Ffi::Bind()                                                                       \
      .Ctx<ffi::ThreadPool>()                                                            \
      .Arg<ffi::Buffer<DT>>()                                                            \
      .Arg<ffi::Buffer<DT>>()                                                            \
      .Arg<ffi::Buffer<ffi::S32>>()                                                      \
      .Arg<ffi::Buffer<ffi::S32>>()                                                      \
      .Attr<ffi::Span<const double>>("ops")                                              \
      .Attr<ffi::Span<const double>>("coef")                                             \
      .Attr<bool>("sym")                                                                 \
      .Ret<ffi::Buffer<DT>>()

namespace {
constexpr auto both_f32 = fc_call<ffi::F32, true>;
constexpr auto both_f64 = fc_call<ffi::F64, true>;
}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(NtkBayesFcBothF32, both_f32,
                              NTK_BAYES_ARGS(ffi::F32).Ret<ffi::Buffer<ffi::F32>>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(NtkBayesFcBothF64, both_f64,
                              NTK_BAYES_ARGS(ffi::F64).Ret<ffi::Buffer<ffi::F64>>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(NtkBayesFcNngpF32, nngp_only<ffi::F32>, NTK_BAYES_ARGS(ffi::F32));
XLA_FFI_DEFINE_HANDLER_SYMBOL(NtkBayesFcNngpF64, nngp_only<ffi::F64>, NTK_BAYES_ARGS(ffi::F64));
