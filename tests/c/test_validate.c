/* test_validate.c -- request validation: every way a slot's fields can be wrong. */
#include <errno.h>
#include <stdint.h>

#include "ctest.h"
#include "shmaccel.h"

#define ARENA 4096
#define MAXC (UINT64_C(1) << 40)

static sa_request
good(void)
{
    sa_request r = {.op = SA_OP_SQUARE,
                    .dtype = SA_FLOAT64,
                    .count = 16,
                    .in_arena = 0,
                    .out_arena = 0,
                    .in_offset = 0,
                    .out_offset = 1024};
    return r;
}

static void
validate_accepts_well_formed_requests(void)
{
    sa_request r = good();
    CHECK_EQ(sa_request_validate(&r, ARENA, ARENA, MAXC), 0);
    r.out_offset = r.in_offset; /* in place */
    CHECK_EQ(sa_request_validate(&r, ARENA, ARENA, MAXC), 0);
    r.count = 0;
    CHECK_EQ(sa_request_validate(&r, ARENA, ARENA, MAXC), 0);
    r = good();
    r.count = ARENA / 8; /* exactly fills the arena, in place */
    r.out_offset = 0;
    CHECK_EQ(sa_request_validate(&r, ARENA, ARENA, MAXC), 0);
}

static void
validate_rejects_bad_op(void)
{
    sa_request r = good();
    r.op = 0;
    CHECK_EQ(sa_request_validate(&r, ARENA, ARENA, MAXC), SA_EBADOP);
    r.op = SA_OP_MAX + 1;
    CHECK_EQ(sa_request_validate(&r, ARENA, ARENA, MAXC), SA_EBADOP);
    r.op = UINT32_MAX;
    CHECK_EQ(sa_request_validate(&r, ARENA, ARENA, MAXC), SA_EBADOP);
}

static void
validate_rejects_bad_dtype(void)
{
    sa_request r = good();
    r.dtype = 0;
    CHECK_EQ(sa_request_validate(&r, ARENA, ARENA, MAXC), SA_EBADDTYPE);
    r.dtype = SA_DTYPE_MAX + 1;
    CHECK_EQ(sa_request_validate(&r, ARENA, ARENA, MAXC), SA_EBADDTYPE);
}

static void
validate_rejects_count_above_limit(void)
{
    sa_request r = good();
    r.count = 1001;
    CHECK_EQ(sa_request_validate(&r, ARENA, ARENA, 1000), SA_ETOOBIG);
}

static void
validate_rejects_count_that_overflows_bytes(void)
{
    sa_request r = good();
    r.count = UINT64_MAX / 4; /* * 8 overflows */
    CHECK_EQ(sa_request_validate(&r, ARENA, ARENA, UINT64_MAX), SA_EBOUNDS);
    r.count = (UINT64_C(1) << 61) + 1;
    CHECK_EQ(sa_request_validate(&r, ARENA, ARENA, UINT64_MAX), SA_EBOUNDS);
}

static void
validate_rejects_offsets_that_overflow(void)
{
    sa_request r = good();
    r.in_offset = UINT64_MAX - 7; /* + 128 wraps to a small number */
    CHECK_EQ(sa_request_validate(&r, ARENA, ARENA, MAXC), SA_EBOUNDS);
    r = good();
    r.out_offset = UINT64_MAX - 63;
    CHECK_EQ(sa_request_validate(&r, ARENA, ARENA, MAXC), SA_EBOUNDS);
}

static void
validate_rejects_ranges_past_the_arena(void)
{
    sa_request r = good();
    r.in_offset = ARENA - 8 * 15; /* one element past the end */
    CHECK_EQ(sa_request_validate(&r, ARENA, ARENA, MAXC), SA_EBOUNDS);
    r = good();
    CHECK_EQ(sa_request_validate(&r, ARENA, 1024 + 8 * 15, MAXC), SA_EBOUNDS); /* out arena small */
    CHECK_EQ(sa_request_validate(&r, 0, ARENA, MAXC), SA_EBOUNDS);
}

static void
validate_rejects_misaligned_offsets(void)
{
    sa_request r = good();
    r.in_offset = 4;
    CHECK_EQ(sa_request_validate(&r, ARENA, ARENA, MAXC), SA_EBOUNDS);
    r = good();
    r.out_offset = 1025;
    CHECK_EQ(sa_request_validate(&r, ARENA, ARENA, MAXC), SA_EBOUNDS);
}

static void
validate_rejects_partial_overlap(void)
{
    sa_request r = good();
    r.out_offset = 8; /* shifted by one element */
    CHECK_EQ(sa_request_validate(&r, ARENA, ARENA, MAXC), SA_EOVERLAP);
    r.in_offset = 64;
    r.out_offset = 0;
    CHECK_EQ(sa_request_validate(&r, ARENA, ARENA, MAXC), SA_EOVERLAP);
    /* The same offsets in different arenas do not overlap. */
    r.out_arena = 1;
    CHECK_EQ(sa_request_validate(&r, ARENA, ARENA, MAXC), 0);
}

