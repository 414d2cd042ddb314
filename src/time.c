/* time.c -- monotonic clock helpers: every wait in shmaccel is on CLOCK_MONOTONIC. */
#include "internal.h"

uint64_t
sa__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

struct timespec
sa__deadline_in(int64_t ns)
{
    uint64_t t = sa__now_ns() + (uint64_t)(ns < 0 ? 0 : ns);
    struct timespec ts = {.tv_sec = (time_t)(t / 1000000000u), .tv_nsec = (long)(t % 1000000000u)};
    return ts;
}
