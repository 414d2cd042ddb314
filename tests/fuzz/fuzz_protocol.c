/* fuzz_protocol.c -- libFuzzer target: the worker's handling of client messages, for real.
 *
 * One input is one client session of seat 0 of an in-process worker set up as worker_main.c
 * does (control segment, seats; no pool threads). Each record of the input becomes a 24-byte
 * message sent over a real Unix socketpair, possibly with real descriptors attached; the
 * worker side receives it with sa__msg_recv and hands it to sa__session_handle, exactly as
 * the session loop does. The session ends at the end of the input or when the worker says
 * so; then everything the seat holds is released as the worker does at exit.
 *
 * Record layout (33 bytes; a trailing partial record is ignored):
 *
 *   0      kind: bits 0-3 what to attach (enum attach below), bit 4 set the magic right,
 *          bit 5 type %= 8 (so every type is near), bit 6 send only `size % 24` bytes of
 *          the message and close (the client dies mid-message; last record), bit 7 arg32 %= 4
 *          (arena ids that collide)
 *   1..8   size (u64 little-endian): the attached object's size, per kind
 *   9..32  the message (sa_msg, little-endian as on the wire)
 *
 * Checked for every message, besides ASan/UBSan and ASan's leak check: the worker answers
 * exactly the messages that ask for an answer (ARENA_ADD), echoing arg32/arg64; an arena is
 * registered iff the reply says 0, and then under the size fstat gives, a regular file, fully
 * allocated by the client (mapping it must cost the worker no memory of its own); ARENA_DEL
 * and NOTIFY stay one-way; only malformed messages end the session. After each session, no
 * descriptor is left open and no arena mapped (/proc/self/maps).
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "internal.h"
#include "fuzz_util.h"

const char fuzz_target_name[] = "fuzz_protocol";

#define RECORD_SIZE 33
#define SMALL_MAX (UINT64_C(1) << 20)  /* allocated memfds: up to 1 MiB */
#define LARGE_MAX (UINT64_C(16) << 20) /* ... or up to 16 MiB (kind ATTACH_MEMFD_LARGE) */
#define MAX_FDS 8

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum attach {
    ATTACH_NONE = 0,
    ATTACH_MEMFD = 1,        /* fully allocated, size % (1 MiB + 1), 0 included */
    ATTACH_MEMFD_SPARSE = 2, /* ftruncate only: any size up to INT64_MAX, nothing allocated */
    ATTACH_MEMFD_SHRUNK = 3, /* allocated, then truncated after sending, before the worker looks */
    ATTACH_MEMFD_RDONLY = 4, /* allocated, sent as a read-only descriptor */
    ATTACH_MEMFD_SEALED = 5, /* allocated, F_SEAL_WRITE: no writable shared mapping */
    ATTACH_EVENTFD = 6,
    ATTACH_PIPE = 7, /* the write end (a full pipe blocks writers) */
    ATTACH_SOCKET = 8,
    ATTACH_DEVNULL = 9, /* a character device */
    ATTACH_DIRECTORY = 10,
    ATTACH_TMPFILE = 11,     /* a regular file on disk (O_TMPFILE), allocated */
    ATTACH_TWO_MEMFDS = 12,  /* the worker keeps the first, closes the second */
    ATTACH_CONTROL = 13,     /* the worker's own control segment, as a client got it in HELLO */
    ATTACH_EIGHT_FDS = 14,   /* more than sa__msg_recv has room for: the rest are truncated */
    ATTACH_MEMFD_LARGE = 15, /* fully allocated, size % (16 MiB + 1) */
};

#define KIND_MAGIC 0x10u
#define KIND_TYPE_MOD 0x20u
#define KIND_PARTIAL 0x40u
#define KIND_ID_MOD 0x80u

static sa__worker worker;

/* The worker as worker_main.c builds it: one seat, its control segment, no pool threads. */
static void
worker_init(void)
{
    worker.max_clients = 1;
    worker.threads = 1;
    worker.max_count = SA__DEFAULT_MAX_COUNT;
    if (sa__worker_init(&worker) < 0) {
        die("cannot set up the worker");
    }
}

