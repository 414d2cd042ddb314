/* fault.c -- named fault points: SHMACCEL_FAULT=<point> makes the process abort() there.
 *
 * Used by the fault-injection tests to kill the worker or the client at each step of the
 * protocol. SHMACCEL_FAULT=<point>:sleep=<ms> instead stalls the first thread that reaches
 * the point for that long (once per process), as a preemption at the worst moment would;
 * with :skip=<n> after it, the thread that reaches it after n others have passed it (a pool
 * warmed up by n calls, its spinner busy).
 * Unset (the normal case) it costs one pthread_once check per point.
 *
 * The points, in protocol order (tests/test_crash_points.py finds every sa__fault_point call
 * in src/ and walks them all; a new point is covered once it is listed here):
 *
 *   client-arena-add         client_block.c  arena created and mapped, ARENA_ADD not yet sent
 *   worker-arena-add         session.c       ARENA_ADD and its descriptor received, not mapped
 *   worker-arena-registered  session.c       arena mapped and in the seat, reply not yet sent
 *   client-arena-registered  client_block.c  worker's reply received, arena not yet in use
 *   client-slot-claimed      client_req.c    slot FREE -> CLAIMED, no request field written
 *   client-request-written   client_req.c    request fields written, state not yet SUBMITTED
 *   client-worker-woken      client_req.c    SUBMITTED, pending bit set, `wake` posted
 *   worker-slot-claimed      pool.c          slot SUBMITTED -> RUNNING, request not yet read
 *   worker-chunk-done        pool.c          a chunk's kernel has run, chunk not yet counted
 *   worker-before-complete   pool.c          counters bumped, status and DONE not yet stored
 *   worker-after-complete    pool.c          DONE stored, `done` posted, notify socket signalled
 *
 * client-* points fire in the client library (C programs and the Python extension), worker-*
 * points in shmaccel-worker; a private worker inherits SHMACCEL_FAULT from its client.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static char fault_name[128];
static long fault_sleep_ms = -1; /* -1: abort at the point */
static long fault_skip;          /* hits let through before the one that stalls */
static atomic_long fault_hits;
static pthread_once_t fault_once = PTHREAD_ONCE_INIT;

static void
fault_init(void)
{
    const char *v = getenv("SHMACCEL_FAULT");
    if (v == NULL || v[0] == '\0' || strlen(v) >= sizeof(fault_name)) {
        return;
    }
    strcpy(fault_name, v);
    char *opt = strchr(fault_name, ':');
    if (opt != NULL) {
        *opt++ = '\0';
        if (strncmp(opt, "sleep=", 6) == 0) {
            fault_sleep_ms = strtol(opt + 6, &opt, 10);
            if (strncmp(opt, ":skip=", 6) == 0) {
                fault_skip = strtol(opt + 6, NULL, 10);
            }
        }
    }
}

void
sa__fault_point(const char *point)
{
    pthread_once(&fault_once, fault_init);
    if (fault_name[0] == '\0' || strcmp(fault_name, point) != 0) {
        return;
    }
    if (fault_sleep_ms < 0) {
        abort();
    }
    if (atomic_fetch_add(&fault_hits, 1) == fault_skip) {
        struct timespec ts = {fault_sleep_ms / 1000, (fault_sleep_ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
    }
}
