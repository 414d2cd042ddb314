/* test_kernels.c -- every kernel for every dtype against an independent reference: integer
 * results reduced modulo 2^bits and sign-extended by hand, floats computed directly. */
#include <math.h>
#include <stdint.h>

#include "ctest.h"
#include "internal.h"

#define N 1031 /* odd, so vector loops have a scalar tail */

/* Reference: op applied to the exact value, then wrapped to `bits` two's complement. */
static int64_t
wrap_signed(__int128 v, int bits)
{
    unsigned __int128 m = (unsigned __int128)1 << bits;
    unsigned __int128 u = (unsigned __int128)v & (m - 1);
    return u >= m / 2 ? (int64_t)(u - m) : (int64_t)u;
}

static uint64_t
wrap_unsigned(__int128 v, int bits)
{
    unsigned __int128 m = (unsigned __int128)1 << bits;
    return (uint64_t)((unsigned __int128)v & (m - 1));
}

/* Exact modulo 2^128, which is all the wrap to <= 64 bits needs. */
static __int128
apply(uint32_t op, __int128 x)
{
    unsigned __int128 u = (unsigned __int128)x;
    return (__int128)(op == SA_OP_DOUBLE ? u * 2 : u * u);
}

static uint64_t
rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Fills a buffer of `dtype` with values including the type's extremes. */
static void
fill(uint32_t dtype, void *buf, uint64_t seed)
{
    size_t size = sa_dtype_size(dtype);
    uint64_t s = seed;
    unsigned char *p = buf;
    for (size_t i = 0; i < N; i++) {
        uint64_t r = rng_next(&s);
        if (dtype == SA_FLOAT32) {
            float f = (float)((int64_t)r % 2000000) / 1000.0f;
            memcpy(p + i * size, &f, size);
        } else if (dtype == SA_FLOAT64) {
            double f = (double)((int64_t)r % 2000000000) / 1000.0;
            memcpy(p + i * size, &f, size);
        } else {
            if (i == 0) {
                r = 0;
            } else if (i == 1) {
                r = UINT64_MAX; /* -1 / max */
            } else if (i == 2) {
                r = UINT64_C(1) << (size * 8 - 1); /* min of the signed type */
            } else if (i == 3) {
                r = (UINT64_C(1) << (size * 8 - 1)) - 1; /* max of the signed type */
            }
            memcpy(p + i * size, &r, size); /* little-endian: low bytes */
        }
    }
}

static void
check_kernel(uint32_t op, uint32_t dtype, int in_place)
{
    size_t size = sa_dtype_size(dtype);
    int bits = (int)size * 8;
    int is_signed = dtype <= SA_INT64;
    unsigned char in[N * 8], out[N * 8];
    sa__kernel_fn k = sa__kernel(op, dtype);

    CHECK(k != NULL);
    if (k == NULL) {
        return;
    }
    fill(dtype, in, 0x9e3779b97f4a7c15u ^ dtype ^ ((uint64_t)op << 8));
    memcpy(out, in, sizeof(in));
    k(in_place ? out : in, out, N);
    for (size_t i = 0; i < N; i++) {
        if (dtype == SA_FLOAT32) {
            float x, y;
            memcpy(&x, in + i * 4, 4);
            memcpy(&y, out + i * 4, 4);
            CHECK(y == (op == SA_OP_DOUBLE ? x * 2 : x * x));
        } else if (dtype == SA_FLOAT64) {
            double x, y;
            memcpy(&x, in + i * 8, 8);
            memcpy(&y, out + i * 8, 8);
            CHECK(y == (op == SA_OP_DOUBLE ? x * 2 : x * x));
        } else {
            uint64_t raw = 0, got = 0;
            memcpy(&raw, in + i * size, size);
            memcpy(&got, out + i * size, size);
            __int128 x = is_signed ? (__int128)wrap_signed(raw, bits) : (__int128)raw;
            __int128 r = apply(op, x);
            uint64_t want =
                is_signed ? wrap_unsigned(wrap_signed(r, bits), bits) : wrap_unsigned(r, bits);
            if (got != want) {
                fprintf(stderr, "  %s %s[%zu]: got %llx want %llx\n", sa_op_name(op),
                        sa_dtype_name(dtype), i, (unsigned long long)got, (unsigned long long)want);
                ctest_failed_checks++;
                return;
            }
        }
    }
}

static void
kernels_match_reference_out_of_place(void)
{
    for (uint32_t op = 1; op <= SA_OP_MAX; op++) {
        for (uint32_t d = 1; d <= SA_DTYPE_MAX; d++) {
            check_kernel(op, d, 0);
        }
    }
}

static void
kernels_match_reference_in_place(void)
{
    for (uint32_t op = 1; op <= SA_OP_MAX; op++) {
        for (uint32_t d = 1; d <= SA_DTYPE_MAX; d++) {
            check_kernel(op, d, 1);
        }
    }
}

static void
kernels_wrap_like_numpy(void)
{
    int8_t i8 = 100, r8;
    uint8_t u8 = 200, ru8;
    int64_t big = INT64_MAX, r64;
    sa__kernel(SA_OP_SQUARE, SA_INT8)(&i8, &r8, 1);
    CHECK_EQ(r8, 16); /* 10000 mod 256 */
    sa__kernel(SA_OP_DOUBLE, SA_UINT8)(&u8, &ru8, 1);
    CHECK_EQ(ru8, 144);
    sa__kernel(SA_OP_DOUBLE, SA_INT64)(&big, &r64, 1);
    CHECK_EQ(r64, -2);
}

static void
kernel_lookup_rejects_invalid(void)
{
    CHECK(sa__kernel(0, SA_INT8) == NULL);
    CHECK(sa__kernel(SA_OP_SQUARE, 0) == NULL);
    CHECK(sa__kernel(SA_OP_MAX + 1, SA_INT8) == NULL);
    CHECK(sa__kernel(SA_OP_SQUARE, SA_DTYPE_MAX + 1) == NULL);
}

static void
float_specials_propagate(void)
{
    double x[3] = {INFINITY, -INFINITY, NAN}, y[3];
    sa__kernel(SA_OP_SQUARE, SA_FLOAT64)(x, y, 3);
    CHECK(isinf(y[0]) && y[0] > 0);
    CHECK(isinf(y[1]) && y[1] > 0);
    CHECK(isnan(y[2]));
}

CTEST_MAIN("kernels", CTEST_CASE(kernels_match_reference_out_of_place),
           CTEST_CASE(kernels_match_reference_in_place), CTEST_CASE(kernels_wrap_like_numpy),
           CTEST_CASE(kernel_lookup_rejects_invalid), CTEST_CASE(float_specials_propagate))
