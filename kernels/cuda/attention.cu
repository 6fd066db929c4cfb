// The fused (non-flash) attention path: cuBLAS does the two matrix products (through cupy's @),
// these kernels do everything between them in one pass each. Reference and derivation:
// kernels/attention.py. Used with a dropout mask, for head dims over 128, and for float64;
// flash_attention.cu covers the rest.
//
// att is (rows, Tk) contiguous with rows = batch * Tq; row r holds the scores of query
// i = r % Tq. Causal masks are bottom-right aligned: query i sees key j iff j <= i + Tk - Tq.

// In place: att <- softmax(scale * att) with masked entries 0. If mask is not null, also
// p = att * mask (the dropped-out probabilities that multiply V), so dropout costs no extra pass.
template <typename T>
__device__ void attention_softmax(T* att, T* p, const T* mask, long long rows, int Tq, int Tk,
                                  T scale, bool causal) {
    long long row = warp_row();
    if (row >= rows) return;
    int lane = threadIdx.x % 32;
    int last = causal ? (int)(row % Tq) + Tk - Tq : Tk - 1;  // last key this query sees
    T* ar = att + row * Tk;

    T m = tg::neg_inf<T>(), s = 0;
    for (int j = lane; j <= last && j < Tk; j += 32) online_add(m, s, ar[j] * scale);
    warp_online_merge(m, s);

    for (int j = lane; j < Tk; j += 32) {
        T a = j <= last ? tg::exp(ar[j] * scale - m) / s : T(0);
        ar[j] = a;
        if (mask) p[row * Tk + j] = a * mask[row * Tk + j];
    }
}

// In place: dp (the gradient reaching the dropped-out probabilities, dO V^T) becomes dS, the
// gradient of the scaled scores:
//   g = dp * mask,  dS = scale * att * (g - sum_j g_j att_j)
// Masked keys have att = 0, so their dS is 0 with no mask test.
template <typename T>
__device__ void attention_softmax_backward(T* dp, const T* att, const T* mask, long long rows,
                                           int Tk, T scale) {
    long long row = warp_row();
    if (row >= rows) return;
    int lane = threadIdx.x % 32;
    T* dr = dp + row * Tk;
    const T* ar = att + row * Tk;
    const T* mr = mask ? mask + row * Tk : nullptr;

    T dot = 0;
    for (int j = lane; j < Tk; j += 32) dot += (mr ? dr[j] * mr[j] : dr[j]) * ar[j];
    dot = warp_sum(dot);
    for (int j = lane; j < Tk; j += 32) {
        T g = mr ? dr[j] * mr[j] : dr[j];
        dr[j] = (g - dot) * ar[j] * scale;
    }
}

#define ATTENTION_ENTRY_POINTS(T, SUFFIX)                                                         \
    extern "C" __global__ void attention_softmax_##SUFFIX(T* att, T* p, const T* mask,          \
                                                          long long rows, long long Tq,        \
                                                          long long Tk, T scale,               \
                                                          long long causal) {                  \
        attention_softmax<T>(att, p, mask, rows, (int)Tq, (int)Tk, scale, causal != 0);         \
    }                                                                                          \
    extern "C" __global__ void attention_softmax_backward_##SUFFIX(                             \
        T* dp, const T* att, const T* mask, long long rows, long long Tk, T scale) {           \
        attention_softmax_backward<T>(dp, att, mask, rows, (int)Tk, scale);                     \
    }

ATTENTION_ENTRY_POINTS(float, f32)
ATTENTION_ENTRY_POINTS(double, f64)
