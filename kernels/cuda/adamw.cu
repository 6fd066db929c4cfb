// AdamW, fused into one pass over the four arrays, updated in place; reference and formulas:
// kernels/adamw.py. The host folds the step's scalars: decay = 1 - lr * weight_decay,
// step_size = lr / (1 - beta1^t), bias2 = 1 - beta2^t, and passes 1 - beta as computed in
// double, so the float32 constants match the reference's.

template <typename T>
__device__ __forceinline__ void adamw_element(T& p, T g, T& m, T& v, T beta1, T one_minus_beta1,
                                              T beta2, T one_minus_beta2, T eps, T decay,
                                              T step_size, T bias2) {
    m = beta1 * m + one_minus_beta1 * g;
    v = beta2 * v + one_minus_beta2 * g * g;
    p = p * decay - step_size * m / (tg::sqrt(v / bias2) + eps);
}

#define ADAMW_SCALARS(T) T beta1, T one_minus_beta1, T beta2, T one_minus_beta2, T eps, T decay, \
                         T step_size, T bias2
#define ADAMW_SCALAR_NAMES beta1, one_minus_beta1, beta2, one_minus_beta2, eps, decay, step_size, bias2

// One array: one thread per element (grid-stride).
template <typename T>
__device__ void adamw_update(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, long long n,
                             ADAMW_SCALARS(T)) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x)
        adamw_element(param[i], grad[i], exp_avg[i], exp_avg_sq[i], ADAMW_SCALAR_NAMES);
}

// Many arrays in one launch. `table` holds the addresses of the `count` params, then of the
// grads, exp_avgs and exp_avg_sqs (4 rows of `count`), then `count` + 1 running element offsets
// (offsets[k] is where array k starts in the concatenation). Each element finds its array by
// binary search.
template <typename T>
__device__ void adamw_update_multi(const unsigned long long* table, long long count,
                                   ADAMW_SCALARS(T)) {
    const long long* offsets = reinterpret_cast<const long long*>(table + 4 * count);
    long long total = offsets[count];
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        long long lo = 0, hi = count - 1;  // find the last k with offsets[k] <= i
        while (lo < hi) {
            long long mid = (lo + hi + 1) / 2;
            if (offsets[mid] <= i) lo = mid; else hi = mid - 1;
        }
        long long j = i - offsets[lo];
        T* param = reinterpret_cast<T*>(table[lo]);
        const T* grad = reinterpret_cast<const T*>(table[count + lo]);
        T* exp_avg = reinterpret_cast<T*>(table[2 * count + lo]);
        T* exp_avg_sq = reinterpret_cast<T*>(table[3 * count + lo]);
        adamw_element(param[j], grad[j], exp_avg[j], exp_avg_sq[j], ADAMW_SCALAR_NAMES);
    }
}

#define ADAMW_ENTRY_POINTS(T, SUFFIX)                                                             \
    extern "C" __global__ void adamw_update_##SUFFIX(T* param, const T* grad, T* exp_avg,       \
                                                     T* exp_avg_sq, long long n,               \
                                                     ADAMW_SCALARS(T)) {                       \
        adamw_update<T>(param, grad, exp_avg, exp_avg_sq, n, ADAMW_SCALAR_NAMES);               \
    }                                                                                          \
    extern "C" __global__ void adamw_update_multi_##SUFFIX(const unsigned long long* table,     \
                                                           long long count, ADAMW_SCALARS(T)) { \
        adamw_update_multi<T>(table, count, ADAMW_SCALAR_NAMES);                                \
    }

ADAMW_ENTRY_POINTS(float, f32)
ADAMW_ENTRY_POINTS(double, f64)
