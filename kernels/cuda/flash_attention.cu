// Flash-style attention in float32 (Dao et al.'s tiling with an online softmax, written plainly
// for CUDA cores): the (Tq, Tk) score matrix never exists in memory. The forward saves only the
// row log-sum-exp; the backward recomputes the probabilities tile by tile from it.
// Reference and derivation: kernels/attention.py.
//
// Shapes: q (B, H, Tq, hs), k and v (B, H, Tk, hs), read through strides (in elements, last axis
// contiguous), so views of a (B, T, 3C) projection need no copy. out, dout, dq, dk, dv are
// contiguous. Causal masks are bottom-right aligned: query i sees key j iff j <= i + Tk - Tq.
//
// Thread mapping: a block of FLASH_THREADS threads owns FLASH_THREADS / G rows (query rows in
// the forward and for dq, key rows for dk/dv). G consecutive lanes share a row, each holding 32 of
// its head dims in registers (hs <= 32 G, zero-padded), and combine dot products with G-lane
// shuffles. The other operand streams through shared memory in tiles of FLASH_TILE rows that every
// thread of the block reads (broadcast reads, 16 bytes at a time).
//
// grid = (B * H, row blocks); blockIdx.x is the (batch, head) pair.

#define FLASH_THREADS 128
#define FLASH_TILE 32

struct Strides {  // element strides of a (B, H, T, hs) operand over B, H and T
    long long b, h, t;
};

template <int G>
__device__ __forceinline__ float group_sum(float v) {
#pragma unroll
    for (int offset = G / 2; offset > 0; offset >>= 1) v += __shfl_xor_sync(FULL_MASK, v, offset);
    return v;
}

// a . s over this thread's 32 dims; four partial sums keep four FMA chains in flight.
__device__ __forceinline__ float dot32(const float (&a)[32], const float* s) {
    const float4* s4 = reinterpret_cast<const float4*>(s);
    float x = 0.f, y = 0.f, z = 0.f, w = 0.f;
#pragma unroll
    for (int d = 0; d < 8; ++d) {
        float4 t = s4[d];
        x += a[4 * d] * t.x;
        y += a[4 * d + 1] * t.y;
        z += a[4 * d + 2] * t.z;
        w += a[4 * d + 3] * t.w;
    }
    return (x + y) + (z + w);
}

// acc += alpha * s over this thread's 32 dims.
__device__ __forceinline__ void axpy32(float (&acc)[32], float alpha, const float* s) {
    const float4* s4 = reinterpret_cast<const float4*>(s);
#pragma unroll
    for (int d = 0; d < 8; ++d) {
        float4 t = s4[d];
        acc[4 * d] += alpha * t.x;
        acc[4 * d + 1] += alpha * t.y;
        acc[4 * d + 2] += alpha * t.z;
        acc[4 * d + 3] += alpha * t.w;
    }
}

// Rows [r0, r0 + FLASH_TILE) of a (T, hs) matrix with row stride `st` into tile, zero-padded past
// T and hs. Consecutive threads read consecutive columns (coalesced).
template <int G>
__device__ __forceinline__ void load_tile(float (*tile)[32 * G], const float* src, long long st,
                                          int r0, int T, int hs) {
    for (int idx = threadIdx.x; idx < FLASH_TILE * 32 * G; idx += FLASH_THREADS) {
        int r = idx / (32 * G), c = idx % (32 * G);
        tile[r][c] = (r0 + r < T && c < hs) ? src[(long long)(r0 + r) * st + c] : 0.f;
    }
}

// This thread's 32 dims of row `row` (zero past hs, or when the row does not exist), times mul.
__device__ __forceinline__ void load_row(float (&dst)[32], const float* src, long long st, int row,
                                         bool exists, int dim0, int hs, float mul) {
#pragma unroll
    for (int d = 0; d < 32; ++d)
        dst[d] = (exists && dim0 + d < hs) ? src[(long long)row * st + dim0 + d] * mul : 0.f;
}

__device__ __forceinline__ void store_row(float* dst, const float (&src)[32], int row, bool exists,
                                          int dim0, int hs, float mul) {
    if (!exists) return;
#pragma unroll
    for (int d = 0; d < 32; ++d)
        if (dim0 + d < hs) dst[(long long)row * hs + dim0 + d] = src[d] * mul;
}

