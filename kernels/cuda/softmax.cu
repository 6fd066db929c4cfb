// Softmax and log-softmax over the last axis of a (rows, C) contiguous array, one warp per row;
// reference and derivation: kernels/softmax.py. Forward reads the row twice (online max and sum,
// then the output), backward twice (one dot product, then the output).

template <typename T>
__device__ __forceinline__ void row_max_sum(const T* xr, int C, T& m, T& s) {
    m = tg::neg_inf<T>();
    s = 0;
    for (int c = threadIdx.x % 32; c < C; c += 32) online_add(m, s, xr[c]);
    warp_online_merge(m, s);
}

template <typename T>
__device__ void softmax_forward(const T* x, T* y, long long rows, int C, bool log) {
    long long row = warp_row();
    if (row >= rows) return;
    const T* xr = x + row * C;
    T* yr = y + row * C;
    T m, s;
    row_max_sum(xr, C, m, s);
    T log_s = tg::log(s);
    for (int c = threadIdx.x % 32; c < C; c += 32)
        yr[c] = log ? (xr[c] - m) - log_s : tg::exp(xr[c] - m) / s;
}

// softmax:     dx = y * (dy - sum(dy * y))
// log-softmax: dx = dy - exp(y) * sum(dy)
template <typename T>
__device__ void softmax_backward(const T* dy, const T* y, T* dx, long long rows, int C, bool log) {
    long long row = warp_row();
    if (row >= rows) return;
    const T* dyr = dy + row * C;
    const T* yr = y + row * C;
    T* dxr = dx + row * C;
    T acc = 0;
    for (int c = threadIdx.x % 32; c < C; c += 32) acc += log ? dyr[c] : dyr[c] * yr[c];
    acc = warp_sum(acc);
    for (int c = threadIdx.x % 32; c < C; c += 32)
        dxr[c] = log ? dyr[c] - tg::exp(yr[c]) * acc : yr[c] * (dyr[c] - acc);
}

#define SOFTMAX_ENTRY_POINTS(T, SUFFIX)                                                            \
    extern "C" __global__ void softmax_forward_##SUFFIX(const T* x, T* y, long long rows,          \
                                                        long long C) {                             \
        softmax_forward<T>(x, y, rows, (int)C, false);                                            \
    }                                                                                             \
    extern "C" __global__ void log_softmax_forward_##SUFFIX(const T* x, T* y, long long rows,      \
                                                            long long C) {                         \
        softmax_forward<T>(x, y, rows, (int)C, true);                                             \
    }                                                                                             \
    extern "C" __global__ void softmax_backward_##SUFFIX(const T* dy, const T* y, T* dx,           \
                                                         long long rows, long long C) {            \
        softmax_backward<T>(dy, y, dx, rows, (int)C, false);                                      \
    }                                                                                             \
    extern "C" __global__ void log_softmax_backward_##SUFFIX(const T* dy, const T* y, T* dx,       \
                                                             long long rows, long long C) {        \
        softmax_backward<T>(dy, y, dx, rows, (int)C, true);                                       \
    }

SOFTMAX_ENTRY_POINTS(float, f32)
SOFTMAX_ENTRY_POINTS(double, f64)
