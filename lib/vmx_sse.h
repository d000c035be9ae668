/*
 * vmx_sse: an incremental parser of server-sent events (the WHATWG
 * "text/event-stream" format), fed with whatever a socket read returned.
 *
 * Lines may end in "\n", "\r\n" or "\r", and any line, event or "\r\n" pair
 * may be split across feeds; a byte order mark at the start of the stream
 * is skipped.  A line "name:value" sets a field (one space after the colon
 * is dropped), a line without a colon is a field with an empty value.
 * "data" values of one event are joined with "\n"; "event" names the event;
 * comment lines (":"), "id", "retry" and unknown fields are skipped.
 *
 * An event is delivered at its blank line when it had at least one "data"
 * line, even an empty one (WHATWG: the data buffer is not empty), so
 * "data:\n\n" delivers empty data and "event: x\n\n" delivers nothing.
 * An empty event name means "message".  The handler gets pointers into the
 * parser's buffer, valid during the call only and not NUL-terminated.
 *
 * The partial event lives in a buffer the caller owns, so the parser never
 * allocates: cap bounds the event name plus the data of one event (plus an
 * "event" value read after data).  When an event does not fit, the feed
 * returns VMX_SSE_TOO_LARGE, and so does every call until vmx_sse_init.
 */

#ifndef VMX_SSE_H
#define VMX_SSE_H

#include <stddef.h>


#define VMX_SSE_OK         0
#define VMX_SSE_TOO_LARGE  -1      /* an event did not fit the buffer */


/* return 0 to go on; any other value stops the feed and is returned by it */
typedef int (*vmx_sse_event_pt)(void *ctx, const char *event, size_t event_len,
    const char *data, size_t data_len);


typedef struct {
    char      *buf;         /* caller's buffer: event name, data, then the
                               value of the "data" or "event" line read */
    size_t     cap;

    size_t     event_len;   /* length of the event name, at buf */
    size_t     data_len;    /* length of the joined data, after the name */
    size_t     value_len;   /* bytes of the current value, after the data */

    unsigned   state:3;
    unsigned   field:2;     /* what the current line sets */
    unsigned   name_len:3;  /* bytes of its field name; 6: longer than 5 */
    unsigned   bom_len:2;   /* bytes of a byte order mark seen at start */
    unsigned   has_data:1;  /* the event had a "data" line */
    unsigned   skip_lf:1;   /* the last byte was "\r": ignore a "\n" next */
    unsigned   failed:1;    /* an event did not fit: only init helps */

    char       name[5];     /* start of the field name: "data", "event" */
} vmx_sse_parser_t;


void vmx_sse_init(vmx_sse_parser_t *p, char *buf, size_t cap);

/*
 * Returns VMX_SSE_OK, VMX_SSE_TOO_LARGE, or the handler's nonzero value, in
 * which case the rest of data is not parsed.
 */
int vmx_sse_feed(vmx_sse_parser_t *p, const char *data, size_t len,
    vmx_sse_event_pt handler, void *ctx);

/*
 * At the end of the stream: delivers an event that lacked its blank line,
 * even its final line end (WHATWG would drop it, but providers omit it),
 * and makes the parser ready for a new stream on the same buffer.
 */
int vmx_sse_finish(vmx_sse_parser_t *p, vmx_sse_event_pt handler, void *ctx);

#endif /* VMX_SSE_H */
