// The dropout mask from uniform draws u in [0, 1): 0 where u < p (dropped), 1/(1-p) elsewhere;
// reference: kernels/dropout.py. One pass, where the reference compares, converts and scales in
// three. Contiguous arrays of n elements, one thread per element (grid-stride).

template <typename T>
__device__ void dropout_mask(const T* u, T* mask, T p, T scale, long long n) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        mask[i] = u[i] >= p ? scale : T(0);
    }
}

#define DROPOUT_ENTRY_POINTS(T, SUFFIX)                                                          \
    extern "C" __global__ void dropout_mask_##SUFFIX(const T* u, T* mask, T p, T scale,        \
                                                     long long n) {                            \
        dropout_mask<T>(u, mask, p, scale, n);                                                 \
    }

DROPOUT_ENTRY_POINTS(float, f32)
DROPOUT_ENTRY_POINTS(double, f64)
