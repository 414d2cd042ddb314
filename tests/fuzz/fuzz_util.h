/* fuzz_util.h -- what the fuzz targets share: little-endian field readers, a fatal check that
 * names its target, and counts of this process's open descriptors and of its mappings of a
 * named memfd (so a target can prove the code under test left nothing behind). */
#ifndef FUZZ_UTIL_H
#define FUZZ_UTIL_H

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every target defines its name, for the messages of fuzz_die. */
extern const char fuzz_target_name[];

static inline uint64_t
le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

static inline uint32_t
le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* A broken invariant: the fuzzer records the input that led here. */
_Noreturn static inline void
die(const char *what)
{
    fprintf(stderr, "%s: %s\n", fuzz_target_name, what);
    abort();
}

static inline int
open_fd_count(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    if (d == NULL) {
        die("cannot list /proc/self/fd");
    }
    while (readdir(d) != NULL) {
        n++;
    }
    closedir(d);
    return n;
}

/* How many mappings of memfds created under `name` the process holds. */
static inline int
memfd_mappings(const char *name)
{
    char line[512], needle[128];
    int n = 0;
    FILE *f = fopen("/proc/self/maps", "re");
    if (f == NULL) {
        die("cannot read /proc/self/maps");
    }
    snprintf(needle, sizeof(needle), "/memfd:%s", name);
    while (fgets(line, sizeof(line), f) != NULL) {
        n += strstr(line, needle) != NULL;
    }
    fclose(f);
    return n;
}

#endif /* FUZZ_UTIL_H */
