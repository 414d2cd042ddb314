/* sock.c -- the session socket: fixed-size messages with descriptors over SCM_RIGHTS. */
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

int
sa__msg_send(int sock, const sa_msg *msg, int fd)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } control;
    struct iovec iov = {.iov_base = (void *)msg, .iov_len = sizeof(*msg)};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    ssize_t n;

    memset(&control, 0, sizeof(control));
    if (fd >= 0) {
        struct cmsghdr *cm;
        mh.msg_control = control.buf;
        mh.msg_controllen = sizeof(control.buf);
        cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &fd, sizeof(int));
    }
    /* A message is 24 bytes: the kernel sends it whole on a stream socket unless the buffer is
     * full, in which case sendmsg blocks rather than writing part of it. */
    SA__NOINTR(n, sendmsg(sock, &mh, MSG_NOSIGNAL));
    if (n < 0) {
        return SA__ERR(errno);
    }
    if ((size_t)n != sizeof(*msg)) {
        return SA_EPROTO;
    }
    return 0;
}

int
sa__msg_recv(int sock, sa_msg *msg, int *fd)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * 4)];
    } control;
    struct iovec iov = {.iov_base = msg, .iov_len = sizeof(*msg)};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    size_t got = 0;
    int received_fd = -1;

    while (got < sizeof(*msg)) {
        ssize_t n;
        iov.iov_base = (char *)msg + got;
        iov.iov_len = sizeof(*msg) - got;
        mh.msg_control = control.buf;
        mh.msg_controllen = sizeof(control.buf);
        SA__NOINTR(n, recvmsg(sock, &mh, MSG_CMSG_CLOEXEC));
        if (n < 0) {
            int err = SA__ERR(errno);
            if (received_fd >= 0) {
                close(received_fd);
            }
            return err;
        }
        if (n == 0) {
            if (received_fd >= 0) {
                close(received_fd);
            }
            return -ECONNRESET;
        }
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm != NULL; cm = CMSG_NXTHDR(&mh, cm)) {
            if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) {
                continue;
            }
            size_t nfds = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < nfds; i++) {
                int f;
                memcpy(&f, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
                /* Keep the first descriptor; an untrusted peer sending more gets them closed. */
                if (received_fd < 0) {
                    received_fd = f;
                } else {
                    close(f);
                }
            }
        }
        got += (size_t)n;
    }
    if (msg->magic != SA_MAGIC) {
        if (received_fd >= 0) {
            close(received_fd);
        }
        return SA_EPROTO;
    }
    *fd = received_fd;
    return 0;
}

int
sa__sock_hung_up(int sock)
{
    struct pollfd p = {.fd = sock, .events = POLLRDHUP};
    int r;
    SA__NOINTR(r, poll(&p, 1, 0));
    if (r < 0) {
        return 1;
    }
    return (p.revents & (POLLHUP | POLLRDHUP | POLLERR | POLLNVAL)) != 0;
}

int
sa__peer_cred(int sock, uint32_t *uid, int32_t *pid)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
        return SA__ERR(errno);
    }
    *uid = (uint32_t)cred.uid;
    *pid = (int32_t)cred.pid;
    return 0;
}
