/*
 * A small supervised tree that shows the runtime at work under injected
 * faults:
 *
 *   root (one_for_one)
 *   ├── pipeline (rest_for_one)
 *   │   ├── source   sends a numbered item to worker every tick
 *   │   ├── worker   passes each item on to sink
 *   │   └── sink     counts items and the gaps in their numbering
 *   └── monitor      every report_ms, logs counters of every actor
 *
 * Used by the rt-demo program and by test_demo.
 */
#ifndef CHATD_TESTS_DEMO_TREE_H
#define CHATD_TESTS_DEMO_TREE_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/rt.h"

typedef struct demo_totals {
    uint64_t produced;      /* items source sent */
    uint64_t delivered;     /* items sink received */
    uint64_t gaps;          /* items sink saw missing (lost to crashes and drops) */
    uint64_t reports;       /* monitor lines */
} demo_totals;

typedef struct demo_config {
    double tick_ms;         /* source's period */
    double report_ms;       /* monitor's period */
    bool print;             /* monitor prints to stdout */
} demo_config;

/* Starts the tree under rt (top level). Returns the root supervisor's id, or
 * 0. totals is updated by the actors (outside any actor's state, so it
 * survives restarts) and must outlive the tree. */
rt_id demo_start(rt_runtime *rt, const demo_config *cfg, demo_totals *totals);

/* Prints one line per actor name with its counters. */
void demo_print_stats(rt_runtime *rt);

#endif
