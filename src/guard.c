/* guard.c -- survives client memory that vanishes under a kernel (SIGBUS).
 *
 * A client can ftruncate() an arena it registered; the worker's mapping then stays, but
 * touching a page past the new end raises SIGBUS. Kernels run under a guard: a per-thread
 * jump buffer that the SIGBUS handler returns to, so the fault fails that request with
 * SA_EFAULT and the worker goes on. A SIGBUS outside a guard is a real bug: the handler
 * restores the default action and the signal kills the process as it always would.
 */
#include <setjmp.h>
#include <signal.h>
#include <string.h>

#include "internal.h"

/* The innermost active guard of this thread (guards nest: a thread may serve a new request
 * in the middle of a kernel call). volatile: the handler reads it asynchronously. */
static _Thread_local sigjmp_buf *volatile tl_guard;

static void
on_sigbus(int sig, siginfo_t *info, void *context)
{
    (void)info;
    (void)context;
    sigjmp_buf *guard = tl_guard;
    if (guard == NULL) {
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    /* The mask is left as it was: SA_NODEFER keeps SIGBUS unblocked in the handler, and the
     * buffer was saved without the mask (no syscall per guarded call). */
    siglongjmp(*guard, 1);
}

int
sa__guard_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    return sigaction(SIGBUS, &sa, NULL) == 0 ? 0 : SA__ERR(errno);
}

int
sa__guarded(void (*fn)(void *), void *arg)
{
    sigjmp_buf buf;
    sigjmp_buf *volatile outer = tl_guard;
    if (sigsetjmp(buf, 0) != 0) {
        tl_guard = outer;
        return SA_EFAULT;
    }
    tl_guard = &buf;
    fn(arg);
    tl_guard = outer;
    return 0;
}
