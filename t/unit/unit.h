/*
 * A minimal unit test harness: CHECK() counts, reports failures with their
 * line, and UNIT_REPORT() prints "N passed, N failed" and gives the exit code.
 */

#ifndef UNIT_H
#define UNIT_H

#include <stdio.h>
#include <string.h>


static int  unit_passed, unit_failed;


#define CHECK(cond)                                                          \
    do {                                                                     \
        if (cond) {                                                          \
            unit_passed++;                                                   \
        } else {                                                             \
            unit_failed++;                                                   \
            fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, \
                    #cond);                                                  \
        }                                                                    \
    } while (0)

/* a byte string equals a C string literal */
#define CHECK_MEM(p, n, lit)                                                 \
    CHECK((p) != NULL && (n) == sizeof(lit) - 1                              \
          && memcmp((p), (lit), sizeof(lit) - 1) == 0)

#define UNIT_REPORT()                                                        \
    (printf("%d passed, %d failed\n", unit_passed, unit_failed),             \
     unit_failed != 0)

#endif /* UNIT_H */
