/*
 * The HTTP endpoints on the client port (shared/PROTOCOL.md), served for
 * the socket actor through adapters/ws.h:
 *
 *   GET /healthz    200 {"status":"ok","down":[]} when every actor of the
 *                   node's roles is alive, else 503 "down" naming them
 *   GET /readyz     200 {"status":"ready","down":[]} when every backend the
 *                   roles need reports chatd_backend_up 1, else 503
 *                   "unavailable" naming them
 *   GET /metrics    Prometheus text (rt_metrics_render)
 *   /socket.io...   400: HTTP long-polling is not supported
 *   anything else   a file of the web root, else 404
 *
 * The web root (cfg->web_root) is read into memory once, by chatd_http_init,
 * so no request reads the disk on the loop: a file changed or added later is
 * served after the socket actor restarts. Only plain relative paths of
 * [A-Za-z0-9._/-] without "..", at most 200 bytes, with a known extension
 * are served; "/" is index.html. Files under assets/ carry a content hash in
 * their names and are cached for a year; everything else is revalidated.
 *
 * Counts requests in chatd_http_requests_total{path}.
 */
#ifndef CHATD_ACTORS_HTTP_H
#define CHATD_ACTORS_HTTP_H

#include <stddef.h>

#include "actors/config.h"
#include "adapters/ws.h"
#include "runtime/map.h"
#include "runtime/metrics.h"
#include "runtime/rt.h"

typedef struct chatd_http {
    rt_runtime *rt;
    const chatd_config *cfg;
    const char *who;                /* name in log lines */
    rt_metric *requests[4];         /* /healthz, /readyz, /metrics, other */
    rt_map files;                   /* relative path -> http_file (http.c) */
    size_t files_bytes;
} chatd_http;

/*
 * Sets h up for cfg (which must outlive it) and loads the web root, if any:
 * a file that cannot be read, or past the size limits (16 MiB a file, 64 MiB
 * in all), is left out and logged; a web root that cannot be opened is
 * logged and serves nothing. Returns 0, or -1 when out of memory (h is then
 * freed).
 */
int chatd_http_init(chatd_http *h, rt_runtime *rt, const chatd_config *cfg, const char *who);

/* Answers one request for path (without the query); returns what
 * ws_http_reply returned (the `http` callback's result). */
int chatd_http_serve(chatd_http *h, ws_request *req, const char *path);

/* Frees the loaded files. Safe on a zeroed or freed chatd_http. */
void chatd_http_free(chatd_http *h);

#endif
