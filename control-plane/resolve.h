/*
 * resolve: the addresses of a provider's host for the snapshot (the data
 * plane never resolves names).  Answers, failures included, are cached for
 * RESOLVE_TTL seconds, so a snapshot build does not wait on the resolver
 * for every connection of the same host, and a name that does not resolve
 * costs one timeout per TTL rather than one per build.
 */

#ifndef CP_RESOLVE_H
#define CP_RESOLVE_H

#include <cjson/cJSON.h>

#define RESOLVE_TTL  30

/*
 * adds to the snapshot's connection object "addresses": ["ip:port",
 * "[ipv6]:port", ...] of the URL's host, empty for an IP literal or a name
 * that does not resolve, and then "resolveError" with the resolver's reason
 * (also logged with connection_id once per lookup)
 */
void resolve_add_addresses(cJSON *conn, const char *base_url, const char *connection_id);

/* forgets the cache */
void resolve_shutdown(void);

#endif
