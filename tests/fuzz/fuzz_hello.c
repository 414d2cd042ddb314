/* fuzz_hello.c -- libFuzzer target: the client's checks of the worker's HELLO and header.
 *
 * A fake worker sends one HELLO over a real socketpair, with a real control segment (a memfd
 * holding the input's header bytes) or another descriptor attached, and the client library's
 * sa__client_hello receives and checks it, as sa_client_spawn/connect do. Trust model: the
 * worker is a process of the same user (SO_PEERCRED), so this checks consistency (no offset
 * used before it is checked against the segment's fstat size), not resource limits.
 *
 * Input layout (a short input is padded with zeros):
 *
 *   0       kind: bits 0-2 what to attach (enum attach below), bit 3 set the magic right,
 *           bit 4 type = HELLO, bit 5 arg64 = the segment's real size, bit 6 header magic,
 *           version, header_size and area_size right, bit 7 send only `size % 24` bytes of
 *           the message, then close
 *   1..8    size (u64 little-endian) of the segment, per kind
 *   9..32   the message (sa_msg)
 *   33..288 the first 256 bytes of the segment (the sa_control header)
 *
 * Checked: on success the seat's whole area lies inside the mapping (its last byte is read),
 * ctl_size is the fstat size and every header field used passed its check; on failure nothing
 * stays mapped (/proc/self/maps); either way the received descriptor is closed.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "fuzz_util.h"

const char fuzz_target_name[] = "fuzz_hello";

#define HEADER_AT 33
#define INPUT_SIZE (HEADER_AT + sizeof(sa_control))
#define SEGMENT_MAX (UINT64_C(256) << 10) /* up to 31 seats */
#define LARGE_MAX (UINT64_C(16) << 20)    /* up to 1024 seats and more */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum attach {
    ATTACH_NONE = 0,
    ATTACH_SEGMENT = 1,   /* memfd of size % (256 KiB + 1) holding the header bytes */
    ATTACH_OVERSIZED = 2, /* memfd of 4 GiB + 1 + size % 1 MiB: must be refused unmapped */
    ATTACH_RDONLY = 3,    /* the segment, read-only: mapping it fails */
    ATTACH_PIPE = 4,
    ATTACH_TWO = 5,     /* the segment and a second memfd: the client closes the second */
    ATTACH_DEVZERO = 6, /* a character device: size 0 */
    ATTACH_LARGE = 7,   /* the segment, of size % (16 MiB + 1) */
};

#define KIND_MAGIC 0x08u
#define KIND_TYPE 0x10u
#define KIND_SIZE 0x20u
#define KIND_HEADER 0x40u
#define KIND_PARTIAL 0x80u

/* A control segment of `size` bytes starting with `header` (as much of it as fits). */
static int
segment(uint64_t size, const sa_control *header)
{
    int fd = memfd_create("fuzz-ctl", MFD_CLOEXEC);
    size_t n = size < sizeof(*header) ? (size_t)size : sizeof(*header);
    if (fd < 0 || ftruncate(fd, (off_t)size) < 0) {
        die("memfd");
    }
    if (n > 0 && pwrite(fd, header, n, 0) != (ssize_t)n) {
        die("pwrite");
    }
    return fd;
}

/* Makes the descriptors of `kind` (0, 1 or 2 in fds[]); the segment's size into *real. */
static int
make_fds(unsigned kind, uint64_t size, const sa_control *header, int *fds, uint64_t *real)
{
    char path[64];
    int pair[2];

    *real = 0;
    switch (kind) {
    case ATTACH_SEGMENT:
    case ATTACH_RDONLY:
    case ATTACH_TWO:
        *real = size % (SEGMENT_MAX + 1);
        fds[0] = segment(*real, header);
        if (kind == ATTACH_RDONLY) {
            snprintf(path, sizeof(path), "/proc/self/fd/%d", fds[0]);
            pair[0] = fds[0];
            fds[0] = open(path, O_RDONLY | O_CLOEXEC);
            close(pair[0]);
            return fds[0] >= 0;
        }
        if (kind == ATTACH_TWO) {
            fds[1] = segment(4096, header);
            return 2;
        }
        return 1;
    case ATTACH_LARGE:
        *real = size % (LARGE_MAX + 1);
        fds[0] = segment(*real, header);
        return 1;
    case ATTACH_OVERSIZED:
        *real = (UINT64_C(1) << 32) + 1 + size % (UINT64_C(1) << 20);
        fds[0] = segment(*real, header);
        return 1;
    case ATTACH_PIPE:
        if (pipe2(pair, O_CLOEXEC) < 0) {
            return 0;
        }
        close(pair[1]);
        fds[0] = pair[0];
        return 1;
    case ATTACH_DEVZERO:
        fds[0] = open("/dev/zero", O_RDWR | O_CLOEXEC);
        return fds[0] >= 0;
    default:
        return 0;
    }
}