// Forward: each query row keeps its running max m, sum l and unnormalized output o; per key tile
// it scores all FLASH_TILE keys, rescales o once by exp(m_old - m_new), then adds p_j v_j.
template <int G>
__device__ void flash_forward(const float* q, const float* k, const float* v, float* out,
                              float* lse, int H, int Tq, int Tk, int hs, Strides qs, Strides ks,
                              Strides vs, float scale, bool causal) {
    constexpr int ROWS = FLASH_THREADS / G;
    __shared__ __align__(16) float k_tile[FLASH_TILE][32 * G];
    __shared__ __align__(16) float v_tile[FLASH_TILE][32 * G];

    int bh = blockIdx.x, b = bh / H, h = bh % H;
    int row0 = (gridDim.y - 1 - blockIdx.y) * ROWS;  // causal: the heaviest blocks start first
    int i = row0 + threadIdx.x / G;
    int dim0 = (threadIdx.x % G) * 32;
    bool exists = i < Tq;
    const float* qb = q + b * qs.b + h * qs.h;
    const float* kb = k + b * ks.b + h * ks.h;
    const float* vb = v + b * vs.b + h * vs.h;

    float qr[32], o[32];
    load_row(qr, qb, qs.t, i, exists, dim0, hs, scale);  // scores come out already scaled
#pragma unroll
    for (int d = 0; d < 32; ++d) o[d] = 0.f;
    float m = tg::neg_inf<float>(), l = 0.f;

    int last = causal ? i + Tk - Tq : Tk - 1;  // last key this row sees
    int block_last = min(Tq, row0 + ROWS) - 1;
    int kend = causal ? min(Tk, block_last + Tk - Tq + 1) : Tk;  // keys any row of the block sees

    for (int kt = 0; kt < kend; kt += FLASH_TILE) {
        __syncthreads();  // the previous tile is no longer being read
        load_tile<G>(k_tile, kb, ks.t, kt, Tk, hs);
        load_tile<G>(v_tile, vb, vs.t, kt, Tk, hs);
        __syncthreads();

        float s[FLASH_TILE];
        float tile_max = tg::neg_inf<float>();
#pragma unroll
        for (int j = 0; j < FLASH_TILE; ++j) {
            float dot = group_sum<G>(dot32(qr, &k_tile[j][dim0]));
            s[j] = kt + j <= last ? dot : tg::neg_inf<float>();  // last < Tk: pads are masked too
            tile_max = fmaxf(tile_max, s[j]);
        }
        float m_new = fmaxf(m, tile_max);
        if (m_new != tg::neg_inf<float>()) {  // else no key of this tile or before is visible
            float correction = expf(m - m_new);
            l *= correction;
#pragma unroll
            for (int d = 0; d < 32; ++d) o[d] *= correction;
#pragma unroll
            for (int j = 0; j < FLASH_TILE; ++j) {
                float p = expf(s[j] - m_new);
                l += p;
                axpy32(o, p, &v_tile[j][dim0]);
            }
            m = m_new;
        }
    }
    store_row(out + (long long)bh * Tq * hs, o, i, exists, dim0, hs, 1.f / l);
    if (exists && dim0 == 0) lse[(long long)bh * Tq + i] = m + logf(l);
}

