/* session.c -- the worker's session loop: accepts clients, registers arenas, reclaims seats.
 *
 * One thread polls the listening socket (named pools), the client sockets and a signalfd.
 * A new client gets a seat (a client area of the control segment) and the control segment's
 * descriptor; it then registers arenas by sending their descriptors. EOF on a client socket
 * means the client is gone: its slots are reclaimed (a running job is marked ABANDONED and
 * freed by the pool thread that finishes it), its arenas unmapped once no job uses them (off
 * this thread) and its notify socket closed once its seat is quiet.
 */
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "internal.h"

#define MAX_ARENA_BYTES (UINT64_C(1) << 40)
#define SOCKET_STALL_US 200000

static void
set_active(sa__worker *w, uint32_t seat, int on)
{
    unsigned bit = 1u << (seat % 32);
    if (on) {
        atomic_fetch_or(&w->active_seats[seat / 32], bit);
    } else {
        atomic_fetch_and(&w->active_seats[seat / 32], ~bit);
    }
}

/* Whether a detached seat may be reused: no pool thread still works for it (counted in
 * worker-private memory, decremented after the job's last semaphore post) and every slot
 * is FREE. */
static int
seat_quiet(sa__worker *w, uint32_t s)
{
    sa_client_area *area = sa_control_area(w->ctl, s);
    if (atomic_load_explicit(&w->seats[s].jobs, memory_order_acquire) != 0) {
        return 0;
    }
    for (uint32_t i = 0; i < SA_SLOTS_PER_CLIENT; i++) {
        uint64_t word = atomic_load_explicit(&area->slots[i].state, memory_order_acquire);
        uint32_t state = sa_slot_word_state(word);
        if (state == SA_SLOT_RUNNING || state == SA_SLOT_ABANDONED) {
            return 0; /* the job count above says otherwise only for a scribbled word */
        }
        if (state != SA_SLOT_FREE) {
            /* The client is gone; whatever it left (or scribbled) no pool thread owns. */
            atomic_store(&area->slots[i].state,
                         sa_slot_word(sa_slot_word_gen(word) + 1, SA_SLOT_FREE));
        }
    }
    return 1;
}

/* Gives the new client on `sock` a seat and the control segment. Takes ownership of sock. */
static void
attach(sa__worker *w, int sock)
{
    sa_msg hello = {.magic = SA_MAGIC, .type = SA_MSG_HELLO};
    uint32_t uid;
    int32_t pid = 0;
    uint32_t s;

    if (sa__peer_cred(sock, &uid, &pid) < 0 || uid != (uint32_t)geteuid()) {
        /* Another user: refused before anything of the pool is shown to it. */
        hello.status = -EPERM;
        sa__msg_send(sock, &hello, -1);
        close(sock);
        return;
    }
    for (s = 0; s < w->max_clients; s++) {
        sa__seat *seat = &w->seats[s];
        if (seat->sock < 0 && (!seat->detached || seat_quiet(w, s))) {
            break;
        }
    }
    if (s == w->max_clients || atomic_load(&w->ctl->stopping)) {
        hello.status = s == w->max_clients ? SA_EFULL : SA_ECLOSED;
        sa__msg_send(sock, &hello, -1);
        close(sock);
        return;
    }

    /* The session thread serves everyone: a client sending half a message, or never reading
     * its replies, may cost it at most this long, and then loses its session. */
    struct timeval limit = {.tv_sec = 0, .tv_usec = SOCKET_STALL_US};
    setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
    setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof(limit));

    /* The seat is quiet: no pool thread and no former client touches its area any more, so
     * it can be reset with plain stores before the active bit publishes it. */
    sa_client_area *area = sa_control_area(w->ctl, s);
    sem_destroy(&area->slot_free);
    sem_init(&area->slot_free, 1, SA_SLOTS_PER_CLIENT);
    for (uint32_t i = 0; i < SA_SLOTS_PER_CLIENT; i++) {
        sem_destroy(&area->slots[i].done);
        sem_init(&area->slots[i].done, 1, 0);
    }
    atomic_store(&area->pending, 0);
    atomic_store(&area->worker_spinning, 0);
    atomic_store(&area->stopping, 0);
    atomic_store(&area->client_pid, pid);
    atomic_store(&area->requests, 0);
    atomic_store(&area->elements, 0);
    atomic_store(&area->errors, 0);
    atomic_fetch_add(&area->seat_generation, 1);
    atomic_store(&area->attached, 1);

    int old_notify = atomic_exchange(&w->seats[s].notify_fd, -1);
    if (old_notify >= 0) {
        close(old_notify); /* the previous client's, now that no job of it remains */
    }
    w->seats[s].sock = sock;
    w->seats[s].detached = 0;
    hello.arg32 = s;
    hello.arg64 = w->ctl_size;
    if (sa__msg_send(sock, &hello, w->ctl_fd) < 0) {
        atomic_store(&area->attached, 0);
        w->seats[s].sock = -1;
        close(sock);
        return;
    }
    atomic_fetch_add(&w->ctl->clients, 1);
    set_active(w, s, 1);
}

