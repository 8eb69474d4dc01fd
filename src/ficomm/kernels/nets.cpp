// Fused CPU kernels of ficomm/nets.py, forward and backward, single-threaded:
//   the Q-net: a1 = relu(x W1 + b1); gi = a1 W_ih + b_ih; GRU step (gate order r, z, n, as
//   torch.nn.GRUCell) from h_t to h_{t+1}; q_t = h_{t+1} W2 + b2;
//   the message net: relu(relu(obs W1 + b1) W2 + b2) W3 + b3.
// Compiled at first use by ficomm/kernels/__init__.py with the machine's C++ compiler
// (-O3 -march=native); nothing here depends on torch.
//
// Why: the recurrence is ~100 sequential steps of small matmuls and elementwise gate ops; in
// torch every one is a separate dispatch and a separate pass over multi-MB tensors. Here each
// step's rows stay in L1/L2: register-blocked matmuls, then one pass over the gates. The
// weight gradients are left to large matmuls in torch over the saved activations. The math
// is that of the torch path in nets.py (results agree to rounding; tests/learner checks it).
//
// Q-net layouts (row-major, contiguous), G owners, T steps, R rows per step, F inputs, H hidden:
//   x     (G, T, R, F)    Q-net inputs          h0    (G, R, H)     initial hidden state
//   w1    (G, F, H)       fc1 (y = x w1 + b1)   b1    (G, H)
//   wih, whh (G, H, 3H)   GRU input/recurrent weights, gates [r z n];  bih, bhh (G, 3H)
//   wiht, whht (G, 3H, H) their transposes (backward); w2t (G, A, H), b2 (G, A): the output
//   layer (transposed);  q (G, T, R, A) Q-values;  dq (G, T, R, A) dL/dq
//   hall  (G, T+1, R, H)  hidden states h_0..h_T
//   a1    (G, T, R, H)    relu(x w1 + b1), saved for backward
//   gates (G, T, R, 4H)   saved for backward: [r z n gh_n], gh_n = (h whh + bhh)_n
//   dxm   (G, T, R, C)    dL/dx for the last C input columns (the messages)
#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__AVX512F__)
#define FI_VBYTES 64
#elif defined(__AVX__)
#define FI_VBYTES 32
#else
#define FI_VBYTES 16
#endif

typedef float vf __attribute__((vector_size(FI_VBYTES)));
typedef double vd __attribute__((vector_size(FI_VBYTES)));
typedef int32_t vi32 __attribute__((vector_size(FI_VBYTES)));

template <typename T> struct VT;
template <> struct VT<float> {
  typedef vf v;
  static constexpr int N = FI_VBYTES / 4;
};
template <> struct VT<double> {
  typedef vd v;
  static constexpr int N = FI_VBYTES / 8;
};

