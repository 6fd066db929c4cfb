// Cross-entropy fused with log-softmax; reference and derivation: kernels/cross_entropy.py.
// logits (N, C) contiguous, targets (N,) int64.

// One warp per row: the online max/sum gives lse = m + log(s) in one read of the row, and the
// row's loss is lse - logits[target]. The caller takes the mean of the row losses of the kept
// targets on the GPU. A target outside [0, C) makes that row's loss NaN: an error the host sees
// without a sync, and on an ignored row (ignore_index is usually negative) one the mean drops.
template <typename T>
__device__ void cross_entropy_forward(const T* logits, const long long* targets, T* row_loss,
                                      T* lse, long long rows, int C) {
    long long row = warp_row();
    if (row >= rows) return;
    const T* xr = logits + row * C;
    T m = tg::neg_inf<T>(), s = 0;
    for (int c = threadIdx.x % 32; c < C; c += 32) online_add(m, s, xr[c]);
    warp_online_merge(m, s);
    if (threadIdx.x % 32 == 0) {
        T l = m + tg::log(s);
        long long t = targets[row];
        lse[row] = l;
        row_loss[row] = (t >= 0 && t < C) ? l - xr[t] : tg::nan<T>();
    }
}

// dlogits = (softmax - onehot(target)) * dloss / K, one thread per element (grid-stride), K the
// number of targets not equal to ignore_index, and 0 on the rows of ignored targets. dloss and K
// are read from device memory so neither 0-d GPU array ever has to visit the host.
template <typename T>
__device__ void cross_entropy_backward(const T* dloss, const T* logits, const long long* targets,
                                       const T* lse, T* dlogits, long long rows, int C,
                                       long long ignore_index, const long long* kept) {
    T g = *dloss / T(*kept > 0 ? *kept : 1);  // with no row kept, no row uses g
    long long n = rows * C;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        long long row = i / C;
        int c = (int)(i - row * C);
        long long t = targets[row];
        T p = tg::exp(logits[i] - lse[row]);
        if (c == t) p -= T(1);
        dlogits[i] = t == ignore_index ? T(0) : p * g;
    }
}

#define CROSS_ENTROPY_ENTRY_POINTS(T, SUFFIX)                                                     \
    extern "C" __global__ void cross_entropy_forward_##SUFFIX(                                   \
        const T* logits, const long long* targets, T* row_loss, T* lse, long long rows,         \
        long long C) {                                                                           \
        cross_entropy_forward<T>(logits, targets, row_loss, lse, rows, (int)C);                  \
    }                                                                                            \
    extern "C" __global__ void cross_entropy_backward_##SUFFIX(                                  \
        const T* dloss, const T* logits, const long long* targets, const T* lse, T* dlogits,    \
        long long rows, long long C, long long ignore_index, const long long* kept) {            \
        cross_entropy_backward<T>(dloss, logits, targets, lse, dlogits, rows, (int)C,            \
                                  ignore_index, kept);                                           \
    }

CROSS_ENTROPY_ENTRY_POINTS(float, f32)
CROSS_ENTROPY_ENTRY_POINTS(double, f64)
