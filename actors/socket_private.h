/*
 * Inside the socket actor (socket.h): its state and the functions its files
 * share. One actor, one spec, one mailbox, in four files:
 *
 *   socket.c           the spec, connections and their Engine.IO/Socket.IO
 *                      packets, pings, sending to clients
 *   socket_rooms.c     local rooms: membership, presence, the room's Redis
 *                      subscription, live delivery to the members
 *   socket_requests.c  client events and the requests they make to the
 *                      producer, store and fanout actors, with deadlines,
 *                      and the replies that become acks
 *   socket_auth.c      who a connection is: a name, or a verified token's
 *                      sub (adapters/jwt.h), its expiry and refresh
 *
 * HTTP lives in actors/http.c; the WebSocket machinery in adapters/ws.c.
 *
 * Ownership: the state owns every sk_conn, sk_room and sk_req. An sk_conn
 * lives from the adapter's `open` to its `close` callback; the actor never
 * frees one itself (it calls ws_close). A request names its connection by id
 * (the connection may be gone when the reply comes) and its room by name.
 * A room lives while it has members, waiting joins or a pending
 * subscription (sk_room_release frees it otherwise).
 *
 * Everything runs on the loop thread: the actor's handler and the adapter's
 * callbacks touch the same state, one at a time.
 */
#ifndef CHATD_ACTORS_SOCKET_PRIVATE_H
#define CHATD_ACTORS_SOCKET_PRIVATE_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "actors/chatd.h"
#include "actors/config.h"
#include "actors/http.h"
#include "adapters/jwt.h"
#include "adapters/ws.h"
#include "proto/record.h"
#include "proto/sio.h"
#include "runtime/list.h"
#include "runtime/map.h"
#include "runtime/metrics.h"
#include "runtime/rt.h"

typedef struct sk_room sk_room;

/* Live messages a room holds while it catches up, at most. */
#define SK_HELD_MAX 4096

typedef enum sk_conn_phase {
    SK_OPEN,            /* Engine.IO open sent, waiting for CONNECT */
    SK_CONNECTED,       /* Socket.IO connected as user */
} sk_conn_phase;

typedef struct sk_conn {
    ws_conn *ws;
    uint64_t id;                    /* ws_conn_id(ws) */
    sk_conn_phase phase;
    char sid[24];
    char user[PROTO_USER_MAX + 1];
    size_t user_len;
    sk_room **rooms;                /* rooms joined */
    size_t nrooms, rooms_cap;
    unsigned inflight;              /* requests not yet answered */
    double tokens;                  /* rate limit bucket */
    double tokens_at;               /* ms */
    double ping_at;                 /* ms: when the last ping was sent */
    double opened_at;               /* ms: open, or the client's DISCONNECT:
                                     * the connect timeout runs from here */
    bool awaiting_pong;
    char *bearer;                   /* the upgrade's Bearer token, or NULL */
    double expires_ms;              /* the token's exp (+ leeway); 0: never */
} sk_conn;

typedef struct sk_presence {
    char user[PROTO_USER_MAX + 1];
    unsigned conns;                 /* local connections of user in the room */
} sk_presence;

typedef enum sk_sub { SK_SUB_NONE, SK_SUB_PENDING, SK_SUB_LIVE } sk_sub;

typedef struct sk_req sk_req;

struct sk_room {
    char name[PROTO_DM_ROOM_MAX + 1];
    size_t name_len;
    sk_conn **members;
    size_t nmembers, members_cap;
    uint64_t *joined;               /* per member: the seq its join answered */
    size_t joined_cap;
    sk_presence *users;
    size_t nusers, users_cap;
    sk_sub sub;
    sk_req *sub_req;                /* the pending SUBSCRIBE */
    sk_req **waiting;               /* joins waiting for the subscription */
    size_t nwaiting, waiting_cap;
    uint64_t live_seq;              /* the highest seq delivered live here */
    uint64_t join_seq;              /* the highest seq a join here answered */
    bool catch_up;                  /* resubscribing: fetch what was missed */
    unsigned holds;                 /* kept alive while > 0 (sk_room_release) */
    bool catching_up;               /* that fetch is in flight: live ones wait */
    proto_msg *held;                /* live messages that came meanwhile */
    size_t nheld, held_cap;
};

