/* fault.c -- named crash points: SHMACCEL_FAULT=<point> makes the process abort() there.
 *
 * Used by the fault-injection tests to kill the worker or the client at each step of the
 * protocol. Unset (the normal case) it costs one relaxed load per point.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const char *fault_name;
static pthread_once_t fault_once = PTHREAD_ONCE_INIT;

static void
fault_init(void)
{
    const char *v = getenv("SHMACCEL_FAULT");
    fault_name = (v != NULL && v[0] != '\0') ? v : NULL;
}

void
sa__fault_point(const char *point)
{
    pthread_once(&fault_once, fault_init);
    if (fault_name != NULL && strcmp(fault_name, point) == 0) {
        abort();
    }
}