/* Thread body of release_arenas: drops the references in a NULL-ended array, then frees it. */
static void *
arena_release_thread(void *arg)
{
    sa__arena **list = arg;
    for (sa__arena **a = list; *a != NULL; a++) {
        sa__arena_unref(*a);
    }
    free(list);
    return NULL;
}

/* Drops the worker's references to a departed client's arenas (a NULL-ended array, consumed).
 * The client's own mappings died with it, so the worker's last munmap frees the pages: about
 * a millisecond per MiB on a virtual machine, a second for a client with a full arena cache.
 * That runs on a short-lived thread of its own, so that the session thread goes on serving the
 * other clients, and reclaims the next departure at once; inline if no thread can start. */
static void
release_arenas(sa__arena **list)
{
    pthread_attr_t attr;
    pthread_t tid;
    int err = pthread_attr_init(&attr);

    if (err == 0) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        err = pthread_create(&tid, &attr, arena_release_thread, list);
        pthread_attr_destroy(&attr);
    }
    if (err != 0) {
        arena_release_thread(list);
    }
}

/* The client of seat `s` is gone: reclaim its slots and arenas. */
static void
detach(sa__worker *w, uint32_t s)
{
    sa__seat *seat = &w->seats[s];
    sa_client_area *area = sa_control_area(w->ctl, s);

    set_active(w, s, 0);
    close(seat->sock);
    seat->sock = -1;
    seat->detached = 1;

    for (uint32_t i = 0; i < SA_SLOTS_PER_CLIENT; i++) {
        sa_slot *slot = &area->slots[i];
        uint64_t word = atomic_load(&slot->state);
        for (;;) {
            uint64_t gen = sa_slot_word_gen(word);
            uint32_t state = sa_slot_word_state(word);
            uint64_t next;
            if (state == SA_SLOT_FREE || state == SA_SLOT_ABANDONED) {
                break;
            }
            /* A running job is left to its pool thread, which frees the slot when done;
             * anything else (claimed, submitted, done, or garbage) is freed now. The CAS loses
             * to a pool thread that claims or completes the slot at the same moment, and then
             * we look again. */
            next = state == SA_SLOT_RUNNING ? sa_slot_word(gen, SA_SLOT_ABANDONED)
                                            : sa_slot_word(gen + 1, SA_SLOT_FREE);
            if (atomic_compare_exchange_weak(&slot->state, &word, next)) {
                break;
            }
        }
    }

    /* The arenas leave the seat under its lock (a pool thread may be looking one up); jobs
     * still running hold references of their own. */
    sa__arena **gone = calloc(SA__MAX_ARENAS + 1, sizeof(*gone));
    size_t ngone = 0;
    pthread_mutex_lock(&seat->lock);
    for (uint32_t id = 0; id < SA__MAX_ARENAS; id++) {
        sa__arena *a = seat->arenas[id];
        seat->arenas[id] = NULL;
        if (a != NULL && gone != NULL) {
            gone[ngone++] = a;
        } else if (a != NULL) {
            sa__arena_unref(a); /* no memory for the list: here and now */
        }
    }
    pthread_mutex_unlock(&seat->lock);

    /* The session is over for everyone to see before its memory is freed. */
    atomic_store(&area->attached, 0);
    atomic_fetch_sub(&w->ctl->clients, 1);
    if (ngone > 0) {
        release_arenas(gone);
    } else {
        free(gone);
    }
}

/* Closes the notify sockets of departed clients whose seats have gone quiet: until then a job the
 * client left running may still signal it. Returns whether one is still waiting. */
static int
close_departed_notify(sa__worker *w)
{
    int waiting = 0;
    for (uint32_t s = 0; s < w->max_clients; s++) {
        sa__seat *seat = &w->seats[s];
        if (seat->sock >= 0 || !seat->detached || atomic_load(&seat->notify_fd) < 0) {
            continue;
        }
        if (seat_quiet(w, s)) {
            close(atomic_exchange(&seat->notify_fd, -1));
        } else {
            waiting = 1;
        }
    }
    return waiting;
}

