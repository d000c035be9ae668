/*
 * log: one line per event on stderr, "<RFC 3339 time> <level> <message>".
 * Callers put the context (route=, dataplane=, ...) into the message and
 * never a secret.
 */

#ifndef CP_LOG_H
#define CP_LOG_H

typedef enum {
    LOG_DEBUG = 0,
    LOG_INFO,
    LOG_WARN,
    LOG_ERROR
} log_level_e;

/* returns -1 when name is no known level */
int log_set_level(const char *name);

void log_write(log_level_e level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_write(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)  log_write(LOG_INFO, __VA_ARGS__)
#define log_warn(...)  log_write(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_write(LOG_ERROR, __VA_ARGS__)

#endif
