#include "runtime/fault.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/log.h"

#define NAME_MAX_LEN 64

typedef struct rule {
    rt_fault_action action;
    char actor[NAME_MAX_LEN];       /* "*" matches every actor */
    char point[NAME_MAX_LEN];
    double p;                       /* < 0: not set */
    uint64_t every;                 /* 0: not set */
    uint64_t after;
    uint64_t max;                   /* 0: no limit */
    double delay_ms;
    uint64_t rng;                   /* splitmix64 state */
    uint64_t checks;
    uint64_t fired;
} rule;

struct rt_faults {
    rule *rules;
    size_t nrules;
    uint64_t seed;
    uint64_t fired[4];
};

static uint64_t
splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double
uniform(uint64_t *state)
{
    return (double)(splitmix64(state) >> 11) * 0x1.0p-53;
}

void
rt_faults_reseed(rt_faults *f, uint64_t seed)
{
    f->seed = seed;
    for (size_t i = 0; i < f->nrules; i++) {
        uint64_t s = seed ^ (0xD1B54A32D192ED03ull * (i + 1));
        f->rules[i].rng = splitmix64(&s);
        f->rules[i].checks = 0;
        f->rules[i].fired = 0;
    }
}

static int
fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (err && errlen)
        vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static char *
trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

static bool
parse_u64(const char *s, uint64_t *v)
{
    if (!isdigit((unsigned char)*s))
        return false;
    errno = 0;
    char *end;
    unsigned long long x = strtoull(s, &end, 10);
    if (errno || *end)
        return false;
    *v = x;
    return true;
}

static bool
parse_double(const char *s, double *v)
{
    if (!*s)
        return false;
    errno = 0;
    char *end;
    double x = strtod(s, &end);
    if (errno || *end || !isfinite(x))
        return false;
    *v = x;
    return true;
}

static bool
valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= NAME_MAX_LEN)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-' && s[i] != '*')
            return false;
    return true;
}

/* "seed=N": stores N. Returns 1 when text is a seed, 0 when it is not, -1
 * on a bad value. */
static int
parse_seed(char *text, uint64_t *seed, char *err, size_t errlen)
{
    if (strncmp(text, "seed", 4) != 0 || *trim(text + 4) != '=')
        return 0;
    char *val = trim(trim(text + 4) + 1);
    if (!parse_u64(val, seed))
        return fail(err, errlen, "fault spec: bad seed \"%s\"", val);
    return 1;
}

/* "ACTION:ACTOR[.POINT]" into r. Returns 0 or -1. */
static int
parse_target(char *text, rule *r, char *err, size_t errlen)
{
    char *colon = strchr(text, ':');
    if (!colon)
        return fail(err, errlen, "fault spec: \"%s\" is not ACTION:ACTOR", text);
    *colon = '\0';
    char *action = trim(text), *target = trim(colon + 1);

    if (strcmp(action, "crash") == 0)
        r->action = RT_FAULT_CRASH;
    else if (strcmp(action, "delay") == 0)
        r->action = RT_FAULT_DELAY;
    else if (strcmp(action, "drop") == 0)
        r->action = RT_FAULT_DROP;
    else
        return fail(err, errlen, "fault spec: unknown action \"%s\" (crash, delay, drop)",
                    action);

    char *dot = strchr(target, '.');
    const char *point = "recv";
    if (dot) {
        *dot = '\0';
        point = dot + 1;
    }
    if (!valid_name(target) || (strchr(target, '*') && strcmp(target, "*") != 0))
        return fail(err, errlen, "fault spec: bad actor name \"%s\"", target);
    if (!valid_name(point) || strchr(point, '*'))
        return fail(err, errlen, "fault spec: bad point name \"%s\"", point);
    strcpy(r->actor, target);
    strcpy(r->point, point);
    if (r->action == RT_FAULT_DROP && strcmp(point, "recv") != 0)
        return fail(err, errlen, "fault spec: drop applies to messages (point recv), not \"%s\"",
                    point);
    return 0;
}

/* One "KEY=VALUE" option into r (whose action is known). Returns 0 or -1. */
static int
parse_option(char *text, rule *r, char *err, size_t errlen)
{
    char *opt = trim(text);
    char *eq = strchr(opt, '=');
    if (!eq)
        return fail(err, errlen, "fault spec: option \"%s\" is not KEY=VALUE", opt);
    *eq = '\0';
    opt = trim(opt);
    char *val = trim(eq + 1);
    bool ok;
    if (strcmp(opt, "p") == 0)
        ok = parse_double(val, &r->p) && r->p >= 0 && r->p <= 1;
    else if (strcmp(opt, "every") == 0)
        ok = parse_u64(val, &r->every) && r->every > 0;
    else if (strcmp(opt, "after") == 0)
        ok = parse_u64(val, &r->after);
    else if (strcmp(opt, "max") == 0)
        ok = parse_u64(val, &r->max) && r->max > 0;
    else if (strcmp(opt, "ms") == 0)
        ok = r->action == RT_FAULT_DELAY && parse_double(val, &r->delay_ms) &&
             r->delay_ms >= 0 && r->delay_ms <= 3600e3;
    else
        return fail(err, errlen, "fault spec: unknown option \"%s\" (p, every, after, max, ms)",
                    opt);
    if (!ok)
        return fail(err, errlen, "fault spec: bad value \"%s\" for %s", val, opt);
    return 0;
}

