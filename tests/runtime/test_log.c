/* Logging: level names, the threshold and the counters, and the exact shape
 * of a line on stderr (captured through a temporary file). */
#include "tests/runtime/rt_test.h"

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* --- capturing stderr ----------------------------------------------------- */

typedef struct capture {
    int saved_fd;
    FILE *tmp;
} capture;

static void
capture_begin(capture *c)
{
    fflush(stderr);
    c->tmp = tmpfile();
    assert_non_null(c->tmp);
    c->saved_fd = dup(STDERR_FILENO);
    assert_true(c->saved_fd >= 0);
    assert_true(dup2(fileno(c->tmp), STDERR_FILENO) >= 0);
}

/* Restores stderr and returns what was written (malloc'd, NUL-terminated). */
static char *
capture_end(capture *c, size_t *len)
{
    fflush(stderr);
    assert_true(dup2(c->saved_fd, STDERR_FILENO) >= 0);
    close(c->saved_fd);
    long n = ftell(c->tmp);
    if (n <= 0) {
        fseek(c->tmp, 0, SEEK_END);
        n = ftell(c->tmp);
    }
    assert_true(n >= 0);
    char *buf = calloc(1, (size_t)n + 1);
    assert_non_null(buf);
    rewind(c->tmp);
    size_t got = fread(buf, 1, (size_t)n, c->tmp);
    fclose(c->tmp);
    assert_int_equal(got, (size_t)n);
    if (len)
        *len = got;
    return buf;
}

static size_t
count_char(const char *s, size_t len, char ch)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += s[i] == ch;
    return n;
}

/* --- levels -------------------------------------------------------------------- */

static void
test_parse_level(void **state)
{
    (void)state;
    static const struct { const char *s; rt_log_level want; } good[] = {
        { "debug", RT_LOG_DEBUG }, { "DEBUG", RT_LOG_DEBUG }, { "Debug", RT_LOG_DEBUG },
        { "info", RT_LOG_INFO },   { "INFO", RT_LOG_INFO },   { "iNfO", RT_LOG_INFO },
        { "warn", RT_LOG_WARN },   { "WARN", RT_LOG_WARN },   { "warning", RT_LOG_WARN },
        { "WARNING", RT_LOG_WARN },
        { "error", RT_LOG_ERROR }, { "Error", RT_LOG_ERROR },
        { "off", RT_LOG_OFF },     { "OFF", RT_LOG_OFF },
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        /* start from a level other than the answer, so a no-op cannot pass */
        rt_log_level lvl = good[i].want == RT_LOG_DEBUG ? RT_LOG_ERROR : RT_LOG_DEBUG;
        assert_true(rt_log_parse_level(good[i].s, &lvl));
        assert_int_equal(lvl, good[i].want);
    }

    static const char *const bad[] = {
        "", " ", "debu", "debugx", "warn ", " info", "verbose", "trace", "fatal",
        "2", "warnings", "err", "of", "info\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        rt_log_level lvl = RT_LOG_ERROR;
        assert_false(rt_log_parse_level(bad[i], &lvl));
        assert_int_equal(lvl, RT_LOG_ERROR);
        lvl = RT_LOG_DEBUG;
        assert_false(rt_log_parse_level(bad[i], &lvl));
        assert_int_equal(lvl, RT_LOG_DEBUG);
    }
}

static int side_effects;

static int
bump(void)
{
    return ++side_effects;
}

static void
test_threshold(void **state)
{
    (void)state;
    unsigned long c[RT_LOG_OFF];
    capture cap;

    rt_log_set_level(RT_LOG_WARN);
    assert_int_equal(rt_log_threshold, RT_LOG_WARN);
    for (int l = 0; l < RT_LOG_OFF; l++)
        c[l] = rt_log_count((rt_log_level)l);
    side_effects = 0;
    capture_begin(&cap);
    rt_debug("t", "debug %d", bump());
    rt_info("t", "info %d", bump());
    rt_log_write(RT_LOG_INFO, "t", "info direct");
    rt_log_write(RT_LOG_DEBUG, "t", "debug direct");
    rt_warn("t", "warn");
    rt_error("t", "error");
    rt_log_write(RT_LOG_ERROR, "t", "error direct");
    rt_log_write(RT_LOG_OFF, "t", "never a line");
    size_t len;
    char *out = capture_end(&cap, &len);

    /* below the level: not written, not counted, arguments not evaluated */
    assert_int_equal(side_effects, 0);
    assert_int_equal(rt_log_count(RT_LOG_DEBUG), c[RT_LOG_DEBUG]);
    assert_int_equal(rt_log_count(RT_LOG_INFO), c[RT_LOG_INFO]);
    /* at or above: written and counted */
    assert_int_equal(rt_log_count(RT_LOG_WARN), c[RT_LOG_WARN] + 1);
    assert_int_equal(rt_log_count(RT_LOG_ERROR), c[RT_LOG_ERROR] + 2);
    assert_int_equal(rt_log_count(RT_LOG_OFF), 0);
    assert_int_equal(count_char(out, len, '\n'), 3);
    assert_null(strstr(out, "info"));
    assert_null(strstr(out, "debug"));
    assert_null(strstr(out, "never"));
    assert_non_null(strstr(out, " t warn\n"));
    assert_non_null(strstr(out, " t error\n"));
    assert_non_null(strstr(out, " t error direct\n"));
    free(out);
    rt_log_set_level(RT_LOG_OFF);
}

