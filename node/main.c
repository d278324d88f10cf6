/*
 * chatd: one node of the chat backend. Reads its configuration (flags and
 * environment, see --help), starts the actors of its roles under one
 * supervisor and runs until SIGTERM/SIGINT, which drains: the socket stops
 * accepting and closes its connections, the producer flushes, the consumer
 * commits, then the process exits 0. When the supervisor gives up (restart
 * intensity exceeded), chatd exits 1 with a line saying why, so systemd or
 * Docker restarts it.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "actors/chatd.h"
#include "node/options.h"
#include "actors/consumer.h"
#include "actors/fanout.h"
#include "actors/producer.h"
#include "actors/socket.h"
#include "actors/store.h"
#include "runtime/log.h"
#include "runtime/rt.h"
#include "runtime/sup.h"

/* Started in this order, stopped in the reverse: the socket stops taking
 * clients first, the store last. */
static const struct {
    unsigned role;
    const char *name;
    const rt_actor_spec *spec;
} actors[] = {
    { CHATD_ROLE_STORE, CHATD_STORE, &chatd_store_spec },
    { CHATD_ROLE_FANOUT, CHATD_FANOUT, &chatd_fanout_spec },
    { CHATD_ROLE_CONSUMER, CHATD_CONSUMER, &chatd_consumer_spec },
    { CHATD_ROLE_PRODUCER, CHATD_PRODUCER, &chatd_producer_spec },
    { CHATD_ROLE_SOCKET, CHATD_SOCKET, &chatd_socket_spec },
};
#define NACTORS (sizeof(actors) / sizeof(actors[0]))

/* Roles name the work a node takes; the actors that work needs come with it.
 * A node serving clients answers history and join-since from PostgreSQL
 * itself (its store actor only reads: no consumer feeds it), and a node
 * storing messages publishes them to Redis itself (its fanout actor only
 * publishes: no socket subscribes through it). */
static void
add_needed_roles(chatd_config *cfg)
{
    if (cfg->roles & CHATD_ROLE_SOCKET)
        cfg->roles |= CHATD_ROLE_STORE | CHATD_ROLE_FANOUT;
    if (cfg->roles & CHATD_ROLE_STORE)
        cfg->roles |= CHATD_ROLE_FANOUT;
}

/* Fills children (room for NACTORS) with the actors of cfg's roles, in start
 * order; returns how many. Each child's argument points into cfg or
 * fanout_arg, which must outlive the supervisor. */
static size_t
role_children(const chatd_config *cfg, const chatd_fanout_arg *fanout_arg,
              rt_child_spec *children)
{
    size_t n = 0;
    for (size_t i = 0; i < NACTORS; i++) {
        if (!(cfg->roles & actors[i].role))
            continue;
        children[n++] = (rt_child_spec){
            .name = actors[i].name, .actor = actors[i].spec,
            .arg = actors[i].spec == &chatd_fanout_spec ? (const void *)fanout_arg
                                                        : (const void *)cfg,
            .restart = RT_PERMANENT, .shutdown_ms = 10000,
        };
    }
    return n;
}

int
main(int argc, char **argv)
{
    chatd_config cfg;
    chatd_config_defaults(&cfg);
    int r = chatd_config_parse(&cfg, argc, argv);
    if (r != 0)
        return r > 0 ? 0 : 2;

    rt_log_level level;
    if (!rt_log_parse_level(cfg.log_level, &level)) {
        fprintf(stderr, "chatd: bad log level \"%s\"\n", cfg.log_level);
        return 2;
    }
    rt_log_set_level(level);
    signal(SIGPIPE, SIG_IGN);

    char err[256];
    if ((cfg.roles & CHATD_ROLE_SOCKET) && !chatd_socket_auth_ok(&cfg, err, sizeof(err))) {
        fprintf(stderr, "chatd: --auth jwt: %s (see --help; --auth none for a local trial "
                        "without tokens)\n", err);
        return 2;
    }
    if ((cfg.roles & CHATD_ROLE_SOCKET) && cfg.auth == CHATD_AUTH_NONE)
        fprintf(stderr, "chatd: --auth none: clients name themselves; for local trials only\n");
    rt_config rc = { .faults = cfg.faults, .fault_seed = cfg.fault_seed };
    rt_runtime *rt = rt_create(&rc, err, sizeof(err));
    if (!rt) {
        fprintf(stderr, "chatd: %s\n", err);
        return 2;
    }

    add_needed_roles(&cfg);
    chatd_fanout_arg fanout_arg = { .cfg = &cfg };
    rt_child_spec children[NACTORS];
    size_t n = role_children(&cfg, &fanout_arg, children);
    /* Backend outages are retried with backoff up to 5 s; 50 restarts in a
     * minute means something is broken beyond waiting: exit and be restarted. */
    rt_sup_spec root = {
        .strategy = RT_ONE_FOR_ONE, .intensity = 50, .period_ms = 60000,
        .backoff_min_ms = 100, .backoff_max_ms = 5000,
        .children = children, .nchildren = n,
    };

    rt_info("chatd", "node %s starting (roles 0x%x)", cfg.node_id, cfg.roles);
    int status;
    if (!rt_sup_start(rt, 0, &root, "chatd", NULL)) {
        rt_error("chatd", "could not start: see the lines above");
        status = 1;
    } else {
        rt_handle_signals(rt);
        status = rt_run(rt);
        if (status != 0)
            rt_error("chatd", "giving up: %s", rt_last_failure(rt));
        else
            rt_info("chatd", "stopped");
    }
    rt_destroy(rt);
    return status;
}
