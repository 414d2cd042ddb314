/* paths.c -- where pools live: the per-user runtime directory and pool socket names. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

/* A pool name is 1-64 characters of [A-Za-z0-9._-], not starting with '.': it can never name
 * a parent directory or escape the runtime directory. */
static int
valid_pool_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 64 || name[0] == '.') {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')
                 || ch == '.' || ch == '_' || ch == '-';
        if (!ok) {
            return 0;
        }
    }
    return 1;
}

int
sa_runtime_dir(char *buf, size_t len, int create)
{
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    struct stat st;
    int n;

    if (xdg != NULL && xdg[0] == '/') {
        n = snprintf(buf, len, "%s/shmaccel", xdg);
    } else {
        n = snprintf(buf, len, "/tmp/shmaccel-%u", (unsigned)getuid());
    }
    if (n < 0 || (size_t)n >= len) {
        return -ENAMETOOLONG;
    }
    if (create && mkdir(buf, 0700) < 0 && errno != EEXIST) {
        return SA__ERR(errno);
    }
    if (lstat(buf, &st) < 0) {
        return SA__ERR(errno);
    }
    /* A directory squatted by another user, or opened up to others, is never used: whoever
     * controls it could swap our socket for theirs. */
    if (!S_ISDIR(st.st_mode) || st.st_uid != getuid() || (st.st_mode & 0077) != 0) {
        return -EPERM;
    }
    return 0;
}

int
sa_pool_socket_path(const char *name, char *buf, size_t len)
{
    char dir[256];
    int err, n;

    if (name == NULL || !valid_pool_name(name)) {
        return -EINVAL;
    }
    if ((err = sa_runtime_dir(dir, sizeof(dir), 0)) < 0 && err != -ENOENT) {
        return err;
    }
    n = snprintf(buf, len, "%s/%s.sock", dir, name);
    if (n < 0 || (size_t)n >= len) {
        return -ENAMETOOLONG;
    }
    return 0;
}
