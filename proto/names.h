/*
 * The names and fields of the client contract (shared/PROTOCOL.md), checked in
 * one place so that the socket, the records and the store agree.
 *
 *   user     1..32 bytes of [A-Za-z0-9_.-]
 *   room     1..64 bytes of [A-Za-z0-9_.:-]; a name starting with "dm:" must be
 *            exactly "dm:A:B" with A and B valid users and A < B (bytewise),
 *            at most 68 bytes
 *   msg id   1..64 bytes of printable ASCII (0x20..0x7E)
 *   text     1..4096 bytes of UTF-8
 *
 * Each check returns PROTO_OK or the first problem found: PROTO_E_EMPTY,
 * PROTO_E_TOO_LONG, PROTO_E_SYNTAX or PROTO_E_UTF8.
 */
#ifndef CHATD_PROTO_NAMES_H
#define CHATD_PROTO_NAMES_H

#include <stdbool.h>
#include <stddef.h>

#include "proto/proto.h"

#define PROTO_USER_MAX    32
#define PROTO_ROOM_MAX    64
#define PROTO_DM_ROOM_MAX 68
#define PROTO_MSGID_MAX   64
#define PROTO_TEXT_MAX    4096

proto_err proto_check_user(const char *s, size_t len);
proto_err proto_check_room(const char *s, size_t len);
proto_err proto_check_msgid(const char *s, size_t len);
proto_err proto_check_text(const char *s, size_t len);

/* True when room (already valid) is a direct-message room "dm:A:B". */
bool proto_room_is_dm(const char *room, size_t len);

/* True when user may act on room: always for a non-dm room; for "dm:A:B" only
 * when user is A or B. Both arguments must already be valid. */
bool proto_room_allows(const char *room, size_t room_len,
                       const char *user, size_t user_len);

#endif
