/*
 * The socket actor: clients over WebSocket (Engine.IO v4 / Socket.IO v5, so
 * the official socket.io-client works unmodified) and the HTTP endpoints, on
 * libwebsockets running on the runtime's libev loop.
 *
 * It validates every client event as shared/PROTOCOL.md says (proto/sio.h),
 * keeps each connection's room memberships, turns events into requests to
 * the producer, store and fanout actors (actors/chatd.h) and their replies
 * into acks, and writes live messages to the local members of their rooms:
 * each broadcast is encoded once as a complete WebSocket frame shared by
 * every member's bounded send queue, and each connection's queued frames
 * leave in one write after the actor's turn.
 *
 * HTTP on the same port (GET /healthz, /readyz, /metrics, the web root;
 * Engine.IO polling requests get 400) is actors/http.h; the WebSocket
 * machinery is adapters/ws.h; the actor's own parts: socket_private.h.
 *
 * Registered as "socket"; init argument: const chatd_config *.
 */
#ifndef CHATD_ACTORS_SOCKET_H
#define CHATD_ACTORS_SOCKET_H

#include <stdbool.h>
#include <stddef.h>

#include "actors/config.h"
#include "runtime/rt.h"

extern const rt_actor_spec chatd_socket_spec;

/* Whether cfg's identity settings work: true for --auth none, or for
 * --auth jwt with a key that loads; false with a sentence in err. The node
 * checks this before it starts, so that a bad key is a clear exit, not a
 * socket actor failing its restarts. */
bool chatd_socket_auth_ok(const chatd_config *cfg, char *err, size_t err_len);

#endif