// Backward, part 1 (one thread group per query row, keys streamed):
//   delta_i = dO_i . O_i  (= sum_j P_ij dP_ij, the softmax-backward row sum), saved for part 2
//   P_ij = exp(S_ij - lse_i),  dP_ij = dO_i . v_j,  dS_ij = P_ij (dP_ij - delta_i)
//   dQ_i = scale * sum_j dS_ij k_j
template <int G>
__device__ void flash_backward_dq(const float* q, const float* k, const float* v, const float* out,
                                  const float* dout, const float* lse, float* delta, float* dq,
                                  int H, int Tq, int Tk, int hs, Strides qs, Strides ks,
                                  Strides vs, float scale, bool causal) {
    constexpr int ROWS = FLASH_THREADS / G;
    __shared__ __align__(16) float k_tile[FLASH_TILE][32 * G];
    __shared__ __align__(16) float v_tile[FLASH_TILE][32 * G];

    int bh = blockIdx.x, b = bh / H, h = bh % H;
    int row0 = (gridDim.y - 1 - blockIdx.y) * ROWS;
    int i = row0 + threadIdx.x / G;
    int dim0 = (threadIdx.x % G) * 32;
    bool exists = i < Tq;
    const float* kb = k + b * ks.b + h * ks.h;
    const float* vb = v + b * vs.b + h * vs.h;
    long long head = (long long)bh * Tq;  // first row of this head in out, dout, lse, delta, dq

    float qr[32], dor[32], acc[32];
    load_row(qr, q + b * qs.b + h * qs.h, qs.t, i, exists, dim0, hs, scale);
    load_row(acc, out + head * hs, hs, i, exists, dim0, hs, 1.f);  // O_i, only for delta
    load_row(dor, dout + head * hs, hs, i, exists, dim0, hs, 1.f);
    float dsum = 0.f;
#pragma unroll
    for (int d = 0; d < 32; ++d) dsum += dor[d] * acc[d];
    float delta_i = group_sum<G>(dsum);
#pragma unroll
    for (int d = 0; d < 32; ++d) acc[d] = 0.f;
    float lse_i = exists ? lse[head + i] : 0.f;
    if (exists && dim0 == 0) delta[head + i] = delta_i;

    int last = causal ? i + Tk - Tq : Tk - 1;
    int block_last = min(Tq, row0 + ROWS) - 1;
    int kend = causal ? min(Tk, block_last + Tk - Tq + 1) : Tk;

    for (int kt = 0; kt < kend; kt += FLASH_TILE) {
        __syncthreads();
        load_tile<G>(k_tile, kb, ks.t, kt, Tk, hs);
        load_tile<G>(v_tile, vb, vs.t, kt, Tk, hs);
        __syncthreads();
#pragma unroll 4
        for (int j = 0; j < FLASH_TILE; ++j) {
            float s = group_sum<G>(dot32(qr, &k_tile[j][dim0]));
            float dp = group_sum<G>(dot32(dor, &v_tile[j][dim0]));
            float p = kt + j <= last ? expf(s - lse_i) : 0.f;
            axpy32(acc, p * (dp - delta_i), &k_tile[j][dim0]);
        }
    }
    store_row(dq + head * hs, acc, i, exists, dim0, hs, scale);
}

// Backward, part 2 (one thread group per key row j, queries streamed; needs part 1's delta):
//   dV_j = sum_i P_ij dO_i,   dK_j = scale * sum_i dS_ij q_i
// For a causal mask the key block's first visible query is (first key) - (Tk - Tq).
template <int G>
__device__ void flash_backward_dkdv(const float* q, const float* k, const float* v,
                                    const float* dout, const float* lse, const float* delta,
                                    float* dk, float* dv, int H, int Tq, int Tk, int hs,
                                    Strides qs, Strides ks, Strides vs, float scale, bool causal) {
    constexpr int ROWS = FLASH_THREADS / G;
    __shared__ __align__(16) float q_tile[FLASH_TILE][32 * G];
    __shared__ __align__(16) float do_tile[FLASH_TILE][32 * G];
    __shared__ float lse_tile[FLASH_TILE], delta_tile[FLASH_TILE];

    int bh = blockIdx.x, b = bh / H, h = bh % H;
    int row0 = blockIdx.y * ROWS;  // causal: low key blocks see the most queries and start first
    int j = row0 + threadIdx.x / G;
    int dim0 = (threadIdx.x % G) * 32;
    bool exists = j < Tk;
    const float* qb = q + b * qs.b + h * qs.h;
    long long head = (long long)bh * Tq;  // first row of this head in dout, lse, delta

    float kr[32], vr[32], dk_acc[32], dv_acc[32];
    load_row(kr, k + b * ks.b + h * ks.h, ks.t, j, exists, dim0, hs, scale);
    load_row(vr, v + b * vs.b + h * vs.h, vs.t, j, exists, dim0, hs, 1.f);
#pragma unroll
    for (int d = 0; d < 32; ++d) dk_acc[d] = dv_acc[d] = 0.f;

    int first = causal ? j - (Tk - Tq) : 0;  // first query that sees key j
    int qstart = causal ? max(0, row0 - (Tk - Tq)) : 0;

    for (int it = qstart; it < Tq; it += FLASH_TILE) {
        __syncthreads();
        load_tile<G>(q_tile, qb, qs.t, it, Tq, hs);
        load_tile<G>(do_tile, dout + head * hs, hs, it, Tq, hs);
        if (threadIdx.x < FLASH_TILE) {
            bool in = it + threadIdx.x < Tq;
            lse_tile[threadIdx.x] = in ? lse[head + it + threadIdx.x] : 0.f;
            delta_tile[threadIdx.x] = in ? delta[head + it + threadIdx.x] : 0.f;
        }
        __syncthreads();
#pragma unroll 4
        for (int ii = 0; ii < FLASH_TILE; ++ii) {
            int i = it + ii;
            float s = group_sum<G>(dot32(kr, &q_tile[ii][dim0]));
            float dp = group_sum<G>(dot32(vr, &do_tile[ii][dim0]));
            float p = (i < Tq && i >= first) ? expf(s - lse_tile[ii]) : 0.f;
            axpy32(dv_acc, p, &do_tile[ii][dim0]);
            axpy32(dk_acc, p * (dp - delta_tile[ii]), &q_tile[ii][dim0]);
        }
    }
    store_row(dk + (long long)bh * Tk * hs, dk_acc, j, exists, dim0, hs, scale);
    store_row(dv + (long long)bh * Tk * hs, dv_acc, j, exists, dim0, hs, 1.f);
}