/* Seat 0 gets the worker's end of a new session, with the limits attach() sets. */
static void
session_open(int sock)
{
    struct timeval limit = {.tv_sec = 0, .tv_usec = 200000};
    setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
    setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof(limit));
    worker.seats[0].sock = sock;
    worker.seats[0].detached = 0;
}

/* Releases what the seat holds, as the worker does when a session ends (detach, exit). */
static void
session_close(void)
{
    sa__seat *seat = &worker.seats[0];
    int notify = atomic_exchange(&seat->notify_fd, -1);

    close(seat->sock);
    seat->sock = -1;
    if (notify >= 0) {
        close(notify);
    }
    pthread_mutex_lock(&seat->lock);
    for (uint32_t id = 0; id < SA__MAX_ARENAS; id++) {
        sa__arena_unref(seat->arenas[id]);
        seat->arenas[id] = NULL;
    }
    pthread_mutex_unlock(&seat->lock);
}

static int
memfd(uint64_t size, int allocate, unsigned flags)
{
    int fd = memfd_create("fuzz-arena", MFD_CLOEXEC | flags);
    if (fd < 0) {
        die("memfd_create");
    }
    if (size > INT64_MAX) {
        size = INT64_MAX;
    }
    if (ftruncate(fd, (off_t)size) < 0) {
        die("ftruncate");
    }
    if (allocate && size > 0 && posix_fallocate(fd, 0, (off_t)size) != 0) {
        die("posix_fallocate");
    }
    return fd;
}

/* Makes the descriptors of `kind`; returns how many (0..MAX_FDS) in fds[]. The caller keeps
 * its copies until the worker has handled the message (a client may close them any time). */
static int
make_fds(unsigned kind, uint64_t size, int *fds)
{
    char path[64];
    int pair[2];

    switch (kind) {
    case ATTACH_MEMFD:
    case ATTACH_MEMFD_SHRUNK:
        fds[0] = memfd(size % (SMALL_MAX + 1), 1, 0);
        return 1;
    case ATTACH_MEMFD_LARGE:
        fds[0] = memfd(size % (LARGE_MAX + 1), 1, 0);
        return 1;
    case ATTACH_MEMFD_SPARSE:
        fds[0] = memfd(size, 0, 0);
        return 1;
    case ATTACH_MEMFD_RDONLY:
        pair[0] = memfd(size % (SMALL_MAX + 1), 1, 0);
        snprintf(path, sizeof(path), "/proc/self/fd/%d", pair[0]);
        fds[0] = open(path, O_RDONLY | O_CLOEXEC);
        close(pair[0]);
        return fds[0] >= 0;
    case ATTACH_MEMFD_SEALED:
        fds[0] = memfd(size % (SMALL_MAX + 1), 1, MFD_ALLOW_SEALING);
        fcntl(fds[0], F_ADD_SEALS, F_SEAL_WRITE);
        return 1;
    case ATTACH_EVENTFD:
        fds[0] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        return fds[0] >= 0;
    case ATTACH_PIPE:
        if (pipe2(pair, O_CLOEXEC) < 0) {
            return 0;
        }
        close(pair[0]);
        fds[0] = pair[1];
        return 1;
    case ATTACH_SOCKET:
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0) {
            return 0;
        }
        close(pair[1]);
        fds[0] = pair[0];
        return 1;
    case ATTACH_DEVNULL:
        fds[0] = open("/dev/null", O_RDWR | O_CLOEXEC);
        return fds[0] >= 0;
    case ATTACH_DIRECTORY:
        fds[0] = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        return fds[0] >= 0;
    case ATTACH_TMPFILE:
        fds[0] = open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (fds[0] >= 0) {
            /* A file system without fallocate leaves it sparse: the worker must refuse it. */
            uint64_t n = size % (SMALL_MAX + 1);
            if (ftruncate(fds[0], (off_t)n) == 0 && n > 0) {
                (void)posix_fallocate(fds[0], 0, (off_t)n);
            }
        }
        return fds[0] >= 0;
    case ATTACH_TWO_MEMFDS:
        fds[0] = memfd(size % (SMALL_MAX + 1), 1, 0);
        fds[1] = memfd((size >> 32) % (SMALL_MAX + 1), 1, 0);
        return 2;
    case ATTACH_CONTROL:
        fds[0] = fcntl(worker.ctl_fd, F_DUPFD_CLOEXEC, 0);
        return fds[0] >= 0;
    case ATTACH_EIGHT_FDS:
        for (int i = 0; i < MAX_FDS; i++) {
            fds[i] = memfd(i == 0 ? size % (SMALL_MAX + 1) : 4096, 1, 0);
        }
        return MAX_FDS;
    default:
        return 0;
    }
}

