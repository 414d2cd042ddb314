/* worker_state.c -- the worker's private state: its seats, its jobs and the control segment.
 *
 * One place sets them up and tears them down, for the worker program (worker_main.c) and
 * for anything else that drives the worker's code in-process (the protocol fuzzer).
 */
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

/* Creates, maps and initialises the control segment. */
static int
control_create(sa__worker *w)
{
    void *p;
    int err;

    w->ctl_size = sa_control_size(w->max_clients);
    w->ctl_fd = sa__shm_create_sealed("ctl", w->ctl_size);
    if (w->ctl_fd < 0) {
        return w->ctl_fd;
    }
    if ((err = sa__shm_map(w->ctl_fd, w->ctl_size, &p)) < 0) {
        return err;
    }
    w->ctl = p;
    /* Fresh pages are zero: every slot starts FREE with generation 0. */
    w->ctl->magic = SA_MAGIC;
    w->ctl->version = SA_PROTO_VERSION;
    w->ctl->header_size = sizeof(sa_control);
    w->ctl->area_size = sizeof(sa_client_area);
    w->ctl->max_clients = w->max_clients;
    w->ctl->threads = w->threads;
    w->ctl->worker_pid = (int32_t)getpid();
    w->ctl->start_ns = sa__now_ns();
    w->ctl->max_count = w->max_count;
    if (sem_init(&w->ctl->wake, 1, 0) < 0) {
        return SA__ERR(errno);
    }
    return 0;
}

int
sa__worker_init(sa__worker *w)
{
    w->ctl_fd = -1;
    w->seats = calloc(w->max_clients, sizeof(*w->seats));
    w->jobs = calloc((size_t)w->max_clients * SA_SLOTS_PER_CLIENT, sizeof(*w->jobs));
    if (w->seats == NULL || w->jobs == NULL) {
        return -ENOMEM;
    }
    for (uint32_t s = 0; s < w->max_clients; s++) {
        w->seats[s].sock = -1;
        atomic_init(&w->seats[s].notify_fd, -1);
        pthread_mutex_init(&w->seats[s].lock, NULL);
    }
    pthread_mutex_init(&w->big_lock, NULL);
    return control_create(w);
}

void
sa__worker_free(sa__worker *w)
{
    /* Client sessions still open see hang-up when their sockets close here. */
    for (uint32_t s = 0; w->seats != NULL && s < w->max_clients; s++) {
        if (w->seats[s].sock >= 0) {
            close(w->seats[s].sock);
        }
        if (atomic_load(&w->seats[s].notify_fd) >= 0) {
            close(atomic_load(&w->seats[s].notify_fd));
        }
        for (uint32_t id = 0; id < SA__MAX_ARENAS; id++) {
            sa__arena_unref(w->seats[s].arenas[id]);
        }
        pthread_mutex_destroy(&w->seats[s].lock);
    }
    free(w->seats);
    free(w->jobs);
    w->seats = NULL;
    w->jobs = NULL;
    if (w->ctl != NULL) {
        munmap(w->ctl, w->ctl_size);
        w->ctl = NULL;
    }
    if (w->ctl_fd >= 0) {
        close(w->ctl_fd);
        w->ctl_fd = -1;
    }
}
