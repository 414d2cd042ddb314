/* dtype.c -- the op and dtype tables: names, element sizes, int64 range rules for lists. */
#include <string.h>

#include "internal.h"

static const struct {
    const char *name;
    size_t size;
} dtypes[SA_DTYPE_MAX + 1] = {
    [SA_INT8] = {"int8", 1},       [SA_INT16] = {"int16", 2},   [SA_INT32] = {"int32", 4},
    [SA_INT64] = {"int64", 8},     [SA_UINT8] = {"uint8", 1},   [SA_UINT16] = {"uint16", 2},
    [SA_UINT32] = {"uint32", 4},   [SA_UINT64] = {"uint64", 8}, [SA_FLOAT32] = {"float32", 4},
    [SA_FLOAT64] = {"float64", 8},
};

#define OP_NAME(NAME, N, name, expr, ...) [SA_OP_##NAME] = #name,
static const char *const ops[SA_OP_MAX + 1] = {SA_OP_LIST(OP_NAME, ~)};

size_t
sa_dtype_size(uint32_t dtype)
{
    return (dtype >= 1 && dtype <= SA_DTYPE_MAX) ? dtypes[dtype].size : 0;
}

const char *
sa_dtype_name(uint32_t dtype)
{
    return (dtype >= 1 && dtype <= SA_DTYPE_MAX) ? dtypes[dtype].name : NULL;
}

int
sa_dtype_from_name(const char *name)
{
    for (int d = 1; d <= SA_DTYPE_MAX; d++) {
        if (strcmp(name, dtypes[d].name) == 0) {
            return d;
        }
    }
    return SA_EBADDTYPE;
}

const char *
sa_op_name(uint32_t op)
{
    return (op >= 1 && op <= SA_OP_MAX) ? ops[op] : NULL;
}

int
sa_op_from_name(const char *name)
{
    for (int op = 1; op <= SA_OP_MAX; op++) {
        if (strcmp(name, ops[op]) == 0) {
            return op;
        }
    }
    return SA_EBADOP;
}

/* Each op evaluated exactly on __int128 (wide enough for the square of any int64). */
#define OP_FITS(NAME, N, name, expr, ...) \
    case SA_OP_##NAME: { \
        __int128 r = (expr); \
        return r >= INT64_MIN && r <= INT64_MAX; \
    }

int
sa_op_int64_fits(uint32_t op, int64_t value)
{
    __int128 x = value;
    switch (op) {
        SA_OP_LIST(OP_FITS, ~)
    default:
        return 0;
    }
}

/* Binary search for the last x from `from` towards `to` (inclusive) with op(x) fitting, given
 * that op(from) fits and the fitting values form an interval: the first failure ends it. */
static int64_t
fit_edge(uint32_t op, int64_t from, int64_t to)
{
    __int128 good = from, bad = (__int128)to + (to >= from ? 1 : -1);
    while (bad - good > 1 || good - bad > 1) {
        __int128 mid = good + (bad - good) / 2;
        if (sa_op_int64_fits(op, (int64_t)mid)) {
            good = mid;
        } else {
            bad = mid;
        }
    }
    return (int64_t)good;
}

int
sa_op_int64_bounds(uint32_t op, int64_t *lo, int64_t *hi)
{
    if (op < 1 || op > SA_OP_MAX || !sa_op_int64_fits(op, 0)) {
        return SA_EBADOP;
    }
    *lo = fit_edge(op, 0, INT64_MIN);
    *hi = fit_edge(op, 0, INT64_MAX);
    return 0;
}