template <typename T> static inline typename VT<T>::v ld(const T* p) {
  typename VT<T>::v v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <typename T> static inline void st(T* p, typename VT<T>::v v) {
  std::memcpy(p, &v, sizeof v);
}

// ---------------------------------------------------------------------------------- matmul
// C (M x N) = I + A (M x K) B (K x N). A[i][k] is A[i * ars + k * acs] (acs = 1: row-major;
// ars = 1: a transposed operand, as in the weight gradients X^T dY); I has row stride ldi
// (0: one row broadcast, a bias; I == C: accumulate).
template <typename T, int MR, int NV>
static inline void block(int K, const T* A, long ars, long acs, const T* B, long ldb, T* C,
                         long ldc, const T* I, long ldi) {
  typedef typename VT<T>::v V;
  constexpr int W = VT<T>::N;
  V acc[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) acc[i][v] = ld<T>(I + i * ldi + v * W);
  for (int k = 0; k < K; ++k) {
    V b[NV];
    for (int v = 0; v < NV; ++v) b[v] = ld<T>(B + k * ldb + v * W);
    for (int i = 0; i < MR; ++i) {
      const T a = A[i * ars + k * acs];
      for (int v = 0; v < NV; ++v) acc[i][v] += a * b[v];
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) st<T>(C + i * ldc + v * W, acc[i][v]);
}

template <typename T, int NV>
static inline void rows(int M, int K, const T* A, long ars, long acs, const T* B, long ldb, T* C,
                        long ldc, const T* I, long ldi) {
  constexpr int MR = 4;
  int i = 0;
  for (; i + MR <= M; i += MR)
    block<T, MR, NV>(K, A + i * ars, ars, acs, B, ldb, C + i * ldc, ldc, I + i * ldi, ldi);
  for (; i < M; ++i)
    block<T, 1, NV>(K, A + i * ars, ars, acs, B, ldb, C + i * ldc, ldc, I + i * ldi, ldi);
}

template <typename T>
static void gemm_s(int M, int N, int K, const T* A, long ars, long acs, const T* B, long ldb,
                   T* C, long ldc, const T* I, long ldi) {
  constexpr int W = VT<T>::N;
  constexpr int NV = FI_VBYTES == 64 ? 4 : 2;  // accumulators: 4 x NV vector registers
  int j = 0;
  for (; j + NV * W <= N; j += NV * W)
    rows<T, NV>(M, K, A, ars, acs, B + j, ldb, C + j, ldc, I + j, ldi);
  for (; j + W <= N; j += W) rows<T, 1>(M, K, A, ars, acs, B + j, ldb, C + j, ldc, I + j, ldi);
  for (; j < N; ++j)
    for (int i = 0; i < M; ++i) {
      T c = I[i * ldi + j];
      for (int k = 0; k < K; ++k) c += A[i * ars + k * acs] * B[k * ldb + j];
      C[i * ldc + j] = c;
    }
}

// row-major A with row stride lda
template <typename T>
static inline void gemm(int M, int N, int K, const T* A, long lda, const T* B, long ldb, T* C,
                        long ldc, const T* I, long ldi) {
  gemm_s<T>(M, N, K, A, lda, 1, B, ldb, C, ldc, I, ldi);
}

// C (M x N) += A^T B for A (K x M, row stride lda): a weight gradient over K rows
template <typename T>
static inline void gemm_acc_at(int M, int N, int K, const T* A, long lda, const T* B, long ldb,
                               T* C) {
  gemm_s<T>(M, N, K, A, 1, lda, B, ldb, C, N, C, N);
}

// A narrow layer (a few outputs: Q-values, messages, the message columns of dL/dx), its
// weight zero-padded to whole vectors once so that the register-blocked matmul applies
// (dot products along K would end in a horizontal sum per output).
template <typename T> struct Narrow {
  int K, N, Np;
  T *w, *b, *out;  // w (K x Np), b (Np), out: M x Np rows before the first N are kept
};

// Bt (N x K): the transposed weight; bias may be null (zeros). buf: (K + 1 + M) * Np values
// for outputs of up to M rows, Np = N rounded up to the vector width (at most N + 16).
template <typename T>
static Narrow<T> narrow_pad(int K, int N, const T* Bt, const T* bias, T* buf) {
  constexpr int W = VT<T>::N;
  const int Np = (N + W - 1) / W * W;
  Narrow<T> L{K, N, Np, buf, buf + (long)K * Np, buf + (long)(K + 1) * Np};
  for (int k = 0; k < K; ++k)
    for (int j = 0; j < Np; ++j) L.w[(long)k * Np + j] = j < N ? Bt[(long)j * K + k] : T(0);
  for (int j = 0; j < Np; ++j) L.b[j] = j < N && bias ? bias[j] : T(0);
  return L;
}

// C (M x N) = b + A (M x K) w, for M up to the M given to narrow_pad
template <typename T>
static void narrow_apply(const Narrow<T>& L, int M, const T* A, long lda, T* C, long ldc) {
  gemm<T>(M, L.Np, L.K, A, lda, L.w, L.Np, L.out, L.Np, L.b, 0);
  for (int i = 0; i < M; ++i) std::memcpy(C + i * ldc, L.out + (long)i * L.Np, sizeof(T) * L.N);
}

// ------------------------------------------------------------------------------ activations
static inline vf sel(vi32 m, vf a, vf b) { return (vf)(((vi32)a & m) | ((vi32)b & ~m)); }

// exp for float lanes: Cephes' expf (range reduction by ln 2, degree-6 polynomial), ~1 ulp.
static inline vf vexp(vf x) {
  const vf hi = vf{} + 88.0f, lo = vf{} + -87.0f, one = vf{} + 1.0f;
  x = sel(x > hi, hi, x);
  x = sel(x < lo, lo, x);
  vf fx = x * 1.44269504088896341f + 0.5f;
  vf tr = __builtin_convertvector(__builtin_convertvector(fx, vi32), vf);
  fx = tr - sel(tr > fx, one, vf{});  // floor
  x = x - fx * 0.693359375f + fx * 2.12194440e-4f;
  vf z = x * x;
  vf y = vf{} + 1.9875691500E-4f;
  y = y * x + 1.3981999507E-3f;
  y = y * x + 8.3334519073E-3f;
  y = y * x + 4.1665795894E-2f;
  y = y * x + 1.6666665459E-1f;
  y = y * x + 5.0000001201E-1f;
  y = y * z + x + 1.0f;
  vi32 e = (__builtin_convertvector(fx, vi32) + 127) << 23;
  return y * (vf)e;
}

static inline vf vsigmoid(vf x) { return 1.0f / (1.0f + vexp(-x)); }

// tanh for float lanes: Cephes' tanhf (odd polynomial below 0.625, exp form above).
static inline vf vtanh(vf x) {
  const vi32 sign = vi32{} + INT32_MIN;
  vf ax = (vf)((vi32)x & ~sign);
  vf z = x * x;
  vf p = vf{} + -5.70498872745E-3f;
  p = p * z + 2.06390887954E-2f;
  p = p * z - 5.37397155531E-2f;
  p = p * z + 1.33314422036E-1f;
  p = p * z - 3.33332819422E-1f;
  vf small = p * z * x + x;
  vf big = 1.0f - 2.0f / (vexp(ax + ax) + 1.0f);
  big = (vf)((vi32)big | ((vi32)x & sign));
  return sel(ax < (vf{} + 0.625f), small, big);
}

// double lanes (tests and float64 runs): the C library, exact to rounding
static inline vd vsigmoid(vd x) {
  for (int l = 0; l < VT<double>::N; ++l) x[l] = 1.0 / (1.0 + std::exp(-x[l]));
  return x;
}
static inline vd vtanh(vd x) {
  for (int l = 0; l < VT<double>::N; ++l) x[l] = std::tanh(x[l]);
  return x;
}

// ----------------------------------------------------------------------------------- GRU
// Each row is processed in W-lane chunks; a ragged last chunk goes through a zero-padded copy.
template <typename T, int NIN, int NOUT, typename F>
static inline void lanes(int H, const T* const (&in)[NIN], T* const (&out)[NOUT], F f) {
  typedef typename VT<T>::v V;
  constexpr int W = VT<T>::N;
  int j = 0;
  for (; j + W <= H; j += W) {
    V a[NIN], o[NOUT];
    for (int q = 0; q < NIN; ++q) a[q] = ld<T>(in[q] + j);
    f(a, o);
    for (int q = 0; q < NOUT; ++q) st<T>(out[q] + j, o[q]);
  }
  if (j < H) {
    const int n = H - j;
    T buf[W] = {};
    V a[NIN], o[NOUT];
    for (int q = 0; q < NIN; ++q) {
      std::memcpy(buf, in[q] + j, n * sizeof(T));
      a[q] = ld<T>(buf);
    }
    f(a, o);
    for (int q = 0; q < NOUT; ++q) {
      st<T>(buf, o[q]);
      std::memcpy(out[q] + j, buf, n * sizeof(T));
    }
  }
}

template <typename T> static inline void relu(T* x, long n) {
  for (long i = 0; i < n; ++i) x[i] = x[i] > T(0) ? x[i] : T(0);
}

// acc (n) += sum of the R rows of x (R x n, row stride ld)
template <typename T> static inline void add_rows(T* acc, const T* x, int R, int n, long ld) {
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < n; ++j) acc[j] += x[i * ld + j];
}

template <typename T>
static void forward(const int* dims, const T* x, const T* h0, const T* w1, const T* b1,
                    const T* wih, const T* bih, const T* whh, const T* bhh, const T* w2t,
                    const T* b2, T* q, T* hall, T* a1, T* gates, T* scratch) {
  typedef typename VT<T>::v V;
  const int G = dims[0], T_ = dims[1], R = dims[2], F = dims[3], H = dims[4], A = dims[5];
  const long H3 = 3L * H, H4 = 4L * H;
  T* sa1 = scratch;               // R x H   (when a1 is not kept)
  T* sgi = scratch + R * H;       // R x 3H
  T* sgh = scratch + 4L * R * H;  // R x 3H
  T* nbuf = scratch + 7L * R * H;  // the padded output layer: (H + 1 + R) x (A + 16)
  for (int g = 0; g < G; ++g) {
    const T *w1g = w1 + (long)g * F * H, *b1g = b1 + (long)g * H;
    const T *wihg = wih + g * H * H3, *bihg = bih + g * H3;
    const T *whhg = whh + g * H * H3, *bhhg = bhh + g * H3;
    const Narrow<T> out = narrow_pad<T>(H, A, w2t + (long)g * A * H, b2 + (long)g * A, nbuf);
    T* hg = hall + (long)g * (T_ + 1) * R * H;
    std::memcpy(hg, h0 + (long)g * R * H, sizeof(T) * R * H);
    for (int t = 0; t < T_; ++t) {
      const long off = ((long)g * T_ + t) * R;  // first row of (g, t)
      const T* hp = hg + (long)t * R * H;
      T* hn = hg + (long)(t + 1) * R * H;
      T* a1t = a1 ? a1 + off * H : sa1;
      gemm<T>(R, H, F, x + off * F, F, w1g, H, a1t, H, b1g, 0);
      relu(a1t, (long)R * H);
      gemm<T>(R, 3 * H, H, a1t, H, wihg, H3, sgi, H3, bihg, 0);
      gemm<T>(R, 3 * H, H, hp, H, whhg, H3, sgh, H3, bhhg, 0);
      for (int i = 0; i < R; ++i) {
        const T* xi = sgi + i * H3;
        const T* yi = sgh + i * H3;
        const T* in[7] = {xi, xi + H, xi + 2 * H, yi, yi + H, yi + 2 * H, hp + i * H};
        if (gates) {
          T* s = gates + (off + i) * H4;
          T* const out[5] = {hn + i * H, s, s + H, s + 2 * H, s + 3 * H};
          lanes<T, 7, 5>(H, in, out, [](const V* a, V* o) {
            V r = vsigmoid(a[0] + a[3]), z = vsigmoid(a[1] + a[4]);
            V n = vtanh(a[2] + r * a[5]);
            o[0] = n + z * (a[6] - n);
            o[1] = r, o[2] = z, o[3] = n, o[4] = a[5];
          });
        } else {
          T* const out[1] = {hn + i * H};
          lanes<T, 7, 1>(H, in, out, [](const V* a, V* o) {
            V r = vsigmoid(a[0] + a[3]), z = vsigmoid(a[1] + a[4]);
            V n = vtanh(a[2] + r * a[5]);
            o[0] = n + z * (a[6] - n);
          });
        }
      }
      narrow_apply<T>(out, R, hn, H, q + off * A, A);
    }
  }
}

template <typename T>
static void backward(const int* dims, const T* dq, const T* x, const T* hall, const T* a1,
                     const T* gates, const T* w1, const T* w2t, const T* wiht, const T* whht,
                     T* dxm, T* dh0, T* dw1, T* db1, T* dwih, T* dbih, T* dwhh, T* dbhh,
                     T* scratch) {
  typedef typename VT<T>::v V;
  const int G = dims[0], T_ = dims[1], R = dims[2], F = dims[3], H = dims[4], A = dims[5];
  const int C = dims[6];  // input columns whose gradient is wanted: the last C of x
  const long H3 = 3L * H, H4 = 4L * H, RH = (long)R * H;
  T* carry = scratch;        // dL/dh_t through step t+1 (R x H)
  T* gz = carry + RH;        // g * z: the direct path from h_{t+1} to h_t
  T* gsum = gz + RH;         // dL/dh_{t+1}: from q_t and from step t+1
  T* d1 = gsum + RH;         // dL/d(x w1 + b1) at step t
  T* sgi = d1 + RH;          // dL/d(gi_t), R x 3H
  T* sgh = sgi + 3 * RH;     // dL/d(gh_t), R x 3H
  T* zero = sgh + 3 * RH;    // zeros: the init row of a plain matmul (3H long)
  T* nbuf = zero + H3;       // the padded message columns of w1: (H + 1 + R) x (C + 16)
  std::memset(zero, 0, sizeof(T) * H3);
  std::memset(dw1, 0, sizeof(T) * G * F * H);
  std::memset(dwih, 0, sizeof(T) * G * H * H3);
  std::memset(dwhh, 0, sizeof(T) * G * H * H3);
  std::memset(db1, 0, sizeof(T) * G * H);
  std::memset(dbih, 0, sizeof(T) * G * H3);
  std::memset(dbhh, 0, sizeof(T) * G * H3);
  for (int g = 0; g < G; ++g) {
    const T *wihtg = wiht + g * H3 * H, *whhtg = whht + g * H3 * H;
    const T *w2tg = w2t + (long)g * A * H, *w1g = w1 + (long)g * F * H;
    T *dw1g = dw1 + (long)g * F * H, *dwihg = dwih + g * H * H3, *dwhhg = dwhh + g * H * H3;
    const T* hg = hall + (long)g * (T_ + 1) * R * H;
    Narrow<T> dxl{};
    if (C > 0) dxl = narrow_pad<T>(H, C, w1g + (long)(F - C) * H, nullptr, nbuf);
    std::memset(carry, 0, sizeof(T) * RH);
    for (int t = T_ - 1; t >= 0; --t) {
      const long off = ((long)g * T_ + t) * R;
      const T* hp = hg + (long)t * RH;
      gemm<T>(R, H, A, dq + off * A, A, w2tg, H, gsum, H, carry, H);  // through q = h w2 + b2
      for (int i = 0; i < R; ++i) {
        const T* s = gates + (off + i) * H4;
        T* di = sgi + i * H3;
        T* dr = sgh + i * H3;
        const T* in[6] = {gsum + i * H, hp + i * H, s, s + H, s + 2 * H, s + 3 * H};
        T* const out[5] = {di, di + H, di + 2 * H, dr + 2 * H, gz + i * H};
        lanes<T, 6, 5>(H, in, out, [](const V* a, V* o) {
          const T one = 1;
          V gg = a[0], r = a[2], z = a[3], n = a[4];
          V dan = gg * (one - z) * (one - n * n);
          V dar = dan * a[5] * r * (one - r);
          V daz = gg * (a[1] - n) * z * (one - z);
          o[0] = dar, o[1] = daz, o[2] = dan, o[3] = dan * r, o[4] = gg * z;
        });
        // r and z pre-activations are sums gi + gh: the same gradient on both sides
        std::memcpy(dr, di, sizeof(T) * 2 * H);
      }
      add_rows(dbih + g * H3, sgi, R, 3 * H, H3);
      add_rows(dbhh + g * H3, sgh, R, 3 * H, H3);
      gemm<T>(R, H, 3 * H, sgh, H3, whhtg, H, carry, H, gz, H);
      gemm_acc_at<T>(H, 3 * H, R, hp, H, sgh, H3, dwhhg);
      gemm_acc_at<T>(H, 3 * H, R, a1 + off * H, H, sgi, H3, dwihg);
      // back through gi = a1 W_ih + b_ih and a1 = relu(x W1 + b1)
      gemm<T>(R, H, 3 * H, sgi, H3, wihtg, H, d1, H, zero, 0);
      const T* a1t = a1 + off * H;
      for (long k = 0; k < RH; ++k) d1[k] = a1t[k] > T(0) ? d1[k] : T(0);
      add_rows(db1 + (long)g * H, d1, R, H, H);
      gemm_acc_at<T>(F, H, R, x + off * F, F, d1, H, dw1g);
      if (C > 0) narrow_apply<T>(dxl, R, d1, H, dxm + off * C, C);
    }
    std::memcpy(dh0 + (long)g * RH, carry, sizeof(T) * RH);
  }
}

// Message net: m = relu(relu(obs w1 + b1) w2 + b2) w3 + b3, rows in chunks that stay in L1.
// dims = {G, N, O, M, D}: owners, rows per owner, obs size, hidden width, message size.
constexpr int MSG_CHUNK = 64;

template <typename T>
static void msg_forward(const int* dims, const T* obs, const T* w1, const T* b1, const T* w2,
                        const T* b2, const T* w3t, const T* b3, T* msg, T* a1, T* a2,
                        T* scratch) {
  const int G = dims[0], N = dims[1], O = dims[2], M = dims[3], D = dims[4];
  T* nbuf = scratch + 2L * MSG_CHUNK * M;  // the padded output layer: (M + 1 + CHUNK) x (D + 16)
  for (int g = 0; g < G; ++g) {
    const T *w1g = w1 + (long)g * O * M, *w2g = w2 + (long)g * M * M;
    const Narrow<T> out =
        narrow_pad<T>(M, D, w3t + (long)g * D * M, b3 + (long)g * D, nbuf);
    for (int i0 = 0; i0 < N; i0 += MSG_CHUNK) {
      const int rows = N - i0 < MSG_CHUNK ? N - i0 : MSG_CHUNK;
      const long off = (long)g * N + i0;
      T* h1 = a1 ? a1 + off * M : scratch;
      T* h2 = a2 ? a2 + off * M : scratch + MSG_CHUNK * M;
      gemm<T>(rows, M, O, obs + off * O, O, w1g, M, h1, M, b1 + (long)g * M, 0);
      relu(h1, (long)rows * M);
      gemm<T>(rows, M, M, h1, M, w2g, M, h2, M, b2 + (long)g * M, 0);
      relu(h2, (long)rows * M);
      narrow_apply<T>(out, rows, h2, M, msg + off * D, D);
    }
  }
}

// Gradients of the weights w1, w2 and of the three biases (w3's, a narrow one, is left to
// torch); the rows are processed in chunks that stay in L1.
template <typename T>
static void msg_backward(const int* dims, const T* dmsg, const T* obs, const T* a1, const T* a2,
                         const T* w2t, const T* w3t, T* dw1, T* dw2, T* db1, T* db2, T* db3,
                         T* scratch) {
  const int G = dims[0], N = dims[1], O = dims[2], M = dims[3], D = dims[4];
  T* zero = scratch;
  T* d2 = zero + M;
  T* d1 = d2 + (long)MSG_CHUNK * M;
  std::memset(zero, 0, sizeof(T) * M);
  std::memset(dw1, 0, sizeof(T) * G * O * M);
  std::memset(dw2, 0, sizeof(T) * G * M * M);
  std::memset(db1, 0, sizeof(T) * G * M);
  std::memset(db2, 0, sizeof(T) * G * M);
  std::memset(db3, 0, sizeof(T) * G * D);
  for (int g = 0; g < G; ++g) {
    const T *w2g = w2t + (long)g * M * M, *w3g = w3t + (long)g * D * M;
    for (int i0 = 0; i0 < N; i0 += MSG_CHUNK) {
      const int rows = N - i0 < MSG_CHUNK ? N - i0 : MSG_CHUNK;
      const long off = (long)g * N + i0;
      add_rows(db3 + (long)g * D, dmsg + off * D, rows, D, D);
      gemm<T>(rows, M, D, dmsg + off * D, D, w3g, M, d2, M, zero, 0);
      const T* h2 = a2 + off * M;
      for (long k = 0; k < (long)rows * M; ++k) d2[k] = h2[k] > T(0) ? d2[k] : T(0);
      add_rows(db2 + (long)g * M, d2, rows, M, M);
      const T* h1 = a1 + off * M;
      gemm_acc_at<T>(M, M, rows, h1, M, d2, M, dw2 + (long)g * M * M);
      gemm<T>(rows, M, M, d2, M, w2g, M, d1, M, zero, 0);
      for (long k = 0; k < (long)rows * M; ++k) d1[k] = h1[k] > T(0) ? d1[k] : T(0);
      add_rows(db1 + (long)g * M, d1, rows, M, M);
      gemm_acc_at<T>(O, M, rows, obs + off * O, O, d1, M, dw1 + (long)g * O * M);
    }
  }
}

// One acting step of every agent for B episodes (ficomm.rollout.Policy): the messages of
// the current observations, the Q-net input, one GRU step, Q-values.
// dims = {G, k, B, O, A, H, M, D, F, NB}; n = G k agents; M = 0: no message net.
// blocks: NB triples (kind, first column, width), the Q-net input layout computed in Python
// (ficomm.methods.Layout.q_input_blocks); kind is the index in methods.BLOCK_KINDS:
enum InputBlock { OBS, LAST_ACTION, AGENT_ID, OTHERS_MESSAGES, OWN_MESSAGE };
// obs (B, n, O); last (B, n) last actions (-1: none yet); h (G, k B, H), rows (j, b) for
// agent g k + j, updated in place; q (B, n, A). p: 14 parameters in their torch layouts
// (msg w1 b1 w2 b2 w3 b3, then q w1 b1 w_ih b_ih w_hh b_hh w2 b2).
template <typename T>
static void policy_step(const int* d, const int* blocks, const T* obs, const int* last, T* h,
                        T* q, const T* const* p, T* scratch) {
  typedef typename VT<T>::v V;
  const int G = d[0], k = d[1], B = d[2], O = d[3], A = d[4], H = d[5], M = d[6], D = d[7];
  const int F = d[8], NB = d[9];
  const int n = G * k, R = k * B;
  const long H3 = 3L * H;
  T* msgs = scratch;                         // (B, n, D)
  T* x = msgs + (long)B * n * D;             // (R, F)
  T* t1 = x + (long)R * F;                   // (R, max(M, H))
  T* t2 = t1 + (long)R * (M > H ? M : H);    // (R, M)
  T* gi = t2 + (long)R * M;                  // (R, 3H)
  T* gh = gi + R * H3;                       // (R, 3H)
  T* out = gh + R * H3;                      // (R, max(D, A))
  auto row_obs = [&](int g, int r) { return obs + ((long)(r % B) * n + g * k + r / B) * O; };
  if (M > 0)
    for (int g = 0; g < G; ++g) {
      for (int r = 0; r < R; ++r) std::memcpy(x + (long)r * O, row_obs(g, r), sizeof(T) * O);
      gemm<T>(R, M, O, x, O, p[0] + (long)g * O * M, M, t1, M, p[1] + (long)g * M, 0);
      relu(t1, (long)R * M);
      gemm<T>(R, M, M, t1, M, p[2] + (long)g * M * M, M, t2, M, p[3] + (long)g * M, 0);
      relu(t2, (long)R * M);
      gemm<T>(R, D, M, t2, M, p[4] + (long)g * M * D, D, out, D, p[5] + (long)g * D, 0);
      for (int r = 0; r < R; ++r)
        std::memcpy(msgs + ((long)(r % B) * n + g * k + r / B) * D, out + (long)r * D,
                    sizeof(T) * D);
    }
  for (int g = 0; g < G; ++g) {
    for (int r = 0; r < R; ++r) {
      const int b = r % B, i = g * k + r / B;
      T* xr = x + (long)r * F;
      for (int blk = 0; blk < NB; ++blk) {
        T* c = xr + blocks[3 * blk + 1];
        const int w = blocks[3 * blk + 2];
        switch (blocks[3 * blk]) {
          case OBS:
            std::memcpy(c, row_obs(g, r), sizeof(T) * w);
            break;
          case LAST_ACTION:
            for (int a = 0; a < w; ++a) c[a] = T(a == last[b * n + i]);
            break;
          case AGENT_ID:
            for (int j = 0; j < w; ++j) c[j] = T(j == i);
            break;
          case OTHERS_MESSAGES:  // ascending sender order
            for (int j = 0; j < n; ++j)
              if (j != i) {
                std::memcpy(c, msgs + ((long)b * n + j) * D, sizeof(T) * D);
                c += D;
              }
            break;
          case OWN_MESSAGE:
            std::memcpy(c, msgs + ((long)b * n + i) * D, sizeof(T) * D);
            break;
        }
      }
    }
    T* hg = h + (long)g * R * H;
    gemm<T>(R, H, F, x, F, p[6] + (long)g * F * H, H, t1, H, p[7] + (long)g * H, 0);
    relu(t1, (long)R * H);
    gemm<T>(R, 3 * H, H, t1, H, p[8] + g * H * H3, H3, gi, H3, p[9] + g * H3, 0);
    gemm<T>(R, 3 * H, H, hg, H, p[10] + g * H * H3, H3, gh, H3, p[11] + g * H3, 0);
    for (int r = 0; r < R; ++r) {
      const T* xi = gi + r * H3;
      const T* yi = gh + r * H3;
      const T* in[7] = {xi, xi + H, xi + 2 * H, yi, yi + H, yi + 2 * H, hg + (long)r * H};
      T* const o1[1] = {hg + (long)r * H};  // in place: each lane reads h before writing it
      lanes<T, 7, 1>(H, in, o1, [](const V* a, V* o) {
        V rr = vsigmoid(a[0] + a[3]), z = vsigmoid(a[1] + a[4]);
        V nn = vtanh(a[2] + rr * a[5]);
        o[0] = nn + z * (a[6] - nn);
      });
    }
    gemm<T>(R, A, H, hg, H, p[12] + (long)g * H * A, A, out, A, p[13] + (long)g * A, 0);
    for (int r = 0; r < R; ++r)
      std::memcpy(q + ((long)(r % B) * n + g * k + r / B) * A, out + (long)r * A, sizeof(T) * A);
  }
}

// Q-net dims = {G, T, R, F, H, A, C}; see the layouts at the top. forward: a1 and gates may be
// null (no backward to come). backward: the gradients of w1, W_ih, W_hh and the three biases
// (w2's, a narrow one, is left to torch), dh0, and dxm (G, T, R, C) of the last C input
// columns (C = 0: none). Message net dims = {G, N, O, M, D}.
extern "C" {
int ficomm_qnet_abi() { return 8; }
int ficomm_qnet_vector_bytes() { return FI_VBYTES; }
#define FI_EXPORT(S, T)                                                                         \
  void ficomm_qnet_forward_##S(const int* d, const T* x, const T* h0, const T* w1, const T* b1, \
                               const T* wih, const T* bih, const T* whh, const T* bhh,          \
                               const T* w2t, const T* b2, T* q, T* hall, T* a1, T* gates,       \
                               T* sc) {                                                         \
    forward<T>(d, x, h0, w1, b1, wih, bih, whh, bhh, w2t, b2, q, hall, a1, gates, sc);          \
  }                                                                                             \
  void ficomm_qnet_backward_##S(const int* d, const T* dq, const T* x, const T* hall,           \
                                const T* a1, const T* gates, const T* w1, const T* w2t,         \
                                const T* wiht, const T* whht, T* dxm, T* dh0, T* dw1, T* db1,   \
                                T* dwih, T* dbih, T* dwhh, T* dbhh, T* sc) {                    \
    backward<T>(d, dq, x, hall, a1, gates, w1, w2t, wiht, whht, dxm, dh0, dw1, db1, dwih, dbih, \
                dwhh, dbhh, sc);                                                                \
  }                                                                                             \
  void ficomm_msg_forward_##S(const int* d, const T* obs, const T* w1, const T* b1, const T* w2, \
                              const T* b2, const T* w3t, const T* b3, T* msg, T* a1, T* a2,     \
                              T* sc) {                                                          \
    msg_forward<T>(d, obs, w1, b1, w2, b2, w3t, b3, msg, a1, a2, sc);                           \
  }                                                                                             \
  void ficomm_msg_backward_##S(const int* d, const T* dmsg, const T* obs, const T* a1,          \
                               const T* a2, const T* w2t, const T* w3t, T* dw1, T* dw2, T* db1, \
                               T* db2, T* db3, T* sc) {                                         \
    msg_backward<T>(d, dmsg, obs, a1, a2, w2t, w3t, dw1, dw2, db1, db2, db3, sc);               \
  }
FI_EXPORT(f32, float)
FI_EXPORT(f64, double)
void ficomm_policy_step_f32(const int* d, const int* blocks, const float* obs, const int* last,
                            float* h, float* q, const float* const* params, float* scratch) {
  policy_step<float>(d, blocks, obs, last, h, q, params, scratch);
}
}
