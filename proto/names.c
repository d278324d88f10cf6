#include "proto/names.h"

#include <string.h>

#include "proto/utf8.h"

static bool
is_user_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
}

static proto_err
check_charset(const char *s, size_t len, size_t max, bool colon)
{
    if (len == 0)
        return PROTO_E_EMPTY;
    if (len > max)
        return PROTO_E_TOO_LONG;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!is_user_char(c) && !(colon && c == ':'))
            return PROTO_E_SYNTAX;
    }
    return PROTO_OK;
}

proto_err
proto_check_user(const char *s, size_t len)
{
    return check_charset(s, len, PROTO_USER_MAX, false);
}

bool
proto_room_is_dm(const char *room, size_t len)
{
    return len >= 3 && memcmp(room, "dm:", 3) == 0;
}

/* Splits "dm:A:B" into A and B; false when there is not exactly one ':' after
 * the prefix. */
static bool
dm_split(const char *room, size_t len, const char **a, size_t *alen,
         const char **b, size_t *blen)
{
    const char *rest = room + 3;
    size_t rlen = len - 3;
    const char *colon = memchr(rest, ':', rlen);
    if (!colon)
        return false;
    *a = rest;
    *alen = (size_t)(colon - rest);
    *b = colon + 1;
    *blen = rlen - *alen - 1;
    return true;
}

proto_err
proto_check_room(const char *s, size_t len)
{
    if (!proto_room_is_dm(s, len))
        return check_charset(s, len, PROTO_ROOM_MAX, true);
    if (len > PROTO_DM_ROOM_MAX)
        return PROTO_E_TOO_LONG;

    const char *a, *b;
    size_t alen, blen;
    if (!dm_split(s, len, &a, &alen, &b, &blen))
        return PROTO_E_SYNTAX;
    if (proto_check_user(a, alen) != PROTO_OK || proto_check_user(b, blen) != PROTO_OK)
        return PROTO_E_SYNTAX;
    /* A < B bytewise: a shorter name that is a prefix of the other sorts first. */
    size_t n = alen < blen ? alen : blen;
    int cmp = memcmp(a, b, n);
    if (cmp > 0 || (cmp == 0 && alen >= blen))
        return PROTO_E_SYNTAX;
    return PROTO_OK;
}

proto_err
proto_check_msgid(const char *s, size_t len)
{
    if (len == 0)
        return PROTO_E_EMPTY;
    if (len > PROTO_MSGID_MAX)
        return PROTO_E_TOO_LONG;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7E)
            return PROTO_E_SYNTAX;
    return PROTO_OK;
}

proto_err
proto_check_text(const char *s, size_t len)
{
    if (len == 0)
        return PROTO_E_EMPTY;
    if (len > PROTO_TEXT_MAX)
        return PROTO_E_TOO_LONG;
    return proto_utf8_valid(s, len) ? PROTO_OK : PROTO_E_UTF8;
}

bool
proto_room_allows(const char *room, size_t room_len, const char *user, size_t user_len)
{
    if (!proto_room_is_dm(room, room_len))
        return true;
    const char *a, *b;
    size_t alen, blen;
    if (!dm_split(room, room_len, &a, &alen, &b, &blen))
        return false;
    return (alen == user_len && memcmp(a, user, user_len) == 0) ||
           (blen == user_len && memcmp(b, user, user_len) == 0);
}
