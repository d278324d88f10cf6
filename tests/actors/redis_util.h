/*
 * Redis for the tests that need more than the shared server scripts/test
 * starts: a private redis-server to kill and start again, a server that
 * accepts and never answers, and a synchronous connection for the test's own
 * looks. Each fails the running test (cmocka) when it cannot do its part.
 */
#ifndef CHATD_TESTS_ACTORS_REDIS_UTIL_H
#define CHATD_TESTS_ACTORS_REDIS_UTIL_H

#include <stddef.h>
#include <sys/types.h>

#include <hiredis/hiredis.h>

/* A listening socket on loopback that never answers (the connect succeeds,
 * no reply ever comes); its address "redis://127.0.0.1:PORT" in url (cap
 * bytes). Returns the fd: close it when done. */
int redis_util_silent_server(char *url, size_t cap);

/* Starts a redis-server of its own on 127.0.0.1:port, without persistence,
 * and waits (up to 4 s) until it answers PING. Returns its pid. */
pid_t redis_util_start(int port);

/* Kills the redis-server pid (SIGKILL) and reaps it. */
void redis_util_kill(pid_t pid);

/* A synchronous connection to url ("redis://host:port", the port 6379 when
 * missing), 1 s to connect. Free with redisFree. */
redisContext *redis_util_sync(const char *url);

#endif