typedef enum sk_req_kind {
    SK_REQ_SUBSCRIBE,   /* a SUBSCRIBE for a room (no client) */
    SK_REQ_JOIN,        /* a client's join, waiting for the store */
    SK_REQ_MESSAGE,
    SK_REQ_HISTORY,
    SK_REQ_PRESENCE,
    SK_REQ_CATCHUP,     /* the room's messages past its live seq (no client) */
} sk_req_kind;

struct sk_req {
    uint64_t corr;
    sk_req_kind kind;
    uint64_t conn_id;               /* 0 for SK_REQ_SUBSCRIBE */
    bool has_ack;
    uint64_t ack_id;
    double deadline;                /* ms */
    sk_room *room;                  /* SUBSCRIBE (a room with a pending
                                     * subscription is never freed) */
    bool added;                     /* JOIN: this join made the conn a member */
    char room_name[PROTO_DM_ROOM_MAX + 1];
    char msg_id[PROTO_MSGID_MAX + 1];
    size_t room_len, msg_id_len;
    uint64_t rx_us;                 /* MESSAGE: its trace stamp */
    bool has_since;
    uint64_t since;
    rt_link link;                   /* in socket_state.by_deadline */
};

typedef struct socket_state {
    const chatd_config *cfg;
    rt_actor *self;
    ws_server *ws;
    chatd_http http;

    rt_map conns;                   /* id -> sk_conn */
    rt_map rooms;                   /* name -> sk_room */
    rt_map reqs;                    /* corr -> sk_req */
    rt_list by_deadline;            /* sk_req, oldest first (one timeout for all) */
    uint64_t next_corr;

    proto_mp_buf out;               /* scratch for encoding one packet */
    bool draining;
    jwtv *jwt;                      /* the token verifier (CHATD_AUTH_JWT) */

    struct {
        rt_metric *connections;
        rt_metric *events[SIO_EV_PRESENCE + 1];
        rt_metric *acks_ok;
        rt_metric *acks_err[SIO_E_UNAVAILABLE + 1];
        rt_metric *delivered;
        struct rt_histogram *acked, *delivered_age;    /* chatd_stage_seconds */
        rt_metric *typing_delivered;
        rt_metric *live_stale;
        rt_metric *slow_closes;
        rt_metric *bad_frames;
        rt_metric *auth_refused[JWTV_REASONS];
        rt_metric *auth_expired;
        rt_metric *auth_refreshed;
    } m;
} socket_state;

/* --- socket.c: sending to clients --- */

double sk_now_ms(const socket_state *st);

/* Sends what st->out holds to every member of r but skip, as one frame
 * shared by all, and empties st->out; with seq > 0 (a stored message) not to
 * a member whose join answered seq or later (it has the message, or did not
 * want it). Returns how many it went to. */
size_t sk_broadcast_out(socket_state *st, sk_room *r, const sk_conn *skip, uint64_t seq);

/* Answers an event: ok with fields (taken; may be NULL), or an error. Only
 * an event with an ack id gets a packet; both count in chatd_acks_total. */
void sk_ack_ok(socket_state *st, sk_conn *c, bool has_ack, uint64_t ack_id, json_t *fields);
void sk_ack_err(socket_state *st, sk_conn *c, bool has_ack, uint64_t ack_id, sio_error err,
                const char *message);

/* Sends a request payload to a peer actor. Returns RT_OK or an error (the
 * peer is down or its mailbox is full): the caller answers unavailable. */
int sk_ask(socket_state *st, const char *peer, uint32_t type, uint64_t corr,
           const proto_mp_buf *b);