/* Sends `len` bytes of msg with the descriptors attached, as a client's sendmsg would. */
static void
send_message(int sock, const sa_msg *msg, size_t len, const int *fds, int nfds)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
    } control;
    struct iovec iov = {.iov_base = (void *)msg, .iov_len = len};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};

    memset(&control, 0, sizeof(control));
    if (nfds > 0) {
        struct cmsghdr *cm;
        mh.msg_control = control.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
        cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
        memcpy(CMSG_DATA(cm), fds, sizeof(int) * (size_t)nfds);
    }
    if (len > 0 && sendmsg(sock, &mh, MSG_NOSIGNAL) != (ssize_t)len) {
        die("sendmsg");
    }
}

/* Reads every reply waiting on the client's end; returns how many (whole messages only). */
static int
read_replies(int sock, sa_msg *replies, int max)
{
    uint8_t buf[sizeof(sa_msg) * 4];
    ssize_t n = recv(sock, buf, sizeof(buf), MSG_DONTWAIT);
    int count;

    if (n <= 0) {
        return 0;
    }
    if (n % (ssize_t)sizeof(sa_msg) != 0) {
        die("a reply that is not a whole number of messages");
    }
    count = (int)(n / (ssize_t)sizeof(sa_msg));
    if (count > max) {
        die("more replies than messages");
    }
    memcpy(replies, buf, (size_t)n);
    return count;
}

/* Handles one received message and checks what the worker did with it. Returns 0 while the
 * session goes on. */
static int
handle_and_check(int client, const sa_msg *msg, int fd)
{
    sa__seat *seat = &worker.seats[0];
    uint32_t id = msg->arg32;
    int known_id = id < SA__MAX_ARENAS;
    sa__arena *before = known_id ? seat->arenas[id] : NULL, *after;
    int notify_before = atomic_load(&seat->notify_fd);
    struct stat st;
    int have_stat = fd >= 0 && fstat(fd, &st) == 0;
    int is_socket = have_stat && S_ISSOCK(st.st_mode);
    sa_msg replies[4];
    int ret, nreplies;

    ret = sa__session_handle(&worker, 0, msg, fd);
    nreplies = read_replies(client, replies, 1);
    after = known_id ? seat->arenas[id] : NULL;

    switch (msg->type) {
    case SA_MSG_ARENA_ADD:
        if (fd < 0) {
            if (ret != SA_EPROTO || nreplies != 0) {
                die("ARENA_ADD without a descriptor must end the session, unanswered");
            }
            return ret;
        }
        if (ret != 0 || nreplies != 1) {
            die("ARENA_ADD must get exactly one reply");
        }
        if (replies[0].magic != SA_MAGIC || replies[0].type != SA_MSG_REPLY
            || replies[0].arg32 != msg->arg32 || replies[0].arg64 != msg->arg64) {
            die("the reply must echo the request");
        }
        if (replies[0].status == 0) {
            if (!known_id || before != NULL || after == NULL) {
                die("success reported but no new arena registered");
            }
            if (!have_stat || !S_ISREG(st.st_mode) || st.st_size <= 0
                || after->size != (uint64_t)st.st_size || after->base == NULL
                || atomic_load(&after->refs) != 1) {
                die("registered arena does not match its descriptor");
            }
            if ((uint64_t)st.st_blocks * 512 < (uint64_t)st.st_size) {
                die("registered a sparse arena: mapping it allocates the worker's memory");
            }
        } else if (replies[0].status >= 0 || after != before) {
            die("failure reported but the seat's arenas changed");
        }
        return 0;
    case SA_MSG_ARENA_DEL:
        if (ret != 0 || nreplies != 0 || after != NULL) {
            die("ARENA_DEL must be one-way and leave no arena under its id");
        }
        return 0;
    case SA_MSG_SYNC:
        if (ret != 0 || nreplies != 1 || replies[0].type != SA_MSG_REPLY || replies[0].status != 0
            || replies[0].arg64 != msg->arg64 || after != before) {
            die("SYNC must get one REPLY echoing it, status 0, and change nothing");
        }
        return 0;
    case SA_MSG_NOTIFY:
        if (ret != 0 || nreplies != 0) {
            die("NOTIFY must be one-way");
        }
        if ((notify_before < 0 && is_socket) != (atomic_load(&seat->notify_fd) != notify_before)) {
            die("NOTIFY must register the first socket only, nothing else");
        }
        return 0;
    default:
        if (ret != SA_EPROTO || nreplies != 0) {
            die("an unknown message type must end the session");
        }
        return ret;
    }
}

