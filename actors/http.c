/*
 * The HTTP endpoints (see http.h).
 */
#include "actors/http.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "actors/chatd.h"
#include "runtime/log.h"

#define PATH_MAX_SERVED 200
#define FILE_MAX (16 * 1024 * 1024)
#define FILES_MAX (64 * 1024 * 1024)
#define DEPTH_MAX 8

typedef struct http_file {
    const char *type;
    const char *cache;
    size_t len;
    char body[];
} http_file;

static const struct { const char *ext; const char *type; } content_types[] = {
    { ".html", "text/html; charset=utf-8" }, { ".js", "text/javascript; charset=utf-8" },
    { ".mjs", "text/javascript; charset=utf-8" }, { ".css", "text/css; charset=utf-8" },
    { ".json", "application/json" }, { ".map", "application/json" },
    { ".svg", "image/svg+xml" }, { ".png", "image/png" }, { ".ico", "image/x-icon" },
    { ".txt", "text/plain; charset=utf-8" }, { ".webmanifest", "application/manifest+json" },
};

/* The content type of a relative path that may be served, or NULL: plain
 * paths of [A-Za-z0-9._/-] without "..", a known extension. */
static const char *
servable_type(const char *rel)
{
    size_t n = strlen(rel);
    if (n == 0 || n > PATH_MAX_SERVED || strstr(rel, "..") || rel[0] == '/')
        return NULL;
    for (size_t i = 0; i < n; i++) {
        char c = rel[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-' || c == '/'))
            return NULL;
    }
    const char *dot = strrchr(rel, '.');
    for (size_t i = 0; dot && i < sizeof(content_types) / sizeof(content_types[0]); i++)
        if (strcmp(dot, content_types[i].ext) == 0)
            return content_types[i].type;
    return NULL;
}

/* --- loading the web root at start -------------------------------------------- */

/* Reads the regular file at path (size bytes) as rel. 0, or -1 when out of
 * memory; a file that cannot be read is logged and skipped. */
static int
load_file(chatd_http *h, const char *path, const char *rel, const char *type, off_t size)
{
    if (size > FILE_MAX || h->files_bytes + (size_t)size > FILES_MAX) {
        rt_warn(h->who, "web root: %s is too large to serve (%lld bytes)", rel,
                (long long)size);
        return 0;
    }
    http_file *f = malloc(sizeof(*f) + (size_t)size + 1);
    if (!f)
        return -1;
    f->type = type;
    f->cache = strncmp(rel, "assets/", 7) == 0 ? "public, max-age=31536000, immutable"
                                               : "no-cache";
    f->len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = 0;
    while (fd >= 0 && f->len < (size_t)size) {
        n = read(fd, f->body + f->len, (size_t)size - f->len);
        if (n > 0)
            f->len += (size_t)n;
        else if (n == 0 || errno != EINTR)
            break;      /* the end (a file that shrank is served as read), or an error */
    }
    if (fd >= 0)
        close(fd);
    if (fd < 0 || n < 0) {
        rt_warn(h->who, "web root: cannot read %s: %s", path, strerror(errno));
        free(f);
        return 0;
    }
    free(rt_map_get(&h->files, rel, strlen(rel)));
    if (!rt_map_put(&h->files, rel, strlen(rel), f)) {
        free(f);
        return -1;
    }
    h->files_bytes += f->len;
    return 0;
}

/* Loads every servable file under dir (rel: its path below the web root,
 * "" for the root itself). 0, or -1 when out of memory. */
static int
load_dir(chatd_http *h, const char *dir, const char *rel, int depth)
{
    DIR *d = opendir(dir);
    if (!d) {
        rt_warn(h->who, "web root: cannot open %s: %s", dir, strerror(errno));
        return 0;
    }
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;       /* ".", "..", hidden files: never served */
        char path[1024], sub[PATH_MAX_SERVED + 2];
        if (snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >= (int)sizeof(path) ||
            snprintf(sub, sizeof(sub), "%s%s%s", rel, *rel ? "/" : "", e->d_name) >
                PATH_MAX_SERVED)
            continue;
        struct stat sb;
        if (stat(path, &sb) != 0)
            continue;
        const char *type;
        if (S_ISDIR(sb.st_mode) && depth < DEPTH_MAX)
            rc = load_dir(h, path, sub, depth + 1);
        else if (S_ISREG(sb.st_mode) && (type = servable_type(sub)))
            rc = load_file(h, path, sub, type, sb.st_size);
    }
    closedir(d);
    return rc;
}

int
chatd_http_init(chatd_http *h, rt_runtime *rt, const chatd_config *cfg, const char *who)
{
    memset(h, 0, sizeof(*h));
    h->rt = rt;
    h->cfg = cfg;
    h->who = who;
    static const char *paths[] = { "/healthz", "/readyz", "/metrics", "other" };
    for (int i = 0; i < 4; i++) {
        char labels[48];
        snprintf(labels, sizeof(labels), "path=\"%s\"", paths[i]);
        h->requests[i] = rt_metric_get(rt, RT_COUNTER, "chatd_http_requests_total", labels,
                                       "HTTP requests by path.");
    }
    if (cfg->web_root && load_dir(h, cfg->web_root, "", 0) != 0) {
        chatd_http_free(h);
        return -1;
    }
    if (cfg->web_root)
        rt_info(who, "serving %zu files (%zu bytes) of %s", h->files.len, h->files_bytes,
                cfg->web_root);
    return 0;
}

