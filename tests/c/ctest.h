/* ctest.h -- a minimal C test harness: named cases, checks that report file:line, and the
 * closing line "N passed, N failed" that CI reads. */
#ifndef CTEST_H
#define CTEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int ctest_failed_checks;

#define CHECK(cond) \
    do { \
        if (!(cond)) { \
            fprintf(stderr, "  %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            ctest_failed_checks++; \
        } \
    } while (0)

#define CHECK_EQ(a, b) \
    do { \
        long long ctest_a = (long long)(a), ctest_b = (long long)(b); \
        if (ctest_a != ctest_b) { \
            fprintf(stderr, "  %s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, #a, \
                    #b, ctest_a, ctest_b); \
            ctest_failed_checks++; \
        } \
    } while (0)

typedef struct {
    const char *name;
    void (*fn)(void);
} ctest_case;

/* clang-format off */
#define CTEST_CASE(fn) {#fn, fn}
/* clang-format on */

/* Runs every case, prints one line each and the closing count; returns the exit status. */
static inline int
ctest_run(const char *suite, const ctest_case *cases, size_t n)
{
    int passed = 0, failed = 0;
    for (size_t i = 0; i < n; i++) {
        int before = ctest_failed_checks;
        cases[i].fn();
        if (ctest_failed_checks == before) {
            passed++;
            printf("ok   %s.%s\n", suite, cases[i].name);
        } else {
            failed++;
            printf("FAIL %s.%s\n", suite, cases[i].name);
        }
    }
    printf("%s: %d passed, %d failed\n", suite, passed, failed);
    return failed == 0 ? 0 : 1;
}

#define CTEST_MAIN(suite, ...) \
    int main(void) \
    { \
        static const ctest_case cases[] = {__VA_ARGS__}; \
        return ctest_run(suite, cases, sizeof(cases) / sizeof(cases[0])); \
    }

#endif /* CTEST_H */