/* Maps the arena the client sent. Returns 0 or the error for the reply; consumes fd. */
static int
arena_add(sa__seat *seat, uint32_t id, int fd)
{
    sa__arena *a = NULL;
    struct stat st;
    void *base;
    int err;

    if (fd < 0) {
        return SA_EPROTO;
    }
    if (id >= SA__MAX_ARENAS) {
        err = SA_EBADARENA;
        goto out;
    }
    /* The size comes from fstat of the descriptor, never from the client's message. */
    if (fstat(fd, &st) < 0) {
        err = SA__ERR(errno);
        goto out;
    }
    if (!S_ISREG(st.st_mode) || st.st_size <= 0 || (uint64_t)st.st_size > MAX_ARENA_BYTES) {
        err = SA_EBADARENA;
        goto out;
    }
    /* Clients reserve every page of an arena before sending it (sa__shm_create). One with
     * holes is refused: MAP_POPULATE below would allocate them with the worker's memory, on
     * the session thread that serves everyone (a 1 TiB sparse memfd took all of RAM). */
    if ((uint64_t)st.st_blocks * 512 < (uint64_t)st.st_size) {
        err = SA_EBADARENA;
        goto out;
    }
    if ((err = sa__shm_map(fd, (size_t)st.st_size, &base)) < 0) {
        goto out;
    }
    a = malloc(sizeof(*a));
    if (a == NULL) {
        munmap(base, (size_t)st.st_size);
        err = -ENOMEM;
        goto out;
    }
    a->base = base;
    a->size = (uint64_t)st.st_size;
    atomic_init(&a->refs, 1);
    pthread_mutex_lock(&seat->lock);
    if (seat->arenas[id] != NULL) {
        err = SA_EBADARENA;
    } else {
        seat->arenas[id] = a;
        a = NULL;
    }
    pthread_mutex_unlock(&seat->lock);
    sa__arena_unref(a);

out:
    close(fd);
    return err;
}

static int
arena_del(sa__seat *seat, uint32_t id)
{
    sa__arena *a = NULL;
    if (id >= SA__MAX_ARENAS) {
        return SA_EBADARENA;
    }
    pthread_mutex_lock(&seat->lock);
    a = seat->arenas[id];
    seat->arenas[id] = NULL;
    pthread_mutex_unlock(&seat->lock);
    if (a == NULL) {
        return SA_EBADARENA;
    }
    /* Jobs still using it hold their own references; the mapping outlives them. */
    sa__arena_unref(a);
    return 0;
}

int
sa__session_handle(sa__worker *w, uint32_t s, const sa_msg *msg, int fd)
{
    sa__seat *seat = &w->seats[s];
    sa_msg reply = {.magic = SA_MAGIC, .type = SA_MSG_REPLY};

    switch (msg->type) {
    case SA_MSG_ARENA_ADD:
        sa__fault_point("worker-arena-add");
        reply.status = arena_add(seat, msg->arg32, fd);
        fd = -1;
        sa__fault_point("worker-arena-registered");
        break;
    case SA_MSG_NOTIFY: {
        /* One-way: a client must be able to register while the pool is busy or stopped.
         * A second registration is ignored (the first fd may be in use by pool threads), and
         * so is anything but a socket (pool threads signal it with send(MSG_DONTWAIT)). */
        int expected = -1, type = 0;
        socklen_t len = sizeof(type);
        if (fd >= 0 && getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0
            && atomic_compare_exchange_strong(&seat->notify_fd, &expected, fd)) {
            fd = -1; /* kept until the seat is reused */
        }
        if (fd >= 0) {
            close(fd);
        }
        return 0;
    }
    case SA_MSG_SYNC:
        reply.status = 0; /* messages are handled in order: all before it are done */
        break;
    case SA_MSG_ARENA_DEL:
        /* One-way: the client never waits for this (it may hold the GIL). An unknown id is
         * the client's own confusion and costs it nothing but the message. */
        arena_del(seat, msg->arg32);
        if (fd >= 0) {
            close(fd);
        }
        return 0;
    default:
        reply.status = SA_EPROTO;
        break;
    }
    if (fd >= 0) {
        close(fd);
    }
    reply.arg32 = msg->arg32;
    reply.arg64 = msg->arg64; /* the client's sequence number: late replies are recognised */
    if (reply.status == SA_EPROTO) {
        return SA_EPROTO;
    }
    return sa__msg_send(seat->sock, &reply, -1);
}

/* Handles one readable client socket. Returns 0, or <0 when the session must end. */
static int
handle_client(sa__worker *w, uint32_t s)
{
    sa_msg msg;
    int fd = -1;
    int err = sa__msg_recv(w->seats[s].sock, &msg, &fd);

    if (err < 0) {
        return err;
    }
    return sa__session_handle(w, s, &msg, fd);
}