static void
run_session(const uint8_t *data, size_t size)
{
    int pair[2];

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0) {
        die("socketpair");
    }
    int client = pair[0];
    session_open(pair[1]);

    for (size_t at = 0; at + RECORD_SIZE <= size; at += RECORD_SIZE) {
        const uint8_t *rec = data + at;
        unsigned kind = rec[0];
        uint64_t obj_size = le64(rec + 1);
        sa_msg msg = {
            .magic = le32(rec + 9),
            .type = le32(rec + 13),
            .arg32 = le32(rec + 17),
            .status = (int32_t)le32(rec + 21),
            .arg64 = le64(rec + 25),
        };
        int fds[MAX_FDS], nfds, fd = -1, err;
        size_t len = sizeof(msg);

        if (kind & KIND_MAGIC) {
            msg.magic = SA_MAGIC;
        }
        if (kind & KIND_TYPE_MOD) {
            msg.type %= 8;
        }
        if (kind & KIND_ID_MOD) {
            msg.arg32 %= 4;
        }
        if (kind & KIND_PARTIAL) {
            len = obj_size % sizeof(msg);
        }
        nfds = make_fds(kind & 0xf, obj_size, fds);
        send_message(client, &msg, len, fds, nfds);
        if (kind & KIND_PARTIAL) {
            shutdown(client, SHUT_WR); /* the client dies mid-message */
        }
        err = sa__msg_recv(worker.seats[0].sock, &msg, &fd);
        if ((kind & 0xf) == ATTACH_MEMFD_SHRUNK && nfds > 0) {
            uint64_t shrunk = obj_size % (SMALL_MAX + 1);
            if (ftruncate(fds[0], (off_t)(shrunk > 0 ? (obj_size >> 40) % shrunk : 0)) < 0) {
                die("ftruncate");
            }
        }
        for (int i = 0; i < nfds; i++) {
            close(fds[i]);
        }
        if (err < 0) {
            if (fd != -1) {
                die("sa__msg_recv failed but kept a descriptor");
            }
            if ((kind & KIND_PARTIAL) == 0 && err != SA_EPROTO) {
                die("a whole message must be received or refused for its magic");
            }
            break;
        }
        if (kind & KIND_PARTIAL) {
            die("a partial message was received as a whole one");
        }
        if (handle_and_check(client, &msg, fd) < 0) {
            break;
        }
    }
    session_close();
    close(client);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int fds_at_rest = -1;

    if (fds_at_rest < 0) {
        worker_init();
        fds_at_rest = open_fd_count();
    }
    run_session(data, size);
    if (open_fd_count() != fds_at_rest) {
        die("a descriptor was left open after the session");
    }
    if (memfd_mappings("fuzz-arena") != 0) {
        die("an arena was left mapped after the session");
    }
    return 0;
}