/* off: nothing at all, not even errors */
static void
test_threshold_off(void **state)
{
    (void)state;
    capture cap;
    size_t len;
    side_effects = 0;
    rt_log_set_level(RT_LOG_OFF);
    unsigned long e = rt_log_count(RT_LOG_ERROR);
    capture_begin(&cap);
    rt_error("t", "error %d", bump());
    rt_log_write(RT_LOG_ERROR, "t", "error direct");
    char *out = capture_end(&cap, &len);
    assert_int_equal(len, 0);
    assert_int_equal(side_effects, 0);
    assert_int_equal(rt_log_count(RT_LOG_ERROR), e);
    free(out);
}

/* debug: everything */
static void
test_threshold_debug(void **state)
{
    (void)state;
    unsigned long c[RT_LOG_OFF];
    capture cap;
    size_t len;
    side_effects = 0;
    rt_log_set_level(RT_LOG_DEBUG);
    for (int l = 0; l < RT_LOG_OFF; l++)
        c[l] = rt_log_count((rt_log_level)l);
    capture_begin(&cap);
    rt_debug("t", "d %d", bump());
    rt_info("t", "i");
    rt_warn("t", "w");
    rt_error("t", "e");
    char *out = capture_end(&cap, &len);
    assert_int_equal(side_effects, 1);
    for (int l = 0; l < RT_LOG_OFF; l++)
        assert_int_equal(rt_log_count((rt_log_level)l), c[l] + 1);
    assert_int_equal(count_char(out, len, '\n'), 4);
    free(out);
    rt_log_set_level(RT_LOG_OFF);
}

/* --- the line ------------------------------------------------------------------ */

/* Asserts line (one line, with its newline) is "TIME LEVEL who text\n" with
 * TIME in UTC within a few seconds of now. */
static void
check_line(const char *line, const char *level, const char *who, const char *text)
{
    regex_t re;
    assert_int_equal(regcomp(&re,
                             "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "
                             "(DEBUG|INFO |WARN |ERROR) [^ ]+ ",
                             REG_EXTENDED), 0);
    int m = regexec(&re, line, 0, NULL, 0);
    regfree(&re);
    if (m != 0)
        print_error("line: \"%s\"\n", line);
    assert_int_equal(m, 0);

    /* level padded to 5, then who, then the text, then one newline */
    char want[512];
    snprintf(want, sizeof(want), "%-5s %s %s\n", level, who, text);
    assert_string_equal(line + 25, want);

    struct tm tm = { 0 };
    int ms = -1;
    assert_int_equal(sscanf(line, "%4d-%2d-%2dT%2d:%2d:%2d.%3d", &tm.tm_year, &tm.tm_mon,
                            &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms), 7);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    assert_true(ms >= 0 && ms <= 999);
    time_t t = timegm(&tm);
    time_t now = time(NULL);
    assert_true(t <= now && now - t <= 5);
}

static void
test_format(void **state)
{
    (void)state;
    /* a zone far from UTC: a local timestamp would be hours off */
    char *old_tz = getenv("TZ") ? strdup(getenv("TZ")) : NULL;
    setenv("TZ", "XST-11", 1);
    tzset();

    rt_log_set_level(RT_LOG_DEBUG);
    static const struct { rt_log_level l; const char *name; } levels[] = {
        { RT_LOG_DEBUG, "DEBUG" }, { RT_LOG_INFO, "INFO" },
        { RT_LOG_WARN, "WARN" },   { RT_LOG_ERROR, "ERROR" },
    };
    for (size_t i = 0; i < 4; i++) {
        capture cap;
        capture_begin(&cap);
        rt_log_write(levels[i].l, "store#17", "lost connection: %s (%d)", "server closed",
                     (int)i);
        size_t len;
        char *out = capture_end(&cap, &len);
        assert_int_equal(len, strlen(out));
        char text[64];
        snprintf(text, sizeof(text), "lost connection: server closed (%zu)", i);
        check_line(out, levels[i].name, "store#17", text);
        free(out);
    }

    /* who may be NULL */
    capture cap;
    capture_begin(&cap);
    rt_warn(NULL, "no one");
    char *out = capture_end(&cap, NULL);
    check_line(out, "WARN", "-", "no one");
    free(out);
    rt_log_set_level(RT_LOG_OFF);

    if (old_tz) {
        setenv("TZ", old_tz, 1);
        free(old_tz);
    } else {
        unsetenv("TZ");
    }
    tzset();
}

static char long_text[6000];

