// GELU, tanh form; reference and derivation: kernels/gelu.py. Contiguous arrays of n elements,
// one thread per element (grid-stride). The backward recomputes tanh from x, as the reference does.

#define SQRT_2_OVER_PI 0.7978845608028654
#define GELU_COEF 0.044715

template <typename T>
__device__ void gelu_forward(const T* x, T* y, long long n) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        T v = x[i];
        T t = tg::tanh(T(SQRT_2_OVER_PI) * (v + T(GELU_COEF) * v * v * v));
        y[i] = T(0.5) * v * (T(1) + t);
    }
}

template <typename T>
__device__ void gelu_backward(const T* dy, const T* x, T* dx, long long n) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        T v = x[i];
        T v2 = v * v;
        T t = tg::tanh(T(SQRT_2_OVER_PI) * v * (T(1) + T(GELU_COEF) * v2));
        T du = T(SQRT_2_OVER_PI) * (T(1) + T(3 * GELU_COEF) * v2);
        dx[i] = dy[i] * (T(0.5) * (T(1) + t) + T(0.5) * v * (T(1) - t * t) * du);
    }
}

#define GELU_ENTRY_POINTS(T, SUFFIX)                                                              \
    extern "C" __global__ void gelu_forward_##SUFFIX(const T* x, T* y, long long n) {           \
        gelu_forward<T>(x, y, n);                                                              \
    }                                                                                          \
    extern "C" __global__ void gelu_backward_##SUFFIX(const T* dy, const T* x, T* dx,           \
                                                      long long n) {                           \
        gelu_backward<T>(dy, x, dx, n);                                                        \
    }

GELU_ENTRY_POINTS(float, f32)
GELU_ENTRY_POINTS(double, f64)