static void
send_message(int sock, const sa_msg *msg, size_t len, const int *fds, int nfds)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * 2)];
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

static void
check_accepted(const sa_client *c, uint64_t real)
{
    const sa_control *ctl = c->ctl;
    if (ctl == NULL || c->ctl_size != real || real < sizeof(sa_control)) {
        die("accepted a segment of the wrong size");
    }
    if (ctl->magic != SA_MAGIC || ctl->version != SA_PROTO_VERSION
        || ctl->header_size != sizeof(sa_control) || ctl->area_size != sizeof(sa_client_area)) {
        die("accepted a header of another version");
    }
    if (c->max_clients == 0 || c->max_clients > 1024 || c->seat >= c->max_clients
        || sa_control_size(c->max_clients) > c->ctl_size) {
        die("accepted a seat or client count the segment cannot hold");
    }
    const char *end = (const char *)c->area + sizeof(sa_client_area);
    if (c->area != sa_control_area(c->ctl, c->seat) || end > (const char *)ctl + c->ctl_size) {
        die("the seat's area is not inside the mapping");
    }
    volatile const char *last = end - 1;
    (void)*last;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int fds_at_rest = -1;
    uint8_t in[INPUT_SIZE] = {0};
    sa_control header;
    sa_client *c;
    int pair[2], fds[2], nfds, err;
    uint64_t real;

    if (fds_at_rest < 0) {
        fds_at_rest = open_fd_count();
    }
    memcpy(in, data, size < sizeof(in) ? size : sizeof(in));
    unsigned kind = in[0];
    uint64_t obj_size = le64(in + 1);
    sa_msg msg = {
        .magic = le32(in + 9),
        .type = le32(in + 13),
        .arg32 = le32(in + 17),
        .status = (int32_t)le32(in + 21),
        .arg64 = le64(in + 25),
    };
    memcpy(&header, in + HEADER_AT, sizeof(header));
    if (kind & KIND_HEADER) {
        header.magic = SA_MAGIC;
        header.version = SA_PROTO_VERSION;
        header.header_size = sizeof(sa_control);
        header.area_size = sizeof(sa_client_area);
    }
    if (kind & KIND_MAGIC) {
        msg.magic = SA_MAGIC;
    }
    if (kind & KIND_TYPE) {
        msg.type = SA_MSG_HELLO;
    }

    nfds = make_fds(kind & 7, obj_size, &header, fds, &real);
    if (kind & KIND_SIZE) {
        msg.arg64 = real;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0) {
        die("socketpair");
    }
    send_message(pair[1], &msg, (kind & KIND_PARTIAL) ? obj_size % sizeof(msg) : sizeof(msg), fds,
                 nfds);
    if (kind & KIND_PARTIAL) {
        shutdown(pair[1], SHUT_WR);
    }
    for (int i = 0; i < nfds; i++) {
        close(fds[i]);
    }

    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        die("out of memory");
    }
    c->sock = pair[0];
    err = sa__client_hello(c);
    if (err == 0) {
        check_accepted(c, real);
        munmap(c->ctl, c->ctl_size);
    } else if (err > 0 || c->ctl != NULL) {
        die("a refused hello left the segment mapped");
    }
    free(c);
    close(pair[0]);
    close(pair[1]);
    if (open_fd_count() != fds_at_rest) {
        die("a descriptor was left open");
    }
    if (memfd_mappings("fuzz-ctl") != 0) {
        die("a control segment was left mapped");
    }
    return 0;
}
