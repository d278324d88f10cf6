/*
 * TCP on 127.0.0.1 for the tests: a free port, a listener that never
 * answers, a client connection. Each fails the running test (cmocka) when
 * the system refuses.
 */
#ifndef CHATD_TESTS_ACTORS_LOOPBACK_H
#define CHATD_TESTS_ACTORS_LOOPBACK_H

/* A port nothing listens on right now: bound to 0, read back, released. */
int loopback_free_port(void);

/* A listening socket that accepts into its backlog and never answers (a
 * server that hangs); its port in *port. Returns the fd: close it. */
int loopback_listen(int *port);

/* A connection to port, non-blocking, with TCP_NODELAY. Returns the fd. */
int loopback_connect(int port);

#endif
