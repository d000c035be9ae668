/*
 * log: timestamped single-line messages on stderr.  A line is formatted
 * into one buffer and written with one write(2), so lines of concurrent
 * threads never interleave.
 */

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static log_level_e min_level = LOG_INFO;

static const char *const level_names[] = { "debug", "info", "warn", "error" };


int
log_set_level(const char *name)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcasecmp(name, level_names[i]) == 0) {
            min_level = (log_level_e) i;
            return 0;
        }
    }
    return -1;
}


void
log_write(log_level_e level, const char *fmt, ...)
{
    char            line[2048];
    struct timespec now;
    struct tm       tm;
    size_t          n;
    va_list         ap;

    if (level < min_level) {
        return;
    }

    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t) snprintf(line + n, sizeof(line) - n, ".%03ldZ %s ",
                           now.tv_nsec / 1000000, level_names[level]);

    va_start(ap, fmt);
    vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
    va_end(ap);

    /* one line per event: a newline inside a message would forge another */
    n = strlen(line);
    for (size_t i = 0; i < n; i++) {
        if (line[i] == '\n' || line[i] == '\r') {
            line[i] = ' ';
        }
    }
    line[n++] = '\n';

    if (write(STDERR_FILENO, line, n) < 0) {
        /* nowhere left to report it */
    }
}
