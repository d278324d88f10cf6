#include "runtime/log.h"

#include <stdio.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

rt_log_level rt_log_threshold = RT_LOG_INFO;
double rt_log_limit_ms = 1000;
static unsigned long line_counts[RT_LOG_OFF];
static unsigned long suppressed_count;

static const char *const level_names[] = { "DEBUG", "INFO", "WARN", "ERROR", "OFF" };

void
rt_log_set_level(rt_log_level level)
{
    rt_log_threshold = level;
}

bool
rt_log_parse_level(const char *s, rt_log_level *level)
{
    for (int i = RT_LOG_DEBUG; i <= RT_LOG_OFF; i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *level = (rt_log_level)i;
            return true;
        }
    }
    if (strcasecmp(s, "warning") == 0) {
        *level = RT_LOG_WARN;
        return true;
    }
    return false;
}

void
rt_log_vwrite(rt_log_level level, const char *who, const char *fmt, va_list ap)
{
    if (level < rt_log_threshold || level >= RT_LOG_OFF)
        return;
    line_counts[level]++;

    char line[1024];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s %s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, level_names[level], who ? who : "-");
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
    int m = vsnprintf(line + len, sizeof(line) - len, fmt, ap);
    if (m > 0)
        len += (size_t)m < sizeof(line) - len ? (size_t)m : sizeof(line) - len - 1;
    if (len >= sizeof(line) - 1) {
        len = sizeof(line) - 5;
        line[len++] = '.';
        line[len++] = '.';
        line[len++] = '.';
    }
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;   /* nothing sensible to do when stderr is gone */
}

void
rt_log_write(rt_log_level level, const char *who, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    rt_log_vwrite(level, who, fmt, ap);
    va_end(ap);
}

unsigned long
rt_log_count(rt_log_level level)
{
    return level < RT_LOG_OFF ? line_counts[level] : 0;
}

void
rt_log_limited(rt_log_limit *lim, rt_log_level level, const char *who, const char *fmt, ...)
{
    if (level < rt_log_threshold || level >= RT_LOG_OFF)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double now = (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
    if (now < lim->next_ms) {
        lim->suppressed++;
        suppressed_count++;
        return;
    }
    lim->next_ms = now + rt_log_limit_ms;
    char text[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (lim->suppressed)
        rt_log_write(level, who, "%s (%lu more like it suppressed)", text, lim->suppressed);
    else
        rt_log_write(level, who, "%s", text);
    lim->suppressed = 0;
}

unsigned long
rt_log_suppressed(void)
{
    return suppressed_count;
}

char *
rt_log_escape(char *dst, size_t cap, const void *src, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = src;
    size_t o = 0, i = 0;
    for (; i < len; i++) {
        bool plain = p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\';
        size_t need = plain ? 1 : 4;
        if (o + need > cap - 4)     /* room for "..." and the NUL */
            break;
        if (plain) {
            dst[o++] = (char)p[i];
        } else {
            dst[o++] = '\\';
            dst[o++] = 'x';
            dst[o++] = hex[p[i] >> 4];
            dst[o++] = hex[p[i] & 15];
        }
    }
    if (i < len)
        for (int k = 0; k < 3; k++)
            dst[o++] = '.';
    dst[o] = '\0';
    return dst;
}
