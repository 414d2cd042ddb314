/* kernels.c -- the element-wise kernels, generated from SA_OP_LIST for every dtype.
 *
 * Plain loops over typed pointers that gcc -O3 vectorizes (see `make vectorize-report`).
 * Input and output may be the same array (in place) but never partially overlap (validate.c
 * refuses that), so the loops carry no restrict and gcc adds a run-time alias check instead.
 */
#include "internal.h"

/* X(ENUM_SUFFIX, element type, type the expression is computed in) */
#define DTYPE_LIST(X) \
    X(INT8, int8_t, uint32_t) \
    X(INT16, int16_t, uint32_t) \
    X(INT32, int32_t, uint32_t) \
    X(INT64, int64_t, uint64_t) \
    X(UINT8, uint8_t, uint32_t) \
    X(UINT16, uint16_t, uint32_t) \
    X(UINT32, uint32_t, uint32_t) \
    X(UINT64, uint64_t, uint64_t) \
    X(FLOAT32, float, float) \
    X(FLOAT64, double, double)

/* On x86-64 each kernel is built twice, for baseline SSE2 and for AVX2, and the loader picks
 * one for this CPU (an ifunc): gcc leaves 64-bit integer loops scalar for SSE2 (no vector
 * type it deems worth it), and vectorizes them with AVX2. */
/* Not under ThreadSanitizer: an ifunc resolver runs before its runtime is set up, and its
 * instrumented entry crashes the program at load. */
#if defined(__SANITIZE_THREAD__)
#define NO_IFUNC 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define NO_IFUNC 1
#endif
#endif
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(NO_IFUNC)
#define KERNEL_ATTR __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define KERNEL_ATTR
#endif

/* Narrowing the unsigned result back to a signed type is implementation-defined in C; gcc and
 * clang define it as reduction modulo 2^N, which is the two's complement wrap-around wanted. */
#define KERNEL_FN(NAME, N, name, expr, DT, T, W) \
    KERNEL_ATTR static void k_##name##_##DT(const void *in_, void *out_, size_t n) \
    { \
        const T *in = in_; \
        T *out = out_; \
        for (size_t i = 0; i < n; i++) { \
            W x = (W)in[i]; \
            out[i] = (T)(expr); \
        } \
    }
#define KERNELS_FOR_DTYPE(DT, T, W) SA_OP_LIST(KERNEL_FN, DT, T, W)
DTYPE_LIST(KERNELS_FOR_DTYPE)

#define KERNEL_ENTRY(NAME, N, name, expr, DT, T, W) [SA_OP_##NAME][SA_##DT] = k_##name##_##DT,
#define ENTRIES_FOR_DTYPE(DT, T, W) SA_OP_LIST(KERNEL_ENTRY, DT, T, W)
/* clang-format off */
static const sa__kernel_fn kernels[SA_OP_MAX + 1][SA_DTYPE_MAX + 1] = {
    DTYPE_LIST(ENTRIES_FOR_DTYPE)
};
/* clang-format on */

sa__kernel_fn
sa__kernel(uint32_t op, uint32_t dtype)
{
    if (op < 1 || op > SA_OP_MAX || dtype < 1 || dtype > SA_DTYPE_MAX) {
        return NULL;
    }
    return kernels[op][dtype];
}