// Strides arrive as nine integers (qb, qh, qt, kb, kh, kt, vb, vh, vt): plain scalars are what
// every launcher can pass.
#define STRIDE_PARAMS                                                                             \
    long long qsb, long long qsh, long long qst, long long ksb, long long ksh, long long kst,    \
        long long vsb, long long vsh, long long vst
#define STRIDE_ARGS Strides{qsb, qsh, qst}, Strides{ksb, ksh, kst}, Strides{vsb, vsh, vst}

#define FLASH_ENTRY_POINTS(G)                                                                     \
    extern "C" __global__ void __launch_bounds__(FLASH_THREADS)                                  \
    flash_forward_g##G(const float* q, const float* k, const float* v, float* out, float* lse,  \
                       long long H, long long Tq, long long Tk, long long hs, STRIDE_PARAMS,    \
                       float scale, long long causal) {                                        \
        flash_forward<G>(q, k, v, out, lse, (int)H, (int)Tq, (int)Tk, (int)hs, STRIDE_ARGS,     \
                         scale, causal != 0);                                                   \
    }                                                                                          \
    extern "C" __global__ void __launch_bounds__(FLASH_THREADS)                                  \
    flash_backward_dq_g##G(const float* q, const float* k, const float* v, const float* out,    \
                           const float* dout, const float* lse, float* delta, float* dq,        \
                           long long H, long long Tq, long long Tk, long long hs,               \
                           STRIDE_PARAMS, float scale, long long causal) {                     \
        flash_backward_dq<G>(q, k, v, out, dout, lse, delta, dq, (int)H, (int)Tq, (int)Tk,      \
                             (int)hs, STRIDE_ARGS, scale, causal != 0);                         \
    }                                                                                          \
    extern "C" __global__ void __launch_bounds__(FLASH_THREADS)                                  \
    flash_backward_dkdv_g##G(const float* q, const float* k, const float* v,                    \
                             const float* dout, const float* lse, const float* delta,           \
                             float* dk, float* dv, long long H, long long Tq, long long Tk,     \
                             long long hs, STRIDE_PARAMS, float scale, long long causal) {      \
        flash_backward_dkdv<G>(q, k, v, dout, lse, delta, dk, dv, (int)H, (int)Tq, (int)Tk,     \
                               (int)hs, STRIDE_ARGS, scale, causal != 0);                       \
    }

FLASH_ENTRY_POINTS(1)
FLASH_ENTRY_POINTS(2)
FLASH_ENTRY_POINTS(4)
