/* fuzz_validate.c -- libFuzzer target: sa_request_validate against an independent model.
 *
 * Each input is one request plus the arena sizes and the pool's max_count, as the worker would
 * pass them (64 bytes, little-endian; a shorter input is padded with zeros, bytes past 64 are
 * ignored):
 *
 *   0 op u32 | 4 dtype u32 | 8 count u64 | 16 in_arena u32 | 20 out_arena u32
 *   24 in_offset u64 | 32 out_offset u64 | 40 in_size u64 | 48 out_size u64 | 56 max_count u64
 *
 * An accepted request must satisfy every invariant the pool threads rely on when they turn
 * offsets into pointers (checked below in 128-bit arithmetic, which cannot overflow), and every
 * verdict must equal the one of a model written from the contract in include/shmaccel.h. Any
 * disagreement aborts, so the fuzzer reports wrong answers, not only crashes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "shmaccel.h"

const char fuzz_target_name[] = "fuzz_validate";

typedef unsigned __int128 u128;

#define INPUT_SIZE 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct validate_case {
    sa_request req;
    uint64_t in_size, out_size, max_count;
} validate_case;

/* Element sizes by dtype, written out again rather than taken from sa_dtype_size. */
static uint64_t
model_itemsize(uint32_t dtype)
{
    static const uint8_t sizes[] = {0, 1, 2, 4, 8, 1, 2, 4, 8, 4, 8};
    return dtype < sizeof(sizes) ? sizes[dtype] : 0;
}

/* The verdict the contract asks for, checks in the documented order. */
static int
model_verdict(const validate_case *c)
{
    const sa_request *r = &c->req;
    uint64_t item = model_itemsize(r->dtype);
    u128 nbytes;

    if (r->op < 1 || r->op > SA_OP_MAX) {
        return SA_EBADOP;
    }
    if (item == 0) {
        return SA_EBADDTYPE;
    }
    if (r->count > c->max_count) {
        return SA_ETOOBIG;
    }
    nbytes = (u128)r->count * item;
    if (nbytes > UINT64_MAX || r->in_offset % item != 0 || r->out_offset % item != 0) {
        return SA_EBOUNDS;
    }
    if ((u128)r->in_offset + nbytes > c->in_size || (u128)r->out_offset + nbytes > c->out_size) {
        return SA_EBOUNDS;
    }
    if (r->in_arena == r->out_arena && r->in_offset != r->out_offset && nbytes > 0
        && (u128)r->in_offset < (u128)r->out_offset + nbytes
        && (u128)r->out_offset < (u128)r->in_offset + nbytes) {
        return SA_EOVERLAP;
    }
    return 0;
}

static void
fail(const validate_case *c, const char *what, int got)
{
    const sa_request *r = &c->req;
    fprintf(stderr,
            "fuzz_validate: %s (verdict %d)\n  op %u dtype %u count %llu in %u+%llu/%llu "
            "out %u+%llu/%llu max_count %llu\n",
            what, got, r->op, r->dtype, (unsigned long long)r->count, r->in_arena,
            (unsigned long long)r->in_offset, (unsigned long long)c->in_size, r->out_arena,
            (unsigned long long)r->out_offset, (unsigned long long)c->out_size,
            (unsigned long long)c->max_count);
    abort();
}

/* What pool.c relies on once a request is accepted: base + offset .. + nbytes inside each
 * mapping, typed pointers aligned (mappings are page-aligned), in place or disjoint. */
static void
check_accepted(const validate_case *c)
{
    const sa_request *r = &c->req;
    size_t item = sa_dtype_size(r->dtype);
    u128 nbytes = (u128)r->count * item;

    if (sa_op_name(r->op) == NULL || item == 0 || item != model_itemsize(r->dtype)) {
        fail(c, "accepted an unknown op or dtype", 0);
    }
    if (r->count > c->max_count) {
        fail(c, "accepted a count above max_count", 0);
    }
    if (nbytes > UINT64_MAX || nbytes > SIZE_MAX) {
        fail(c, "accepted a byte count that overflows", 0);
    }
    if (r->in_offset % item != 0 || r->out_offset % item != 0) {
        fail(c, "accepted a misaligned offset", 0);
    }
    if ((u128)r->in_offset + nbytes > c->in_size || (u128)r->out_offset + nbytes > c->out_size) {
        fail(c, "accepted a range outside its arena", 0);
    }
    if (r->in_arena == r->out_arena && r->in_offset != r->out_offset && nbytes > 0
        && !((u128)r->in_offset + nbytes <= r->out_offset
             || (u128)r->out_offset + nbytes <= r->in_offset)) {
        fail(c, "accepted a partial overlap", 0);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t buf[INPUT_SIZE] = {0};
    validate_case c;
    int got, want;

    memcpy(buf, data, size < INPUT_SIZE ? size : INPUT_SIZE);
    c.req = (sa_request){
        .op = le32(buf + 0),
        .dtype = le32(buf + 4),
        .count = le64(buf + 8),
        .in_arena = le32(buf + 16),
        .out_arena = le32(buf + 20),
        .in_offset = le64(buf + 24),
        .out_offset = le64(buf + 32),
    };
    c.in_size = le64(buf + 40);
    c.out_size = le64(buf + 48);
    c.max_count = le64(buf + 56);

    got = sa_request_validate(&c.req, c.in_size, c.out_size, c.max_count);
    if (got == 0) {
        check_accepted(&c);
    }
    want = model_verdict(&c);
    if (got != want) {
        fprintf(stderr, "fuzz_validate: expected verdict %d\n", want);
        fail(&c, "verdict differs from the contract", got);
    }
    /* A pure function: the same question twice gets the same answer. */
    if (sa_request_validate(&c.req, c.in_size, c.out_size, c.max_count) != got) {
        fail(&c, "verdict not repeatable", got);
    }
    return 0;
}