/* One rule, or the seed (then *is_seed). Returns 0 or -1 with err set. */
static int
parse_rule(char *text, rule *r, uint64_t *seed, bool *is_seed, char *err, size_t errlen)
{
    int s = parse_seed(text, seed, err, errlen);
    *is_seed = s == 1;
    if (s != 0)
        return s < 0 ? -1 : 0;

    *r = (rule){ .p = -1, .delay_ms = 100 };
    char *opts = strchr(text, ',');
    if (opts)
        *opts++ = '\0';
    if (parse_target(text, r, err, errlen) < 0)
        return -1;
    while (opts) {
        char *next = strchr(opts, ',');
        if (next)
            *next++ = '\0';
        if (parse_option(opts, r, err, errlen) < 0)
            return -1;
        opts = next;
    }
    if (r->p >= 0 && r->every)
        return fail(err, errlen, "fault spec: give p or every, not both");
    return 0;
}

int
rt_faults_parse(const char *spec, rt_faults **out, char *err, size_t errlen)
{
    *out = NULL;
    rt_faults *f = calloc(1, sizeof(*f));
    char *copy = strdup(spec ? spec : "");
    if (!f || !copy) {
        free(f);
        free(copy);
        return fail(err, errlen, "fault spec: out of memory");
    }

    size_t cap = 1;
    for (const char *c = copy; *c; c++)
        cap += *c == ';';
    f->rules = calloc(cap, sizeof(rule));
    if (!f->rules) {
        fail(err, errlen, "fault spec: out of memory");
        goto err;
    }

    char *save = NULL;
    for (char *tok = strtok_r(copy, ";", &save); tok; tok = strtok_r(NULL, ";", &save)) {
        char *text = trim(tok);
        if (!*text)
            continue;
        bool is_seed;
        if (parse_rule(text, &f->rules[f->nrules], &f->seed, &is_seed, err, errlen) < 0)
            goto err;
        if (!is_seed)
            f->nrules++;
    }
    free(copy);
    rt_faults_reseed(f, f->seed);
    *out = f;
    return 0;

err:
    free(copy);
    rt_faults_free(f);
    return -1;
}

void
rt_faults_free(rt_faults *f)
{
    if (!f)
        return;
    free(f->rules);
    free(f);
}

static bool
fires(rule *r)
{
    uint64_t n = ++r->checks;
    if (n <= r->after)
        return false;
    if (r->max && r->fired >= r->max)
        return false;
    if (r->every)
        return (n - r->after) % r->every == 0;
    if (r->p >= 0)
        return uniform(&r->rng) < r->p;
    return true;
}

rt_fault_action
rt_faults_check(rt_faults *f, const char *actor, uint64_t actor_id, const char *point,
                double *delay_ms)
{
    if (!f)
        return RT_FAULT_NONE;
    /* Every matching rule sees every check (so each rule's schedule is its
     * own, whatever the others do); the first that fires wins. */
    rule *winner = NULL;
    size_t i = 0;
    for (size_t k = 0; k < f->nrules; k++) {
        rule *r = &f->rules[k];
        if (strcmp(r->point, point) != 0)
            continue;
        if (strcmp(r->actor, "*") != 0 && strcmp(r->actor, actor) != 0)
            continue;
        if (fires(r) && !winner) {
            winner = r;
            i = k;
        }
    }
    if (winner) {
        rule *r = winner;
        r->fired++;
        f->fired[r->action]++;
        if (r->action == RT_FAULT_DELAY)
            *delay_ms = r->delay_ms;
        char who[NAME_MAX_LEN + 24];
        snprintf(who, sizeof(who), "%s#%" PRIu64, actor, actor_id);
        rt_warn(who, "fault injected: %s at %s (rule %zu, check %" PRIu64 ", fired %" PRIu64 ")%s",
                rt_fault_action_name(r->action), point, i + 1, r->checks, r->fired,
                r->action == RT_FAULT_DELAY ? ", delaying" : "");
        return r->action;
    }
    return RT_FAULT_NONE;
}

uint64_t
rt_faults_fired(const rt_faults *f, rt_fault_action action)
{
    if (!f)
        return 0;
    if (action == RT_FAULT_NONE)
        return f->fired[RT_FAULT_CRASH] + f->fired[RT_FAULT_DELAY] + f->fired[RT_FAULT_DROP];
    return f->fired[action];
}

size_t
rt_faults_rule_count(const rt_faults *f)
{
    return f ? f->nrules : 0;
}

const char *
rt_fault_action_name(rt_fault_action a)
{
    switch (a) {
    case RT_FAULT_CRASH: return "crash";
    case RT_FAULT_DELAY: return "delay";
    case RT_FAULT_DROP:  return "drop";
    case RT_FAULT_NONE:  break;
    }
    return "none";
}
