/* errors.c -- sa_strerror: names for shmaccel's negative error codes and for -errno. */
#include <string.h>

#include "internal.h"

const char *
sa_strerror(int code)
{
    switch (code) {
    case 0:
        return "success";
    case SA_EPROTO:
        return "protocol error: malformed message or segment";
    case SA_EVERSION:
        return "worker and client protocol versions differ";
    case SA_EBADOP:
        return "unknown op";
    case SA_EBADDTYPE:
        return "unknown dtype";
    case SA_EBADARENA:
        return "arena not registered by this client";
    case SA_EBOUNDS:
        return "request range lies outside its arena";
    case SA_EOVERLAP:
        return "output partially overlaps input";
    case SA_ETOOBIG:
        return "request larger than the pool's limit";
    case SA_EWORKERDIED:
        return "the worker process died";
    case SA_ECLOSED:
        return "the pool is closed";
    case SA_EFULL:
        return "the pool has no room for another client";
    case SA_EFAULT:
        return "bus error reading the shared arena (was it truncated?)";
    default:
        break;
    }
    if (code < 0 && code > SA__ERRBASE) {
        /* strerror is not thread-safe in general, but glibc returns static strings for known
         * errno values, which is all we pass it. */
        return strerror(-code);
    }
    return "unknown error";
}
