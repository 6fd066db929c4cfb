// LayerNorm over the last axis; reference and derivation: kernels/layernorm.py.
// x is (rows, C) contiguous. One warp per row; weight/bias may be null (no affine part).

template <typename T>
__device__ void layernorm_forward(const T* x, const T* weight, const T* bias, T* y, T* mean,
                                  T* rstd, long long rows, int C, T eps) {
    long long row = warp_row();
    if (row >= rows) return;
    int lane = threadIdx.x % 32;
    const T* xr = x + row * C;
    T* yr = y + row * C;

    // Two passes for the statistics (mean, then squared deviations): the row is in L1 by the
    // second, and it avoids the cancellation of E[x^2] - E[x]^2.
    T sum = 0;
    for (int c = lane; c < C; c += 32) sum += xr[c];
    T mu = warp_sum(sum) / T(C);
    T sq = 0;
    for (int c = lane; c < C; c += 32) {
        T d = xr[c] - mu;
        sq += d * d;
    }
    T rs = T(1) / tg::sqrt(warp_sum(sq) / T(C) + eps);

    for (int c = lane; c < C; c += 32) {
        T v = (xr[c] - mu) * rs;
        if (weight) v *= weight[c];
        if (bias) v += bias[c];
        yr[c] = v;
    }
    if (lane == 0) {
        mean[row] = mu;
        rstd[row] = rs;
    }
}

// dx per row needs two row means (of g and g * xhat, g = dy * w); dweight and dbias are sums
// over all rows. Each block strides over rows warp by warp, adds its rows' dy * xhat and dy into
// shared memory (2 C values), and writes one partial row per block to dweight_part/dbias_part
// (gridDim.x, C); the caller sums those few partial rows. Launch with 2 * C * sizeof(T) bytes of
// dynamic shared memory.
template <typename T>
__device__ void layernorm_backward(const T* dy, const T* x, const T* weight, const T* mean,
                                   const T* rstd, T* dx, T* dweight_part, T* dbias_part,
                                   long long rows, int C) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T* s_dweight = reinterpret_cast<T*>(smem_raw);
    T* s_dbias = s_dweight + C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        s_dweight[c] = 0;
        s_dbias[c] = 0;
    }
    __syncthreads();

    int lane = threadIdx.x % 32;
    int warps = blockDim.x / 32;
    for (long long row = (long long)blockIdx.x * warps + threadIdx.x / 32; row < rows;
         row += (long long)gridDim.x * warps) {
        const T* dyr = dy + row * C;
        const T* xr = x + row * C;
        T mu = mean[row], rs = rstd[row];

        T sum_g = 0, sum_gx = 0;
        for (int c = lane; c < C; c += 32) {
            T g = weight ? dyr[c] * weight[c] : dyr[c];
            sum_g += g;
            sum_gx += g * (xr[c] - mu) * rs;
        }
        T mean_g = warp_sum(sum_g) / T(C);
        T mean_gx = warp_sum(sum_gx) / T(C);

        T* dxr = dx + row * C;
        for (int c = lane; c < C; c += 32) {
            T xhat = (xr[c] - mu) * rs;
            T g = weight ? dyr[c] * weight[c] : dyr[c];
            dxr[c] = rs * (g - mean_g - xhat * mean_gx);
            atomicAdd(&s_dweight[c], dyr[c] * xhat);
            atomicAdd(&s_dbias[c], dyr[c]);
        }
    }
    __syncthreads();
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        dweight_part[(long long)blockIdx.x * C + c] = s_dweight[c];
        dbias_part[(long long)blockIdx.x * C + c] = s_dbias[c];
    }
}

#define LAYERNORM_ENTRY_POINTS(T, SUFFIX)                                                        \
    extern "C" __global__ void layernorm_forward_##SUFFIX(                                      \
        const T* x, const T* weight, const T* bias, T* y, T* mean, T* rstd, long long rows,     \
        long long C, T eps) {                                                                   \
        layernorm_forward<T>(x, weight, bias, y, mean, rstd, rows, (int)C, eps);                \
    }                                                                                           \
    extern "C" __global__ void layernorm_backward_##SUFFIX(                                     \
        const T* dy, const T* x, const T* weight, const T* mean, const T* rstd, T* dx,          \
        T* dweight_part, T* dbias_part, long long rows, long long C) {                          \
        layernorm_backward<T>(dy, x, weight, mean, rstd, dx, dweight_part, dbias_part, rows,    \
                              (int)C);                                                          \
    }

LAYERNORM_ENTRY_POINTS(float, f32)
LAYERNORM_ENTRY_POINTS(double, f64)
