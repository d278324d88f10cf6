/*
 * libFuzzer target for proto/sio: any frame goes through sio_parse() and
 * sio_request_parse(), and whatever parsed is answered with the encoders the
 * socket actor would use. Invariants checked (abort on violation): a valid
 * request holds valid names, and a message event we encode parses back to the
 * same room, id and text.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/names.h"
#include "proto/sio.h"
#include "proto/utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_message_roundtrip(proto_mp_buf *b, const sio_request *req)
{
    sio_message m = {
        .room = req->room, .room_len = req->room_len, .seq = 1, .id = req->id,
        .id_len = req->id_len, .user = "alice", .user_len = 5, .text = req->text,
        .text_len = req->text_len, .ts = 1700000000000,
    };
    proto_mp_buf_reset(b);
    if (sio_encode_message(b, &m) != PROTO_OK)
        abort();

    sio_packet p;
    const char *msg;
    sio_request back;
    if (sio_parse((const char *)b->data, b->len, &p) != SIO_PKT_EVENT || p.err != SIO_OK)
        abort();
    if (sio_request_parse(&p, "alice", 5, &back, &msg) != SIO_OK ||
        back.event != SIO_EV_MESSAGE || back.room_len != req->room_len ||
        memcmp(back.room, req->room, req->room_len) != 0 ||
        back.id_len != req->id_len || memcmp(back.id, req->id, req->id_len) != 0 ||
        back.text_len != req->text_len || memcmp(back.text, req->text, req->text_len) != 0)
        abort();
    sio_packet_free(&p);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *frame = (const char *)data;
    sio_packet pkt;
    proto_mp_buf b;
    proto_mp_buf_growing(&b);

    switch (sio_parse(frame, size, &pkt)) {
    case SIO_PKT_PING:
        if (sio_encode_pong(&b, pkt.data, pkt.data_len) != PROTO_OK &&
            proto_utf8_valid(pkt.data, pkt.data_len))
            abort();
        break;
    case SIO_PKT_CONNECT:
        /* no name (a token, or nothing: the caller decides) or a valid one */
        if ((pkt.user_len && proto_check_user(pkt.user, pkt.user_len) != PROTO_OK) ||
            strlen(pkt.user) != pkt.user_len || (pkt.token && (!pkt.has_token || !pkt.root)))
            abort();
        if (!pkt.user_len)
            break;
        if (sio_encode_open(&b, pkt.user, pkt.user_len, 25000, 20000, 1000000) != PROTO_OK ||
            sio_encode_connect(&b, pkt.user, pkt.user_len) != PROTO_OK)
            abort();
        break;
    case SIO_PKT_CONNECT_ERROR:
        if (pkt.nsp_len == 0 || pkt.nsp[0] != '/' || pkt.nsp_len > SIO_NSP_MAX ||
            pkt.message == NULL)
            abort();
        if (sio_encode_connect_error(&b, pkt.nsp, pkt.nsp_len, pkt.message) != PROTO_OK &&
            proto_utf8_valid(pkt.nsp, pkt.nsp_len))
            abort();
        break;
    case SIO_PKT_EVENT: {
        sio_request req;
        const char *msg = NULL;
        sio_error err = sio_request_parse(&pkt, "alice", 5, &req, &msg);
        if (pkt.has_ack && pkt.ack_id > SIO_ACK_ID_MAX)
            abort();
        if (err != SIO_OK) {
            if (msg == NULL || req.event != SIO_EV_NONE)
                abort();
            if (pkt.has_ack && sio_encode_ack_error(&b, pkt.ack_id, err, msg) != PROTO_OK)
                abort();
            break;
        }
        if (proto_check_room(req.room, req.room_len) != PROTO_OK ||
            !proto_room_allows(req.room, req.room_len, "alice", 5))
            abort();
        if (req.event == SIO_EV_MESSAGE) {
            if (proto_check_msgid(req.id, req.id_len) != PROTO_OK ||
                proto_check_text(req.text, req.text_len) != PROTO_OK)
                abort();
            check_message_roundtrip(&b, &req);
        }
        if (req.event == SIO_EV_HISTORY && (req.limit < 1 || req.limit > 200))
            abort();
        if (req.event == SIO_EV_TYPING &&
            sio_encode_typing(&b, req.room, req.room_len, "alice", 5) != PROTO_OK)
            abort();
        /* The args object echoed back as ack fields: jansson only holds valid
         * UTF-8, so this always succeeds. */
        if (pkt.has_ack && sio_encode_ack_ok(&b, pkt.ack_id, pkt.args) != PROTO_OK)
            abort();
        break;
    }
    default:
        break;
    }

    sio_packet_free(&pkt);
    proto_mp_buf_free(&b);
    return 0;
}
