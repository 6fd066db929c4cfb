// Helpers shared by every kernel file. The loader (kernels/cuda/__init__.py) puts this text in
// front of each .cu file before NVRTC compiles it, so the .cu files do not #include it.
//
// Kernels are templates on the element type T (float or double) with one extern "C" entry point
// per type, named <kernel>_f32 / <kernel>_f64. Accumulation happens in T: float32 inputs are
// reduced in float, like the numpy/cupy references, and float64 stays exact enough for gradchecks.

#define FULL_MASK 0xffffffffu

// Overloads that pick the float or double math function; C++ name lookup on T would otherwise
// depend on which headers NVRTC happens to provide.
namespace tg {
__device__ __forceinline__ float exp(float x) { return expf(x); }
__device__ __forceinline__ double exp(double x) { return ::exp(x); }
__device__ __forceinline__ float log(float x) { return logf(x); }
__device__ __forceinline__ double log(double x) { return ::log(x); }
__device__ __forceinline__ float sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double sqrt(double x) { return ::sqrt(x); }
__device__ __forceinline__ float tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double tanh(double x) { return ::tanh(x); }
template <typename T> __device__ __forceinline__ T max(T a, T b) { return a > b ? a : b; }
template <typename T> __device__ __forceinline__ T neg_inf();
template <> __device__ __forceinline__ float neg_inf<float>() { return -__int_as_float(0x7f800000); }
template <> __device__ __forceinline__ double neg_inf<double>() { return -__longlong_as_double(0x7ff0000000000000LL); }
template <typename T> __device__ __forceinline__ T nan() { return neg_inf<T>() * T(0); }
}  // namespace tg

// Butterfly reductions over the 32 lanes of a warp: every lane ends with the result.
template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(FULL_MASK, v, offset);
    return v;
}

// Online softmax statistics: m is the running max, s the sum of exp(x - m) seen so far.
// One pass over a row gives both, so a softmax reads its input twice instead of three times.
template <typename T>
__device__ __forceinline__ void online_add(T& m, T& s, T x) {
    if (x > m) {
        s = s * tg::exp(m - x) + T(1);  // rescale the old sum to the new max (0 when m was -inf)
        m = x;
    } else if (x != tg::neg_inf<T>()) {  // -inf adds nothing; NaN falls through and propagates
        s += tg::exp(x - m);
    }
}

template <typename T>
__device__ __forceinline__ void online_merge(T& m, T& s, T m2, T s2) {
    T mx = tg::max(m, m2);
    if (mx == tg::neg_inf<T>()) return;  // both empty: s and s2 are 0
    s = s * tg::exp(m - mx) + s2 * tg::exp(m2 - mx);
    m = mx;
}

// Merge the per-lane (m, s) of a warp. Max and + are commutative, so all lanes agree bit for bit.
template <typename T>
__device__ __forceinline__ void warp_online_merge(T& m, T& s) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) {
        T m2 = __shfl_xor_sync(FULL_MASK, m, offset);
        T s2 = __shfl_xor_sync(FULL_MASK, s, offset);
        online_merge(m, s, m2, s2);
    }
}

// Row kernels map one warp to one row; a block holds ROW_WARPS rows. Rows past the end return
// as a whole warp, so the full-mask shuffles above stay valid.
#define ROW_WARPS 4

__device__ __forceinline__ long long warp_row() {
    return (long long)blockIdx.x * ROW_WARPS + threadIdx.x / 32;
}