static void
errors_have_names(void)
{
    for (int code = SA__ERRLAST; code <= SA_EPROTO; code++) {
        CHECK(strcmp(sa_strerror(code), "unknown error") != 0);
    }
    CHECK(strstr(sa_strerror(-ENOENT), "No such file") != NULL);
    CHECK_EQ(strcmp(sa_strerror(12345), "unknown error"), 0);
}

static void
op_int64_fits_follows_exact_arithmetic(void)
{
    CHECK(sa_op_int64_fits(SA_OP_DOUBLE, (INT64_C(1) << 62) - 1));
    CHECK(!sa_op_int64_fits(SA_OP_DOUBLE, INT64_C(1) << 62));
    CHECK(sa_op_int64_fits(SA_OP_DOUBLE, -(INT64_C(1) << 62)));
    CHECK(!sa_op_int64_fits(SA_OP_DOUBLE, -(INT64_C(1) << 62) - 1));
    CHECK(sa_op_int64_fits(SA_OP_SQUARE, 3037000499));
    CHECK(!sa_op_int64_fits(SA_OP_SQUARE, 3037000500));
    CHECK(!sa_op_int64_fits(SA_OP_SQUARE, INT64_MIN));
    CHECK(!sa_op_int64_fits(SA_OP_SQUARE, INT64_C(1) << 32));
    CHECK(!sa_op_int64_fits(0, 1));
}

static void
op_int64_bounds_are_the_edges_of_fitting(void)
{
    int64_t lo, hi;
    CHECK_EQ(sa_op_int64_bounds(SA_OP_DOUBLE, &lo, &hi), 0);
    CHECK_EQ(lo, -(INT64_C(1) << 62));
    CHECK_EQ(hi, (INT64_C(1) << 62) - 1);
    CHECK_EQ(sa_op_int64_bounds(SA_OP_SQUARE, &lo, &hi), 0);
    CHECK_EQ(lo, -3037000499);
    CHECK_EQ(hi, 3037000499);
    for (uint32_t op = 1; op <= SA_OP_MAX; op++) {
        CHECK_EQ(sa_op_int64_bounds(op, &lo, &hi), 0);
        CHECK(sa_op_int64_fits(op, lo) && sa_op_int64_fits(op, hi) && sa_op_int64_fits(op, 0));
        CHECK(lo == INT64_MIN || !sa_op_int64_fits(op, lo - 1));
        CHECK(hi == INT64_MAX || !sa_op_int64_fits(op, hi + 1));
    }
    CHECK_EQ(sa_op_int64_bounds(0, &lo, &hi), SA_EBADOP);
    CHECK_EQ(sa_op_int64_bounds(SA_OP_MAX + 1, &lo, &hi), SA_EBADOP);
}

static void
names_round_trip(void)
{
    for (uint32_t d = 1; d <= SA_DTYPE_MAX; d++) {
        CHECK_EQ(sa_dtype_from_name(sa_dtype_name(d)), d);
        CHECK(sa_dtype_size(d) > 0);
    }
    CHECK_EQ(sa_dtype_from_name("float16"), SA_EBADDTYPE);
    CHECK(sa_dtype_name(0) == NULL);
    CHECK_EQ(sa_op_from_name("square"), SA_OP_SQUARE);
    CHECK_EQ(sa_op_from_name("cube"), SA_EBADOP);
}

static void
pool_names_are_restricted(void)
{
    char path[512];
    CHECK_EQ(sa_pool_socket_path("good-name_1.x", path, sizeof(path)), 0);
    CHECK(strstr(path, "/good-name_1.x.sock") != NULL);
    CHECK_EQ(sa_pool_socket_path("", path, sizeof(path)), -EINVAL);
    CHECK_EQ(sa_pool_socket_path("../x", path, sizeof(path)), -EINVAL);
    CHECK_EQ(sa_pool_socket_path(".hidden", path, sizeof(path)), -EINVAL);
    CHECK_EQ(sa_pool_socket_path("a/b", path, sizeof(path)), -EINVAL);
    CHECK_EQ(sa_pool_socket_path("x y", path, sizeof(path)), -EINVAL);
    CHECK_EQ(
        sa_pool_socket_path("a123456789012345678901234567890123456789012345678901234567890123456",
                            path, sizeof(path)),
        -EINVAL);
}

CTEST_MAIN("validate", CTEST_CASE(validate_accepts_well_formed_requests),
           CTEST_CASE(validate_rejects_bad_op), CTEST_CASE(validate_rejects_bad_dtype),
           CTEST_CASE(validate_rejects_count_above_limit),
           CTEST_CASE(validate_rejects_count_that_overflows_bytes),
           CTEST_CASE(validate_rejects_offsets_that_overflow),
           CTEST_CASE(validate_rejects_ranges_past_the_arena),
           CTEST_CASE(validate_rejects_misaligned_offsets),
           CTEST_CASE(validate_rejects_partial_overlap), CTEST_CASE(errors_have_names),
           CTEST_CASE(op_int64_fits_follows_exact_arithmetic),
           CTEST_CASE(op_int64_bounds_are_the_edges_of_fitting), CTEST_CASE(names_round_trip),
           CTEST_CASE(pool_names_are_restricted))
