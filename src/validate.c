/* validate.c -- validation of a request copied out of a slot, with overflow-checked arithmetic.
 *
 * The worker calls this on its private copy (sa_request) with arena sizes it got from fstat;
 * nothing here reads shared memory, so a client rewriting its slot cannot change the verdict.
 */
#include "internal.h"

/* Checks that [offset, offset + nbytes) fits in an arena of arena_size bytes. */
static int
range_fits(uint64_t offset, uint64_t nbytes, uint64_t arena_size)
{
    uint64_t end;
    if (__builtin_add_overflow(offset, nbytes, &end)) {
        return 0;
    }
    return end <= arena_size;
}

int
sa_request_validate(const sa_request *req, uint64_t in_arena_size, uint64_t out_arena_size,
                    uint64_t max_count)
{
    uint64_t nbytes;
    size_t itemsize;

    if (sa_op_name(req->op) == NULL) {
        return SA_EBADOP;
    }
    itemsize = sa_dtype_size(req->dtype);
    if (itemsize == 0) {
        return SA_EBADDTYPE;
    }
    if (req->count > max_count) {
        return SA_ETOOBIG;
    }
    if (__builtin_mul_overflow(req->count, (uint64_t)itemsize, &nbytes)) {
        return SA_EBOUNDS;
    }
    /* Element alignment: the kernels read typed pointers. */
    if (req->in_offset % itemsize != 0 || req->out_offset % itemsize != 0) {
        return SA_EBOUNDS;
    }
    if (!range_fits(req->in_offset, nbytes, in_arena_size)
        || !range_fits(req->out_offset, nbytes, out_arena_size)) {
        return SA_EBOUNDS;
    }
    /* Exactly in place is fine; a partial overlap would make the chunked result depend on the
     * order in which threads run, so it is refused. Both ranges are known not to overflow. */
    if (req->in_arena == req->out_arena && req->in_offset != req->out_offset && nbytes > 0) {
        if (req->in_offset < req->out_offset + nbytes
            && req->out_offset < req->in_offset + nbytes) {
            return SA_EOVERLAP;
        }
    }
    return 0;
}
