/* Redis for the tests (see redis_util.h). */
#include "tests/actors/redis_util.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/actors/loopback.h"
#include "tests/runtime/rt_test.h"

extern char **environ;

int
redis_util_silent_server(char *url, size_t cap)
{
    int port;
    int fd = loopback_listen(&port);
    snprintf(url, cap, "redis://127.0.0.1:%d", port);
    return fd;
}

pid_t
redis_util_start(int port)
{
    char p[16];
    snprintf(p, sizeof(p), "%d", port);
    char *argv[] = { "redis-server", "--port", p, "--bind", "127.0.0.1", "--save", "",
                     "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning",
                     NULL };
    pid_t pid;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    int rc = posix_spawnp(&pid, "redis-server", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    assert_int_equal(rc, 0);
    for (int i = 0; i < 200; i++) {
        struct timeval tv = { 0, 100000 };
        redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
        bool ok = false;
        if (c && !c->err) {
            redisReply *r = redisCommand(c, "PING");
            ok = r && r->type == REDIS_REPLY_STATUS;
            freeReplyObject(r);
        }
        redisFree(c);
        if (ok)
            return pid;
        usleep(20000);
    }
    fail_msg("redis-server did not start on port %d", port);
    return pid;
}

void
redis_util_kill(pid_t pid)
{
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

redisContext *
redis_util_sync(const char *url)
{
    char host[128];
    int port = 6379;
    const char *p = strncmp(url, "redis://", 8) == 0 ? url + 8 : url;
    size_t n = strcspn(p, ":/");
    snprintf(host, sizeof(host), "%.*s", (int)n, p);
    if (p[n] == ':')
        port = atoi(p + n + 1);
    struct timeval tv = { 1, 0 };
    redisContext *c = redisConnectWithTimeout(host, port, tv);
    assert_non_null(c);
    return c;
}
