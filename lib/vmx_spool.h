/*
 * vmx_spool: the framing of audit records in a data plane's spool.
 *
 * A record is three byte strings framed by their lengths, so no byte of a
 * client's or a provider's payload can end, split or forge a record:
 *
 *   "VMX2 " <meta len> " " <request len> " " <response len> " " <crc> "\n"
 *   <meta> <request> <response> "\n"
 *
 * Lengths are decimal, crc is the CRC-32 (zlib's) of meta, request and
 * response in that order, as 8 lowercase hex digits.  meta is the record's
 * JSON object built by the data plane; request and response are the
 * payloads as they were, any bytes (length 0: none stored).
 *
 * A reader walks a file with vmx_spool_next(): a record, bytes that are not
 * one (garbage: skipped up to the next place a record may start, and
 * reported), or a need for more bytes.  Pure: no allocation, no I/O.
 */

#ifndef VMX_SPOOL_H
#define VMX_SPOOL_H

#include <stddef.h>
#include <stdint.h>


#define VMX_SPOOL_MAGIC        "VMX2 "
#define VMX_SPOOL_MAGIC_LEN    5
#define VMX_SPOOL_HEADER_MAX   64             /* header line, "\n" included */
#define VMX_SPOOL_META_MAX     (1024 * 1024)
#define VMX_SPOOL_PAYLOAD_MAX  (256 * 1024 * 1024)


typedef struct {
    const char   *meta;
    size_t        meta_len;
    const char   *request;
    size_t        request_len;
    const char   *response;
    size_t        response_len;
} vmx_spool_record_t;


typedef enum {
    VMX_SPOOL_RECORD = 0,     /* *rec filled, *used bytes make it */
    VMX_SPOOL_GARBAGE,        /* *used bytes are no record; *reason why */
    VMX_SPOOL_MORE            /* a record may start here: more bytes, at
                                 least *used in all */
} vmx_spool_rc_e;


/* writes the header line into buf (VMX_SPOOL_HEADER_MAX bytes); its length */
size_t vmx_spool_header(char *buf, size_t meta_len, size_t request_len,
    size_t response_len, uint32_t crc);

/* CRC-32 of p continuing crc (start with 0) */
uint32_t vmx_spool_crc32(uint32_t crc, const void *p, size_t len);

/*
 * The item at the start of data[0, len).  final: no byte will ever follow
 * len (a finished file), so a partial record there is garbage rather than
 * a need for more.
 */
vmx_spool_rc_e vmx_spool_next(const char *data, size_t len, int final,
    vmx_spool_record_t *rec, size_t *used, const char **reason);

#endif /* VMX_SPOOL_H */