/* Whether any slot of any seat still has a request queued or running. */
static int
work_in_flight(sa__worker *w)
{
    for (uint32_t s = 0; s < w->max_clients; s++) {
        sa_client_area *area = sa_control_area(w->ctl, s);
        if (atomic_load(&w->seats[s].jobs) != 0) {
            return 1;
        }
        if (w->seats[s].sock < 0) {
            continue; /* a departed client's leftovers are not work in flight */
        }
        for (uint32_t i = 0; i < SA_SLOTS_PER_CLIENT; i++) {
            uint32_t st = sa_slot_word_state(atomic_load(&area->slots[i].state));
            if (st == SA_SLOT_SUBMITTED || st == SA_SLOT_RUNNING || st == SA_SLOT_ABANDONED) {
                return 1;
            }
        }
    }
    return 0;
}

/* The first step of a graceful stop: no new clients, no new requests, everyone told. */
static void
begin_stop(sa__worker *w)
{
    sa_msg note = {.magic = SA_MAGIC, .type = SA_MSG_STOPPING};
    atomic_store(&w->ctl->stopping, 1);
    for (uint32_t s = 0; s < w->max_clients; s++) {
        if (w->seats[s].sock >= 0) {
            atomic_store(&sa_control_area(w->ctl, s)->stopping, 1);
            /* Best effort and never blocking: a client that does not read its socket learns
             * it from the seat flag or the hang-up. */
            send(w->seats[s].sock, &note, sizeof(note), MSG_DONTWAIT | MSG_NOSIGNAL);
        }
    }
}

int
sa__serve(sa__worker *w, int listen_fd, int private_fd, int signal_fd,
          void (*on_stop)(int listen_fd), uint64_t grace_ns)
{
    uint64_t stop_deadline = 0;
    struct pollfd *pfd = calloc((size_t)w->max_clients + 2, sizeof(*pfd));
    uint32_t *seat_of = calloc((size_t)w->max_clients + 2, sizeof(*seat_of));
    int private_seat = -1;
    int err = 0;

    if (pfd == NULL || seat_of == NULL) {
        err = -ENOMEM;
        goto out;
    }
    if (private_fd >= 0) {
        attach(w, private_fd);
        if (w->seats[0].sock != private_fd) {
            err = SA_EPROTO;
            goto out;
        }
        private_seat = 0;
    }

    while (!atomic_load(&w->stop)) {
        nfds_t n = 0;
        int r, timeout_ms = -1;
        if (stop_deadline != 0) {
            if (!work_in_flight(w) || sa__now_ns() >= stop_deadline) {
                break;
            }
            timeout_ms = 10; /* look again for the end of the requests in flight */
        }
        if (close_departed_notify(w)) {
            timeout_ms = 10; /* and for the end of a departed client's last jobs */
        }
        pfd[n++] = (struct pollfd){.fd = signal_fd, .events = POLLIN};
        pfd[n++] = (struct pollfd){.fd = listen_fd, .events = POLLIN}; /* -1 is ignored */
        for (uint32_t s = 0; s < w->max_clients; s++) {
            if (w->seats[s].sock >= 0) {
                seat_of[n] = s;
                pfd[n++] = (struct pollfd){.fd = w->seats[s].sock, .events = POLLIN};
            }
        }
        SA__NOINTR(r, poll(pfd, n, timeout_ms));
        if (r < 0) {
            err = SA__ERR(errno);
            break;
        }
        if (pfd[0].revents & POLLIN) {
            struct signalfd_siginfo si;
            if (read(signal_fd, &si, sizeof(si)) > 0) {
                if (stop_deadline != 0) {
                    break; /* a second signal: stop now */
                }
                /* SIGTERM or SIGINT: stop taking work, finish what is in flight. */
                on_stop(listen_fd);
                listen_fd = -1;
                begin_stop(w);
                stop_deadline = sa__now_ns() + grace_ns;
                continue;
            }
        }
        if (pfd[1].revents & POLLIN) {
            int sock = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
            if (sock >= 0) {
                attach(w, sock);
            }
        }
        for (nfds_t i = 2; i < n; i++) {
            uint32_t s = seat_of[i];
            if (pfd[i].revents == 0) {
                continue;
            }
            if (handle_client(w, s) < 0) {
                detach(w, s);
                if ((int)s == private_seat) {
                    goto out; /* our owner is gone: the private pool ends with it */
                }
            }
        }
    }

out:
    free(pfd);
    free(seat_of);
    return err;
}
