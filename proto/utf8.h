/*
 * UTF-8 validation (RFC 3629): shortest form only, no surrogates (U+D800..DFFF),
 * nothing above U+10FFFF.
 */
#ifndef CHATD_PROTO_UTF8_H
#define CHATD_PROTO_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* True when the len bytes at s are valid UTF-8. An empty string is valid. */
bool proto_utf8_valid(const char *s, size_t len);

#endif