/* Sends what st->out holds to c as one frame, and empties st->out. */
void sk_send(socket_state *st, sk_conn *c);

/* --- socket_auth.c: who a connection is (PROTOCOL.md, Identity) --- */

/* The token verifier and the auth metrics; RT_ERR when the key cannot be
 * loaded (logged). */
int sk_auth_init(socket_state *st);
void sk_auth_free(socket_state *st);

/* In the adapter's `open`: keeps the upgrade's Authorization: Bearer token
 * for CONNECT. */
void sk_auth_on_open(socket_state *st, sk_conn *c);

/* CONNECT: true when c is now its user (c->user set, with the token's
 * expiry); false when refused, with the CONNECT_ERROR in st->out. */
bool sk_auth_connect(socket_state *st, sk_conn *c, const sio_packet *p);

/* True for the `auth` event of a token connection, which it answers (a
 * fresh token for the same sub moves the expiry). */
bool sk_auth_event(socket_state *st, sk_conn *c, const sio_packet *p);

/* From the sweep: a connection whose token has expired is told so and
 * disconnected from "/" (its rooms left, back to waiting for a CONNECT). */
void sk_auth_sweep(socket_state *st, sk_conn *c);

/* --- socket_rooms.c --- */

/* The room called name; created (empty) when create is set. NULL when absent
 * or out of memory. */
sk_room *sk_room_get(socket_state *st, const char *name, size_t len, bool create);

/* Frees r when nobody is in it and nothing waits on it, unsubscribing. */
void sk_room_release(socket_state *st, sk_room *r);

bool sk_is_member(const sk_conn *c, const sk_room *r);

/* Makes c a member of r (the first connection of its user in r announces
 * the user's presence). False when out of memory (nothing changed). */
bool sk_member_add(socket_state *st, sk_conn *c, sk_room *r);

/* Takes c out of r (presence follows), then releases r. */
void sk_member_remove(socket_state *st, sk_conn *c, sk_room *r);

/* Sends fanout a {room} request. Returns RT_OK or the send's error. */
int sk_ask_room(socket_state *st, uint32_t type, uint64_t corr, const char *name,
                size_t len);

/* Fanout's messages: a stored message and a typing event for local members;
 * fanout (re)started. */
void sk_on_live_message(socket_state *st, const proto_env *msg);

/* A room's catch-up is over (answered or failed): the live messages held
 * meanwhile are delivered now, in order (repeats drop out there). */
void sk_room_caught_up(socket_state *st, sk_room *r);

/* c's join of r was answered with seq: live messages at or below it are not
 * for c (it has them from the join, or joined without wanting them). */
void sk_member_joined(sk_room *r, const sk_conn *c, uint64_t seq);

/* Delivers stored message m to r's members unless its seq is at or below
 * the room's live seq (see socket_rooms.c). */
void sk_room_deliver(socket_state *st, sk_room *r, const proto_msg *m);

/* Subscribes a live room again (fanout restarted) and, once that is live,
 * delivers what its members missed meanwhile (socket_requests.c). */
void sk_resubscribe(socket_state *st, sk_room *r);
void sk_on_live_typing(socket_state *st, const proto_env *msg);
void sk_on_fanout_up(socket_state *st);

/* For terminate: frees every room (connections are gone or being freed
 * without membership bookkeeping). */
void sk_rooms_free(socket_state *st);

/* --- socket_requests.c --- */

/* A valid EVENT packet of a connected client. */
void sk_on_event(socket_state *st, sk_conn *c, const sio_packet *p);

/* A reply (PROTO_T_ACK, _JOIN_REPLY, _HISTORY_REPLY, _USERS) from a peer. */
void sk_on_reply(socket_state *st, const proto_env *msg);

/* Answers `unavailable` to every request whose deadline passed. */
void sk_reqs_expire(socket_state *st, double now);

/* For terminate: frees every request without answering. */
void sk_reqs_free(socket_state *st);

#endif