static void
test_truncation(void **state)
{
    (void)state;
    rt_log_set_level(RT_LOG_DEBUG);
    memset(long_text, 'a', sizeof(long_text) - 1);

    /* far too long: cut, marked with "...", still one line */
    capture cap;
    capture_begin(&cap);
    rt_info("who", "%s", long_text);
    size_t len;
    char *out = capture_end(&cap, &len);
    assert_true(len > 100 && len < sizeof(long_text));
    assert_int_equal(count_char(out, len, '\n'), 1);
    assert_int_equal(out[len - 1], '\n');
    assert_memory_equal(out + len - 4, "...\n", 4);
    assert_memory_equal(out + 24, " INFO  who aaaa", 15);
    for (size_t i = 35; i < len - 4; i++)
        assert_int_equal(out[i], 'a');
    free(out);

    /* around the limit: either whole, or cut with "...", never without its
     * newline, never longer than a cut line */
    size_t cut_len = len, whole = 0, cut = 0;
    for (size_t n = 900; n < 1100; n++) {
        long_text[n] = '\0';
        capture_begin(&cap);
        rt_info("who", "%s", long_text);
        out = capture_end(&cap, &len);
        long_text[n] = 'a';
        assert_int_equal(count_char(out, len, '\n'), 1);
        assert_int_equal(out[len - 1], '\n');
        assert_true(len <= cut_len);
        if (len == 35 + n + 1 && out[len - 2] == 'a') {
            whole++;
            assert_int_equal(cut, 0);       /* once lines are cut, longer ones are too */
        } else {
            cut++;
            assert_int_equal(len, cut_len);
            assert_memory_equal(out + len - 4, "...\n", 4);
        }
        for (size_t i = 35; i < len - 4; i++)
            assert_int_equal(out[i], 'a');
        free(out);
    }
    assert_true(whole > 0 && cut > 0);

    /* an enormous who is cut too, and the line still ends properly */
    capture_begin(&cap);
    rt_info(long_text, "text");
    out = capture_end(&cap, &len);
    assert_true(len <= cut_len);
    assert_int_equal(count_char(out, len, '\n'), 1);
    assert_memory_equal(out + len - 4, "...\n", 4);
    free(out);
    rt_log_set_level(RT_LOG_OFF);
}

/* --- rate-limited lines ---------------------------------------------------- */

/* One call site, as a client flood would hit it. */
static void
flood_site(int i)
{
    rt_warn_limited("limit", "refused request %d", i);
}

static void
test_rate_limit(void **state)
{
    (void)state;
    rt_log_set_level(RT_LOG_DEBUG);
    double saved = rt_log_limit_ms;
    rt_log_limit_ms = 200;
    unsigned long warn0 = rt_log_count(RT_LOG_WARN), supp0 = rt_log_suppressed();
    capture cap;
    capture_begin(&cap);
    for (int i = 0; i < 1000; i++)
        flood_site(i);
    /* another call site is limited on its own */
    rt_warn_limited("other", "another site");
    struct timespec pause = { 0, 250 * 1000 * 1000 };
    nanosleep(&pause, NULL);
    flood_site(1000);
    flood_site(1001);
    size_t len;
    char *out = capture_end(&cap, &len);
    /* 1000 calls: one line; then the other site; after the interval one line
     * carrying the count of the 999 dropped; the last call is dropped again */
    assert_int_equal(count_char(out, len, '\n'), 3);
    assert_int_equal(rt_log_count(RT_LOG_WARN) - warn0, 3);
    assert_int_equal(rt_log_suppressed() - supp0, 999 + 1);
    assert_non_null(strstr(out, "refused request 0\n"));
    assert_non_null(strstr(out, "another site\n"));
    assert_non_null(strstr(out, "refused request 1000 (999 more like it suppressed)\n"));
    assert_null(strstr(out, "refused request 1001"));
    free(out);
    rt_log_limit_ms = saved;
    rt_log_set_level(RT_LOG_OFF);
}

static void
test_escape(void **state)
{
    (void)state;
    char buf[32];
    assert_string_equal(rt_log_escape(buf, sizeof(buf), "plain text", 10), "plain text");
    assert_string_equal(rt_log_escape(buf, sizeof(buf), "a\nb\x1b[31m\\\xff", 10),
                        "a\\x0ab\\x1b[31m\\x5c\\xff");
    /* too long: cut, with "...", never past the buffer */
    char small[12];
    assert_string_equal(rt_log_escape(small, sizeof(small), "0123456789abcdef", 16),
                        "01234567...");
    assert_string_equal(rt_log_escape(small, sizeof(small), "\x01\x02\x03", 3), "\\x01\\x02...");
    assert_string_equal(rt_log_escape(small, sizeof(small), "", 0), "");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_level),
        cmocka_unit_test(test_threshold),
        cmocka_unit_test(test_threshold_off),
        cmocka_unit_test(test_threshold_debug),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_rate_limit),
        cmocka_unit_test(test_escape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
