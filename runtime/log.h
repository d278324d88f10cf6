/*
 * Logging: one line per event on stderr,
 *
 *     2026-11-28T02:57:16.123Z WARN  store#17 lost connection: server closed
 *
 * time (UTC, ms), level, who (an actor's name and id, or a module name), text.
 * Lines below the current level cost one comparison.
 */
#ifndef CHATD_RUNTIME_LOG_H
#define CHATD_RUNTIME_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

typedef enum rt_log_level {
    RT_LOG_DEBUG = 0,
    RT_LOG_INFO,
    RT_LOG_WARN,
    RT_LOG_ERROR,
    RT_LOG_OFF,
} rt_log_level;

extern rt_log_level rt_log_threshold;

/* Sets the level below which lines are dropped. */
void rt_log_set_level(rt_log_level level);

/* Parses "debug", "info", "warn", "error" or "off" (any case) into *level.
 * Returns false, leaving *level alone, for anything else. */
bool rt_log_parse_level(const char *s, rt_log_level *level);

/* Writes one line. who may be NULL. The line is written with one write(2),
 * so lines of concurrent processes sharing stderr do not interleave. */
void rt_log_write(rt_log_level level, const char *who, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void rt_log_vwrite(rt_log_level level, const char *who, const char *fmt, va_list ap);

/* Counts lines written per level since start (for tests and metrics). */
unsigned long rt_log_count(rt_log_level level);

/*
 * Rate-limited lines, for what a client can trigger once per request: a call
 * site (RT_LOG_LIMITED's static rt_log_limit) writes at most one line per
 * rt_log_limit_ms; the lines dropped meanwhile are counted, and the next line
 * written there ends with "(N more like it suppressed)". A flood thus costs
 * one line per interval per call site.
 */
typedef struct rt_log_limit {
    double next_ms;                 /* CLOCK_MONOTONIC ms: write again from here */
    unsigned long suppressed;       /* lines dropped since the last written */
} rt_log_limit;

extern double rt_log_limit_ms;      /* the interval, 1000 ms unless changed */

void rt_log_limited(rt_log_limit *lim, rt_log_level level, const char *who, const char *fmt,
                    ...) __attribute__((format(printf, 4, 5)));

/* Lines dropped by rate limits since start (for tests and metrics). */
unsigned long rt_log_suppressed(void);

/*
 * Copies len bytes of src into dst (cap >= 8) as printable text: printable
 * ASCII stays, every other byte becomes \xNN; at most cap - 1 characters,
 * with "..." when src did not fit. For bytes from outside (clients, foreign
 * libraries) before they reach a log line. Returns dst.
 */
char *rt_log_escape(char *dst, size_t cap, const void *src, size_t len);

#define RT_LOG(level, who, ...)                                     \
    do {                                                            \
        if ((level) >= rt_log_threshold)                            \
            rt_log_write((level), (who), __VA_ARGS__);              \
    } while (0)

#define rt_debug(who, ...) RT_LOG(RT_LOG_DEBUG, who, __VA_ARGS__)
#define rt_info(who, ...)  RT_LOG(RT_LOG_INFO, who, __VA_ARGS__)
#define rt_warn(who, ...)  RT_LOG(RT_LOG_WARN, who, __VA_ARGS__)
#define rt_error(who, ...) RT_LOG(RT_LOG_ERROR, who, __VA_ARGS__)

#define RT_LOG_LIMITED(level, who, ...)                             \
    do {                                                            \
        static rt_log_limit rt_log_limit_here_;                     \
        if ((level) >= rt_log_threshold)                            \
            rt_log_limited(&rt_log_limit_here_, (level), (who), __VA_ARGS__); \
    } while (0)

#define rt_info_limited(who, ...) RT_LOG_LIMITED(RT_LOG_INFO, who, __VA_ARGS__)
#define rt_warn_limited(who, ...) RT_LOG_LIMITED(RT_LOG_WARN, who, __VA_ARGS__)

#endif
