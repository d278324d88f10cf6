/*
 * Fault injection, for tests: crash, delay or drop named actors at chosen
 * points, reproducibly from a seed.
 *
 * Configured by one string (from the program's environment or command line):
 * rules separated by ';', each
 *
 *     ACTION:ACTOR[.POINT][,OPTION...]     or     seed=N
 *
 *   ACTION   crash | delay | drop
 *   ACTOR    an actor's name, or * for every actor
 *   POINT    where the rule applies (default "recv"):
 *              recv   before an actor handles a message (crash: the actor
 *                     crashes instead of handling it; delay: the message and
 *                     those after it wait ms milliseconds; drop: the message
 *                     is freed unhandled)
 *              init   when an actor starts (crash: its start fails)
 *              NAME   any point an actor checks itself with rt_fault_point()
 *   OPTION   p=P      fire with probability P per check (0..1)
 *            every=N  fire on every N-th check (1: always)
 *            after=N  never fire on the first N checks
 *            max=N    fire at most N times in all
 *            ms=D     the delay, in milliseconds (delay only; default 100)
 *   A rule with neither p nor every fires on every check.
 *
 * Example: "seed=7; crash:store,p=0.01; delay:producer,ms=50,every=20;
 *           drop:fanout,p=0.05,max=10; crash:consumer.commit,after=3,max=1"
 *
 * Each rule draws from its own random stream seeded from the seed and the
 * rule's position, so the same seed and the same sequence of checks give the
 * same faults whatever the other rules do.
 */
#ifndef CHATD_RUNTIME_FAULT_H
#define CHATD_RUNTIME_FAULT_H

#include <stddef.h>
#include <stdint.h>

typedef enum rt_fault_action {
    RT_FAULT_NONE = 0,
    RT_FAULT_CRASH,
    RT_FAULT_DELAY,
    RT_FAULT_DROP,
} rt_fault_action;

typedef struct rt_faults rt_faults;

/*
 * Parses spec (NULL or "" gives an empty set). On success returns RT_OK-style 0
 * and stores a new set in *out (free with rt_faults_free). On a syntax error
 * returns -1, stores NULL and writes a message naming the problem into err.
 */
int rt_faults_parse(const char *spec, rt_faults **out, char *err, size_t errlen);

void rt_faults_free(rt_faults *f);

/* Overrides the seed given in the spec (if any) and restarts every stream. */
void rt_faults_reseed(rt_faults *f, uint64_t seed);

/*
 * Checks whether a fault fires for actor at point. Rules are tried in order;
 * the first that fires wins. On RT_FAULT_DELAY, *delay_ms holds the delay.
 * Every fault that fires is counted and logged (WARN) with who and where.
 * f may be NULL (no faults).
 */
rt_fault_action rt_faults_check(rt_faults *f, const char *actor, uint64_t actor_id,
                                const char *point, double *delay_ms);

/* Faults fired so far, in all and per action. */
uint64_t rt_faults_fired(const rt_faults *f, rt_fault_action action);

/* Number of rules (not counting seed=). */
size_t rt_faults_rule_count(const rt_faults *f);

const char *rt_fault_action_name(rt_fault_action a);

#endif
