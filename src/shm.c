/* shm.c -- anonymous POSIX shared memory segments: create, reserve, unlink at once, map.
 *
 * Segments are created under an unguessable name and unlinked as soon as the descriptor is
 * open: descriptors travel over the session socket, so no name needs to outlive its creation
 * and nothing can be left in /dev/shm whichever process dies. The worker's control segment
 * is a sealed memfd instead: every client holds its descriptor, and none may resize it.
 */
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

static int
random_u64(uint64_t *out)
{
    size_t got = 0;
    while (got < sizeof(*out)) {
        ssize_t n = getrandom((char *)out + got, sizeof(*out) - got, 0);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return SA__ERR(errno);
        }
        got += (size_t)n;
    }
    return 0;
}

/* Reserves the pages of the first `size` bytes of fd now, so that a full /dev/shm (or memory)
 * is -ENOMEM here rather than a SIGBUS on first touch. */
static int
reserve(int fd, size_t size)
{
    int err = 0;
    if (size == 0) {
        return 0;
    }
    do { /* returns the error number instead of setting errno */
        err = posix_fallocate(fd, 0, (off_t)size);
    } while (err == EINTR);
    if (err != 0) {
        return (err == ENOSPC || err == EFBIG) ? -ENOMEM : SA__ERR(err);
    }
    return 0;
}

int
sa__shm_create(const char *tag, size_t size)
{
    char name[64];
    uint64_t rnd[2];
    int fd = -1;
    int err;

    /* A file in /dev/shm that never has a name: nothing can be left behind, even by a kill -9
     * at any instant, and it still counts against /dev/shm's size (a full /dev/shm fails
     * cleanly). Where O_TMPFILE is not available, a random name unlinked at once. */
    fd = open("/dev/shm", O_TMPFILE | O_RDWR | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
        goto created;
    }
    if (errno == ENOSPC || errno == EDQUOT || errno == ENOMEM) {
        return -ENOMEM;
    }
    for (int attempt = 0; attempt < 8; attempt++) {
        if ((err = random_u64(&rnd[0])) < 0 || (err = random_u64(&rnd[1])) < 0) {
            return err;
        }
        snprintf(name, sizeof(name), "/shmaccel-%s-%016llx%016llx", tag, (unsigned long long)rnd[0],
                 (unsigned long long)rnd[1]);
        fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd >= 0 || errno != EEXIST) {
            break;
        }
    }
    if (fd < 0) {
        return SA__ERR(errno);
    }
    /* Unlink before anything else can fail: from here on the segment lives exactly as long as
     * the descriptors and mappings that refer to it. */
    shm_unlink(name);
created:
    /* shm_open honours the umask, which can only remove bits; make sure no bit beyond 0600 was
     * ever set even if this runs with an odd umask. */
    if (fchmod(fd, 0600) < 0) {
        err = SA__ERR(errno);
        goto fail;
    }
    if ((err = reserve(fd, size)) < 0) {
        goto fail;
    }
    return fd;

fail:
    close(fd);
    return err;
}

int
sa__shm_create_sealed(const char *tag, size_t size)
{
    char name[64];
    int fd, err;

    snprintf(name, sizeof(name), "shmaccel-%s", tag);
    fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) {
        return SA__ERR(errno);
    }
    if (fchmod(fd, 0600) < 0 || ftruncate(fd, (off_t)size) < 0) {
        err = SA__ERR(errno);
        goto fail;
    }
    if ((err = reserve(fd, size)) < 0) {
        goto fail;
    }
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
        err = SA__ERR(errno);
        goto fail;
    }
    return fd;

fail:
    close(fd);
    return err;
}

int
sa__shm_map(int fd, size_t size, void **out)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    if (p == MAP_FAILED) {
        return SA__ERR(errno);
    }
    *out = p;
    return 0;
}

int
sa__fd_size(int fd, uint64_t *out)
{
    struct stat st;
    if (fstat(fd, &st) < 0) {
        return SA__ERR(errno);
    }
    if (st.st_size < 0) {
        return SA_EPROTO;
    }
    *out = (uint64_t)st.st_size;
    return 0;
}
