/* fault.c -- named fault points: SHMACCEL_FAULT=<point> makes the process abort() there.
 *
 * Used by the fault-injection tests to kill the worker or the client at each step of the
 * protocol. SHMACCEL_FAULT=<point>:sleep=<ms> instead stalls the first thread that reaches
 * the point for that long (once per process), as a preemption at the worst moment would.
 * Unset (the normal case) it costs one pthread_once check per point.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static char fault_name[128];
static long fault_sleep_ms = -1; /* -1: abort at the point */
static atomic_int fault_slept;
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
            fault_sleep_ms = strtol(opt + 6, NULL, 10);
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
    if (atomic_exchange(&fault_slept, 1) == 0) {
        struct timespec ts = {fault_sleep_ms / 1000, (fault_sleep_ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
    }
}
