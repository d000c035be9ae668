/*
 * vmx_sse: an incremental parser of server-sent events (the WHATWG
 * "text/event-stream" format), fed with whatever a socket read returned.
 *
 * Lines may end in "\n", "\r\n" or "\r", and any line, event or "\r\n" pair
 * may be split across feeds.  "data:" lines of one event are joined with
 * "\n"; "event:" names the event; comment lines (":") and "id:"/"retry:"
 * fields are skipped.  An event is delivered at its blank line.  The parser
 * keeps a partial event in a buffer the caller owns, so it never allocates.
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
    char      *buf;         /* caller's buffer: event name, then data */
    size_t     cap;

    size_t     line_len;    /* bytes of the current, unfinished line */
    size_t     event_len;   /* length of the event name, at buf */
    size_t     data_len;    /* length of the joined data, after the name */

    char      *line;        /* the current line, after the event and data */
    size_t     line_cap;

    unsigned   has_data:1;
    unsigned   skip_lf:1;   /* the last byte was "\r": ignore a "\n" next */
} vmx_sse_parser_t;


void vmx_sse_init(vmx_sse_parser_t *p, char *buf, size_t cap);

int vmx_sse_feed(vmx_sse_parser_t *p, const char *data, size_t len,
    vmx_sse_event_pt handler, void *ctx);

/* at the end of the stream: delivers an event that lacked its blank line */
int vmx_sse_finish(vmx_sse_parser_t *p, vmx_sse_event_pt handler, void *ctx);

#endif /* VMX_SSE_H */