void
chatd_http_free(chatd_http *h)
{
    rt_map_entry *e;
    for (size_t pos = 0; rt_map_next(&h->files, &pos, &e);)
        free(e->value);
    rt_map_free(&h->files);
    h->files_bytes = 0;
}

/* --- the endpoints ----------------------------------------------------------------- */

/* Answers {"status": good|bad, "down": [...]}: 200 when down (taken) is
 * empty, else 503. */
static int
http_status(ws_request *req, const char *good, const char *bad, json_t *down)
{
    bool ok = json_array_size(down) == 0;
    json_t *body = json_pack("{s:s,s:o}", "status", ok ? good : bad, "down", down);
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    int rc = text ? ws_http_reply(req, ok ? 200 : 503, "application/json", "no-store", text,
                                  strlen(text))
                  : -1;
    free(text);
    return rc;
}

/* The backends this node's roles need, with their gauge. */
static const struct { unsigned roles; const char *backend; } backends[] = {
    { CHATD_ROLE_PRODUCER | CHATD_ROLE_CONSUMER, CHATD_BACKEND_KAFKA },
    { CHATD_ROLE_FANOUT, CHATD_BACKEND_REDIS },
    { CHATD_ROLE_STORE, CHATD_BACKEND_POSTGRES },
};

static int
http_readyz(chatd_http *h, ws_request *req)
{
    json_t *down = json_array();
    for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++) {
        if (!(h->cfg->roles & backends[i].roles))
            continue;
        char labels[64];
        snprintf(labels, sizeof(labels), "backend=\"%s\"", backends[i].backend);
        if (rt_metric_value(h->rt, "chatd_backend_up", labels) != 1)
            json_array_append_new(down, json_string(backends[i].backend));
    }
    return http_status(req, "ready", "unavailable", down);
}

static int
http_healthz(chatd_http *h, ws_request *req)
{
    static const struct { unsigned role; const char *name; } actors[] = {
        { CHATD_ROLE_SOCKET, CHATD_SOCKET }, { CHATD_ROLE_PRODUCER, CHATD_PRODUCER },
        { CHATD_ROLE_CONSUMER, CHATD_CONSUMER }, { CHATD_ROLE_STORE, CHATD_STORE },
        { CHATD_ROLE_FANOUT, CHATD_FANOUT },
    };
    json_t *down = json_array();
    for (size_t i = 0; i < sizeof(actors) / sizeof(actors[0]); i++)
        if ((h->cfg->roles & actors[i].role) &&
            !rt_alive(h->rt, rt_whereis(h->rt, actors[i].name)))
            json_array_append_new(down, json_string(actors[i].name));
    return http_status(req, "ok", "down", down);
}

/* Prometheus text of every metric of the runtime. */
static int
http_metrics(chatd_http *h, ws_request *req)
{
    size_t len = 0;
    char *text = rt_metrics_render(h->rt, "chatd", &len);
    if (!text)
        return -1;
    int rc = ws_http_reply(req, 200, "text/plain; version=0.0.4; charset=utf-8", "no-store",
                           text, len);
    free(text);
    return rc;
}

/* A file of the web root; NULL when it is not served. */
static const http_file *
static_file(chatd_http *h, const char *path)
{
    if (path[0] != '/')
        return NULL;
    const char *rel = strcmp(path, "/") == 0 ? "index.html" : path + 1;
    return servable_type(rel) ? rt_map_get(&h->files, rel, strlen(rel)) : NULL;
}

int
chatd_http_serve(chatd_http *h, ws_request *req, const char *path)
{
    static const char polling[] =
        "{\"code\":0,\"message\":\"HTTP long-polling is not supported: use transports: "
        "['websocket']\"}";
    static const char not_found[] = "{\"code\":404,\"message\":\"not found\"}";

    if (strcmp(path, "/healthz") == 0) {
        rt_metric_add(h->requests[0], 1);
        return http_healthz(h, req);
    }
    if (strcmp(path, "/readyz") == 0) {
        rt_metric_add(h->requests[1], 1);
        return http_readyz(h, req);
    }
    if (strcmp(path, "/metrics") == 0) {
        rt_metric_add(h->requests[2], 1);
        return http_metrics(h, req);
    }
    rt_metric_add(h->requests[3], 1);
    if (strncmp(path, "/socket.io", 10) == 0 && (path[10] == '/' || path[10] == '\0'))
        return ws_http_reply(req, 400, "application/json", "no-store", polling,
                             sizeof(polling) - 1);
    const http_file *f = static_file(h, path);
    if (f)
        return ws_http_reply(req, 200, f->type, f->cache, f->body, f->len);
    return ws_http_reply(req, 404, "application/json", "no-store", not_found,
                         sizeof(not_found) - 1);
}
