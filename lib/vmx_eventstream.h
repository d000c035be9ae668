/*
 * vmx_eventstream: an incremental decoder of AWS's binary event stream
 * framing ("application/vnd.amazon.eventstream", Bedrock's ConverseStream),
 * fed with whatever a socket read returned.
 *
 * A message is
 *
 *   total length (4 bytes) | headers length (4) | prelude CRC32 (4)
 *   headers | payload | message CRC32 (4)
 *
 * integers big-endian, the prelude CRC over the first 8 bytes, the message
 * CRC over everything before it (CRC-32 of ISO-HDLC, as zlib's crc32).  A
 * header is a name length (1 byte), the name, a value type (1 byte) and
 * the value: 0 true, 1 false (no value), 2 byte, 3 int16, 4 int32,
 * 5 int64, 8 timestamp, 9 uuid (fixed sizes 1, 2, 4, 8, 8, 16), 6 bytes
 * and 7 string (a 2-byte length, then the bytes).
 *
 * Each message is gathered in a buffer the caller owns, so the decoder
 * never allocates: cap bounds the size of one message.  Both CRCs are
 * checked before a message is delivered; the prelude's as soon as it is
 * read, so a corrupted length is caught without waiting for its bytes.
 * An error sticks: every later feed returns it until vmx_eventstream_init.
 */

#ifndef VMX_EVENTSTREAM_H
#define VMX_EVENTSTREAM_H

#include <stddef.h>
#include <stdint.h>


#define VMX_EVENTSTREAM_OK          0
#define VMX_EVENTSTREAM_TOO_LARGE  -1      /* a message did not fit cap */
#define VMX_EVENTSTREAM_BAD_CRC    -2
#define VMX_EVENTSTREAM_MALFORMED  -3      /* bad lengths or headers, or a
                                              message cut short at finish */

#define VMX_EVENTSTREAM_PRELUDE_LEN  12
#define VMX_EVENTSTREAM_MIN_LEN      16    /* prelude and message CRC */


typedef struct {
    const char         *data;         /* NULL when the header is absent */
    size_t              len;
} vmx_eventstream_str_t;


/* the string headers a consumer needs, and the payload; pointers into the
   decoder's buffer, valid during the handler call only */
typedef struct {
    vmx_eventstream_str_t  message_type;    /* :message-type: "event",
                                               "exception" or "error" */
    vmx_eventstream_str_t  event_type;      /* :event-type */
    vmx_eventstream_str_t  exception_type;  /* :exception-type */
    vmx_eventstream_str_t  error_code;      /* :error-code */
    vmx_eventstream_str_t  error_message;   /* :error-message */
    vmx_eventstream_str_t  content_type;    /* :content-type */

    const char            *payload;
    size_t                 payload_len;
} vmx_eventstream_message_t;


/* return 0 to go on; any other value stops the feed and is returned by it */
typedef int (*vmx_eventstream_message_pt)(void *ctx,
    const vmx_eventstream_message_t *m);


typedef struct {
    char               *buf;
    size_t              cap;
    size_t              have;         /* bytes of the current message */
    size_t              total;        /* its length, 0 until its prelude */
    int                 failed;       /* the error that stuck, or 0 */
} vmx_eventstream_decoder_t;


void vmx_eventstream_init(vmx_eventstream_decoder_t *d, char *buf,
    size_t cap);

/*
 * Delivers every message completed by these bytes.  Returns
 * VMX_EVENTSTREAM_OK, an error, or the handler's nonzero value, in which
 * case the rest of data is not decoded.
 */
int vmx_eventstream_feed(vmx_eventstream_decoder_t *d, const char *data,
    size_t len, vmx_eventstream_message_pt handler, void *ctx);

/* at the end of the stream: VMX_EVENTSTREAM_MALFORMED when a message was
   cut short, the error that stuck, or VMX_EVENTSTREAM_OK */
int vmx_eventstream_finish(const vmx_eventstream_decoder_t *d);

/* CRC-32 (ISO-HDLC) of p continuing crc; start with 0 */
uint32_t vmx_eventstream_crc32(uint32_t crc, const void *p, size_t len);

#endif /* VMX_EVENTSTREAM_H */
