/*
 * VM-X gateway: declarations shared by the files of ngx_http_vmx_module.
 */

#ifndef _NGX_HTTP_VMX_MODULE_H_INCLUDED_
#define _NGX_HTTP_VMX_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#if (NGX_THREADS)
#include <ngx_thread_pool.h>
#endif

#include "vmx_buf.h"
#include "vmx_config.h"
#include "vmx_embeddings.h"
#include "vmx_eventstream.h"
#include "vmx_inflate.h"
#include "vmx_json.h"
#include "vmx_pools.h"
#include "vmx_rules.h"
#include "vmx_sigv4.h"
#include "vmx_sse.h"
#include "vmx_tokenizer.h"
#include "vmx_translate.h"


#define NGX_HTTP_VMX_PROVIDER_OPENAI     VMX_PROVIDER_OPENAI
#define NGX_HTTP_VMX_PROVIDER_GROQ       VMX_PROVIDER_GROQ
#define NGX_HTTP_VMX_PROVIDER_ANTHROPIC  VMX_PROVIDER_ANTHROPIC
#define NGX_HTTP_VMX_PROVIDER_GEMINI     VMX_PROVIDER_GEMINI
#define NGX_HTTP_VMX_PROVIDER_BEDROCK    VMX_PROVIDER_BEDROCK

#define NGX_HTTP_VMX_MAX_EVENTS          16
#define NGX_HTTP_VMX_MAX_RESERVATIONS    32
#define NGX_HTTP_VMX_ALL_ATTEMPTS        ((ngx_uint_t) -1)

#define NGX_HTTP_VMX_PERIOD_MINUTE    VMX_PERIOD_MINUTE
#define NGX_HTTP_VMX_PERIOD_HOUR      VMX_PERIOD_HOUR
#define NGX_HTTP_VMX_PERIOD_DAY       VMX_PERIOD_DAY
#define NGX_HTTP_VMX_PERIOD_WEEK      VMX_PERIOD_WEEK
#define NGX_HTTP_VMX_PERIOD_MONTH     VMX_PERIOD_MONTH
#define NGX_HTTP_VMX_PERIOD_LIFETIME  VMX_PERIOD_LIFETIME

/* a counter's name: "kind[$]:id:period:window start[:address]", "$" for a
   budget's */
#define NGX_HTTP_VMX_LIMIT_KEY_MAX                                            \
    (3 + 36 + 3 + NGX_TIME_T_LEN + 1 + NGX_SOCKADDR_STRLEN)

#define NGX_HTTP_VMX_EPOCH_LEN           24


/*
 * The stages of a chat request (ngx_http_vmx_handler.c, ngx_http_vmx_gate.c)
 * return what to finalize the request with once it is answered, or one of
 * these, which nginx never gets: the request goes on to the next stage, or
 * waits for the cluster's counters.
 */
#define NGX_HTTP_VMX_GO_ON               NGX_DECLINED
#define NGX_HTTP_VMX_WAIT                NGX_AGAIN


/* what a request asks of its providers: the route decides */

typedef enum {
    NGX_HTTP_VMX_CHAT = 0,              /* chat completions */
    NGX_HTTP_VMX_EMBEDDINGS             /* embeddings of its inputs */
} ngx_http_vmx_operation_e;


/* what admission against capacity entries decides */

typedef enum {
    NGX_HTTP_VMX_ADMIT_PASS = 0,
    NGX_HTTP_VMX_ADMIT_WAIT,            /* for the cluster's grants */
    NGX_HTTP_VMX_ADMIT_DENY,            /* a limit is reached: 429 */
    NGX_HTTP_VMX_ADMIT_ERROR
} ngx_http_vmx_admit_e;


/*
 * a capacity entry: requests and tokens per period, -1 when not limited;
 * the "cost" of an entry is an entry of its own, a budget, whose tokens
 * are micro-dollars
 */

typedef struct {
    ngx_uint_t                   period;
    int64_t                      requests;
    int64_t                      tokens;
    unsigned                     per_address:1;    /* "source-ip" */
    unsigned                     cost:1;
} ngx_http_vmx_limit_t;


/* what a capacity entry limits: an API key, a resource, a connection */

typedef struct {
    u_char                       kind;          /* 'k', 'r', 'c' */
    const char                  *level;         /* "API key" ... */
    ngx_str_t                    id;
    ngx_str_t                    name;
    ngx_array_t                 *limits;        /* of ngx_http_vmx_limit_t */
    unsigned                     ahead:1;       /* checked, not reserved */
} ngx_http_vmx_scope_t;


typedef struct {
    u_char                       key[NGX_HTTP_VMX_LIMIT_KEY_MAX];
    size_t                       len;
    time_t                       end;           /* of the window */
    ngx_int_t                    attempt;       /* -1: the request's own */
    int64_t                      tokens;        /* reserved */
    unsigned                     settled:1;
    unsigned                     cost:1;        /* micro-dollars reserved */
} ngx_http_vmx_reservation_t;


typedef struct {
    int64_t                      limit;
    int64_t                      remaining;
    time_t                       reset;         /* -1: never */
    unsigned                     set:1;
} ngx_http_vmx_ratelimit_t;


/* an open-addressing index from byte strings to objects */

typedef struct {
    ngx_uint_t                   hash;
    ngx_str_t                    key;
    void                        *value;
} ngx_http_vmx_slot_t;


typedef struct {
    ngx_http_vmx_slot_t         *slots;
    ngx_uint_t                   mask;
} ngx_http_vmx_index_t;


/* the compiled configuration snapshot: one per version, per worker */

typedef struct ngx_http_vmx_environment_s  ngx_http_vmx_environment_t;

struct ngx_http_vmx_environment_s {
    ngx_str_t                    id;
    ngx_str_t                    workspace_id;
    ngx_str_t                    name;
    unsigned                     store_payload:1;
    unsigned                     audit_required:1;  /* 503 unaudited */
};


typedef struct {
    ngx_str_t                    id;
    ngx_str_t                    name;
    ngx_http_vmx_environment_t  *env;
    ngx_str_t                    provider;
    ngx_uint_t                   provider_id;

    ngx_str_t                    base_url;
    ngx_str_t                    host;          /* for SNI and certificate */
    ngx_str_t                    host_header;   /* host[:port] */
    ngx_str_t                    base_path;     /* without trailing "/" */
    in_port_t                    port;
    unsigned                     https:1;

    ngx_addr_t                  *addrs;
    ngx_uint_t                   naddrs;

    ngx_str_t                    api_key;
    ngx_array_t                  allowed_models;    /* of ngx_str_t */
    ngx_array_t                  limits;            /* capacity */
    vmx_cfg_timeouts_t           timeouts;          /* 0: the directive's */

    /* aws-bedrock: temporary credentials from the control plane */
    ngx_str_t                    region;
    ngx_str_t                    access_key_id;
    ngx_str_t                    secret_key;
    ngx_str_t                    session_token;
    vmx_sigv4_key_t              sigv4_key;     /* the day's, this worker's */

    ngx_str_t                    unavailable;   /* why it cannot serve */
} ngx_http_vmx_connection_t;


typedef struct {
    ngx_str_t                    provider;
    ngx_str_t                    model;
    ngx_http_vmx_connection_t   *connection;
    const vmx_cfg_price_t       *prices;        /* NULL: not priced */
} ngx_http_vmx_target_t;


/* prioritization: pools of resources sharing a connection's tokens */

typedef struct ngx_http_vmx_pool_def_s  ngx_http_vmx_pool_def_t;

typedef struct {
    ngx_str_t                    name;
    int64_t                      rank;
    int64_t                      min;           /* basis points */
    int64_t                      max;
    ngx_http_vmx_pool_def_t     *def;
} ngx_http_vmx_pool_t;


struct ngx_http_vmx_pool_def_s {
    ngx_http_vmx_environment_t  *env;
    ngx_array_t                  pools;         /* of ngx_http_vmx_pool_t */
    vmx_pool_strategy_t          strategy;
};


typedef struct {
    ngx_str_t                    id;
    ngx_str_t                    name;
    ngx_http_vmx_environment_t  *env;
    ngx_http_vmx_target_t        model;
    ngx_array_t                  fallbacks;     /* of ngx_http_vmx_target_t */
    ngx_array_t                  secondaries;   /* of ngx_http_vmx_target_t */
    ngx_http_vmx_pool_t         *pool;          /* prioritization, or NULL */
    ngx_array_t                  limits;        /* when enforceCapacity */
    vmx_rules_t                 *rules;         /* routing, when active */
    vmx_cfg_timeouts_t           timeouts;      /* 0: the connection's */
    ngx_str_t                    unavailable;   /* why it cannot serve */
    unsigned                     use_fallback:1;
} ngx_http_vmx_resource_t;


typedef struct {
    ngx_str_t                    id;
    ngx_str_t                    name;
    ngx_http_vmx_environment_t  *env;
    u_char                       hash[32];
    ngx_array_t                  resources;     /* of resource pointers */
    ngx_array_t                  limits;        /* when enforceCapacity */
    vmx_json_t                  *labels;        /* an object, or NULL */
    time_t                       expires_at;    /* 0: never */
    u_char                       previous_hash[32];  /* a rotation's */
    time_t                       previous_expires_at;   /* 0: none */
    unsigned                     enabled:1;
} ngx_http_vmx_api_key_t;


typedef struct {
    ngx_pool_t                  *pool;
    vmx_config_t                *config;        /* its problems */
    uint64_t                     version;
    time_t                       loaded_at;
    ngx_uint_t                   refs;          /* requests using it */
    unsigned                     retired:1;

    ngx_http_vmx_index_t         environments;  /* by id */
    ngx_http_vmx_index_t         connections;   /* by id */
    ngx_http_vmx_index_t         resources;     /* by environment id "/" name */
    ngx_http_vmx_index_t         resource_ids;  /* by id */
    ngx_http_vmx_index_t         api_keys;      /* by SHA-256 of the key */
    ngx_http_vmx_index_t         pool_defs;     /* by environment id */
} ngx_http_vmx_snapshot_t;


typedef struct ngx_http_vmx_pool_slot_s ngx_http_vmx_pool_slot_t;


/* the shared zone holding the raw snapshot pushed by the control plane */

#define NGX_HTTP_VMX_WORKERS_MAX    64
#define NGX_HTTP_VMX_REFUSED_LEN    256
#define NGX_HTTP_VMX_DISK_NONCE_LEN 24     /* the disk copy's, XChaCha20's */

/* the priority of the module's task threads, below the workers' */
#define NGX_HTTP_VMX_THREAD_NICE    10


typedef struct {
    ngx_atomic_t                 generation;    /* bumped on every swap */
    uint64_t                     version;       /* the one stored */
    uint64_t                     running;       /* the one every worker runs */
    time_t                       loaded_at;
    u_char                      *data;
    size_t                       len;
    /* the generation each worker (by ngx_worker) has compiled */
    ngx_atomic_t                 compiled[NGX_HTTP_VMX_WORKERS_MAX];

    /* the nonce of the disk copy the zone holds (or tried) */
    u_char                       disk_nonce[NGX_HTTP_VMX_DISK_NONCE_LEN];

    /* pushes refused whole; the last one's time and reason */
    ngx_uint_t                   refused;
    time_t                       refused_at;
    size_t                       refused_len;
    u_char                       refused_error[NGX_HTTP_VMX_REFUSED_LEN];
} ngx_http_vmx_config_shctx_t;


/* a table of fixed-size slots in a zone of its own (zone.c) */

typedef struct {
    ngx_uint_t                   nslots;        /* a power of two */
    ngx_atomic_t                 used;          /* slots ever taken */
    ngx_atomic_t                 full;          /* lookups that found none */
    ngx_atomic_t                 warned;
    void                        *slots;         /* nslots + extra */
} ngx_http_vmx_table_t;


typedef struct {
    size_t                       size;          /* by its directive */
    const char                  *name;
    const char                  *directive;
    size_t                       slot_size;
    ngx_uint_t                   extra;         /* slots after the table */
    ngx_shm_zone_t              *shm_zone;
    ngx_slab_pool_t             *shpool;
    ngx_http_vmx_table_t        *table;
} ngx_http_vmx_table_zone_t;


/* the audit zone: the spool's counters and the ring (audit.c) */

typedef struct ngx_http_vmx_audit_sh_s  ngx_http_vmx_audit_sh_t;


/* vmx_redis: the cluster counters' server */

#define NGX_HTTP_VMX_REDIS_ADDR_LEN                                          \
    (NGX_INET_ADDRSTRLEN + sizeof(":65535") - 1)

/* a numeric IPv4 address: host null-terminated for hiredis, text ip:port */

typedef struct {
    in_port_t                    port;
    size_t                       len;           /* of text */
    u_char                       host[NGX_INET_ADDRSTRLEN + 1];
    u_char                       text[NGX_HTTP_VMX_REDIS_ADDR_LEN];
} ngx_http_vmx_redis_addr_t;


typedef struct {
    ngx_str_t                    addr;          /* as configured, or master */
    ngx_http_vmx_redis_addr_t    server;        /* without sentinel= */
    ngx_http_vmx_redis_addr_t   *sentinels;     /* sentinel=, NULL: none */
    ngx_uint_t                   nsentinels;
    ngx_str_t                    master;        /* its name, for sentinels */
    ngx_uint_t                   nodes;         /* expected nginx nodes */
    ngx_msec_t                   timeout;
    ngx_str_t                    password;      /* AUTH, empty: none */
    ngx_str_t                    sentinel_password;
} ngx_http_vmx_redis_conf_t;


typedef struct {
    ngx_shm_zone_t              *shm_zone;
    ngx_shm_zone_t              *limits_zone;
    ngx_http_vmx_redis_conf_t   *redis;
    ngx_http_vmx_config_shctx_t *sh;
    ngx_slab_pool_t             *shpool;

    /* the tables requests update, a zone each */
    ngx_http_vmx_table_zone_t    stats_zone;    /* series */
    ngx_http_vmx_table_zone_t    health_zone;
    ngx_http_vmx_table_zone_t    capacity_zone;
    ngx_http_vmx_table_zone_t    pools_zone;

    ngx_str_t                    file;          /* encrypted disk copy */
    ngx_str_t                    token;
    u_char                       disk_key[32];  /* derived from token */

    ngx_str_t                    spool;         /* audit records' dir */
    size_t                       audit_buffer;  /* the ring's size */
    ngx_msec_t                   audit_flush;   /* a record's longest wait */
    ngx_http_vmx_audit_sh_t     *audit;         /* NULL: no audit */
    ngx_slab_pool_t             *audit_shpool;
    size_t                       payload_max;
    off_t                        spool_max;     /* the spool's cap */
    ngx_uint_t                   spool_warn;    /* percent of the cap */

    ngx_str_t                    ranks;         /* o200k_base ranks file */
    vmx_tokenizer_t             *tokenizer;     /* built by the master */
#if (NGX_THREADS)
    ngx_thread_pool_t           *tokenizer_pool; /* large bodies' counts */
    ngx_thread_pool_t           *config_pool;    /* snapshot compiles */
    ngx_thread_pool_t           *audit_pool;     /* the ring's writes */
#endif

    ngx_uint_t                   keepalive;     /* idle connections kept */
    ngx_msec_t                   keepalive_timeout;
    ngx_uint_t                   keepalive_requests;
} ngx_http_vmx_main_conf_t;


typedef struct {
    ngx_flag_t                   gateway;
    ngx_flag_t                   config_api;

    /* a server's: its vmx_gateway locations' prefixes, for the requests
       refused before a location is chosen */
    ngx_array_t                 *gateway_prefixes;   /* of ngx_str_t */

    /* each request gets its own copy: the timeouts change per attempt */
    ngx_http_upstream_conf_t     upstream;
    ngx_str_t                    ssl_trusted_certificate;

    /* a provider's answer: its header, a gap between reads after it, the
       whole attempt; connect and send are upstream's */
    ngx_msec_t                   first_byte_timeout;
    ngx_msec_t                   idle_timeout;
    ngx_msec_t                   total_timeout;

    size_t                       max_response;  /* buffered answer bound */

    /* a budget's reservation of the completion when the request states no
       max_completion_tokens or max_tokens */
    ngx_int_t                    budget_completion_tokens;
} ngx_http_vmx_loc_conf_t;


/* an event of a request: a failed attempt, or the routing's choice */

typedef struct {
    unsigned                     routing:1;     /* else a fallback */
    ngx_str_t                    provider;      /* failed, or routed to */
    ngx_str_t                    model;
    ngx_str_t                    connection_id;
    ngx_uint_t                   status;        /* 0: no answer */
    ngx_str_t                    reason;        /* or the group's id */
    ngx_str_t                    original_provider;   /* routing */
    ngx_str_t                    original_model;
    ngx_msec_t                   time;
} ngx_http_vmx_event_t;


typedef struct {
    ngx_http_vmx_target_t       *target;
    u_char                       span_id[16];   /* its traceparent's */
    ngx_uint_t                   status;        /* of a failed attempt */
    ngx_str_t                    failure;
    ngx_msec_t                   started_ms;    /* wall clock */
    uint64_t                     started_usec;
    uint64_t                     first_byte_usec;
    uint64_t                     ended_usec;
    unsigned                     failed:1;
} ngx_http_vmx_attempt_t;


typedef struct ngx_http_vmx_ctx_s  ngx_http_vmx_ctx_t;


/* what became of the request of a provider attempt */

typedef enum {
    NGX_HTTP_VMX_BUILD_OK = 0,
    NGX_HTTP_VMX_BUILD_UNTRANSLATABLE,  /* the client's request has no form
                                           in the provider's format */
    NGX_HTTP_VMX_BUILD_UNAVAILABLE,     /* the attempt cannot be made (no
                                           credentials...) */
    NGX_HTTP_VMX_BUILD_ERROR            /* a failure of the gateway */
} ngx_http_vmx_build_e;


/*
 * A provider's wire format for one operation.  The generic attempt
 * machinery of ngx_http_vmx_upstream.c calls these; ngx_http_vmx_provider.c
 * has one set per provider and operation.  An operation that is never
 * streamed (embeddings) has no stream calls: its answers are read whole.
 */

typedef struct {
    /* the request of one attempt: request line, headers and body; when
       it cannot be made, ctx->attempt.failure says why */
    ngx_http_vmx_build_e  (*create_request)(ngx_http_request_t *r,
                                            ngx_http_vmx_ctx_t *ctx,
                                            ngx_chain_t **out);

    /* one event of a streamed answer: SSE event name and data, or an
       eventstream message's event type and payload */
    ngx_int_t  (*stream_event)(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
                               ngx_str_t *event, ngx_str_t *data,
                               vmx_buf_t *out);

    /* the provider ended its stream normally */
    void       (*stream_end)(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
                             vmx_buf_t *out);

    /* a whole answer of that status: the client's body into out; returns
       the client's status */
    ngx_uint_t (*answer)(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
                         ngx_uint_t status, ngx_str_t *body, vmx_buf_t *out);

    /* the provider's limit headers, for discovered capacity */
    ngx_str_t    requests_limit_header;
    ngx_str_t    tokens_limit_header;

    /* the Accept header of a streamed request */
    char        *stream_accept;
} ngx_http_vmx_provider_t;




/*
 * A request's context, by stage: each stage is reset as a whole, the
 * attempt and stream stages with one ngx_memzero() per provider attempt.
 */

/* what the client sent and who it is */

typedef struct {
    ngx_http_vmx_snapshot_t     *snapshot;
    ngx_http_vmx_api_key_t      *api_key;
    ngx_http_vmx_resource_t     *resource;
    ngx_http_vmx_pool_t         *pool;          /* admitted in, or NULL */

    ngx_http_vmx_operation_e     operation;
    ngx_str_t                    request_body;  /* as sent, audited */
    vmx_json_t                  *body;          /* the parsed request */
    vmx_embeddings_request_t    *embeddings;    /* its checked inputs, of
                                                   an embeddings request */
    int64_t                      estimate;      /* prompt tokens */

    /* the ids of a scoped path, kept for the audit when no key matched */
    ngx_str_t                    path_workspace_id;
    ngx_str_t                    path_environment_id;
    ngx_str_t                    correlation_id;

    /* a batch item's, from the runner's signed headers; no id: none */
    ngx_str_t                    batch_id;
    ngx_int_t                    batch_item;
    ngx_str_t                    batch_pool;    /* empty: the resource's */

    uint64_t                     start_usec;

    u_char                       request_id[36];
    u_char                       completion_id[sizeof("chatcmpl-") - 1 + 36];

    /* W3C trace context: the client's trace, or a new one */
    u_char                       trace_id[32];
    u_char                       span_id[16];       /* this request's */
    u_char                       parent_id[16];     /* the client's */
    u_char                       first_span[16];    /* the 1st attempt's */

    unsigned                     has_parent:1;
    unsigned                     stream:1;
    unsigned                     include_usage:1;
    unsigned                     audit_refused:1;  /* 503: the spool full */
} ngx_http_vmx_ctx_request_t;


/* the plan: primary or secondary model, then the fallbacks, and what
   became of each */

typedef struct {
    ngx_http_vmx_target_t      **targets;
    ngx_uint_t                   ntargets;
    ngx_uint_t                   next;          /* index of the next try */
    ngx_uint_t                   attempts;
    ngx_chain_t                 *first_request; /* built when checked */

    ngx_event_t                  total_event;   /* ends an attempt */
    uint64_t                     routing_usec;

    ngx_http_vmx_event_t        *events;        /* made by the first one */
    ngx_uint_t                   nevents;

    ngx_http_vmx_attempt_t       attempt_log[NGX_HTTP_VMX_MAX_EVENTS];
    ngx_uint_t                   nattempts;

    /* an attempt of several provider calls (embeddings of more inputs
       than one call takes): its current call and the answer its calls
       build, whole once the last has answered */
    ngx_uint_t                   call;
    vmx_embeddings_answer_t      embeddings;
    vmx_buf_t                    embeddings_out;

    /* a kept connection the provider had closed: the same model once
       more, on a new connection */
    unsigned                     reconnect:1;
    unsigned                     next_call:1;   /* the attempt goes on */
} ngx_http_vmx_ctx_plan_t;


/* the current provider attempt: its target, request and answer */

typedef struct {
    ngx_http_vmx_target_t       *target;
    ngx_http_vmx_provider_t     *provider;      /* its wire format */
    vmx_translate_ctx_t         *tc;            /* its translation */
    ngx_str_t                    failure;       /* why it failed, or cannot
                                                   be tried */
    const char                  *failure_param; /* the client's member that
                                                   the provider cannot take */

    /* the resource's timeouts, the connection's or the location's */
    ngx_msec_t                   first_byte_timeout;
    ngx_msec_t                   idle_timeout;
    ngx_msec_t                   total_timeout;

    ngx_http_status_t            status;
    ngx_uint_t                   provider_status;
    ngx_str_t                    retry_after;   /* the provider's */
    ngx_str_t                    error_type;    /* x-amzn-errortype */
    ngx_int_t                    requests_limit;
    ngx_int_t                    tokens_limit;
    ngx_http_chunked_t           chunked;
    off_t                        remaining;     /* -1: unknown */
    ngx_buf_t                   *answer;        /* a whole answer */
    ngx_buf_t                   *out_cur;       /* output of this read */
    vmx_inflate_t               *inflate;       /* Content-Encoding gzip or
                                                   deflate, else NULL */

    vmx_usage_t                  usage;         /* as the provider said */

    unsigned                     total_timedout:1;
    unsigned                     chunked_answer:1;
    unsigned                     answered:1;    /* got a provider header */
    unsigned                     provider_close:1; /* "Connection: close" */
    unsigned                     complete:1;    /* saw the answer's end */
    unsigned                     body_done:1;   /* its framing ended then */
    unsigned                     framing_tail:1;   /* complete, its framing's
                                                    end awaited */
    unsigned                     own_response:1;   /* not nginx's page */
} ngx_http_vmx_ctx_attempt_t;


/* the current attempt's streamed answer: its parser and translation */

typedef struct {
    vmx_sse_parser_t             sse;
    vmx_eventstream_decoder_t    es;
    const vmx_eventstream_message_t  *es_message;  /* the current one */
    void                        *stream_state;
    vmx_stream_error_t          *stream_error;  /* the provider's error
                                                   event, of this event */
    size_t                       held;          /* bytes held */

    unsigned                     streamed:1;    /* SSE or eventstream */
    unsigned                     eventstream:1;
    unsigned                     holding:1;     /* a 2xx stream's output is
                                                   held until its first
                                                   content: an error before
                                                   it still falls back */
} ngx_http_vmx_ctx_stream_t;


/* capacity and prioritization: the reservations of this request and its
   attempts */

typedef struct {
    ngx_http_vmx_reservation_t  *reservations;  /* the first admission's */
    ngx_uint_t                   nreservations;
    ngx_http_vmx_ratelimit_t     ratelimit[3];  /* requests, tokens, cost */
    ngx_http_vmx_ratelimit_t     ratelimit_own[3];  /* the key's, resource's */
    ngx_uint_t                   capacity_failures;

    /* prioritization: the tokens counted for the request's pool */
    ngx_http_vmx_pool_slot_t    *pool_slot;
    time_t                       pool_second;
    int64_t                      pool_tokens;

    ngx_event_t                  limits_event;  /* the cluster answered */
    ngx_uint_t                   limits_waiting;    /* refills in flight */
    ngx_uint_t                   limits_waits;
    uint64_t                     gate_usec;

    unsigned                     limits_granted:1;  /* by the last refill */
    unsigned                     over_budget:1;     /* the refusal's entry */
    unsigned                     unpriced:1;    /* a budget applied to a
                                                   model without a price */
} ngx_http_vmx_ctx_admission_t;


/* what the client gets: the answer as audited, the gateway's own error */

typedef struct {
    vmx_buf_t                    scratch;       /* translation output */
    vmx_buf_t                    capture;       /* the answer, audited */
    ngx_str_t                    error_code;
    ngx_str_t                    error_message;
    ngx_str_t                    error_body;

    unsigned                     capture_truncated:1;
    unsigned                     audited:1;     /* its record is written */
    unsigned                     stream_failed:1;   /* an error after the
                                                       client's first byte */
    unsigned                     error_page:1;     /* replacing nginx's */
    unsigned                     error_page_sent:1;
} ngx_http_vmx_ctx_response_t;


struct ngx_http_vmx_ctx_s {
    ngx_http_vmx_ctx_request_t    request;
    ngx_http_vmx_ctx_plan_t       plan;
    ngx_http_vmx_ctx_attempt_t    attempt;
    ngx_http_vmx_ctx_stream_t     stream;
    ngx_http_vmx_ctx_admission_t  admission;
    ngx_http_vmx_ctx_response_t   response;
};


extern ngx_module_t  ngx_http_vmx_module;


/* ngx_http_vmx_handler.c */
ngx_int_t ngx_http_vmx_gateway_handler(ngx_http_request_t *r);
ngx_http_vmx_ctx_t *ngx_http_vmx_create_ctx(ngx_http_request_t *r);

/* ngx_http_vmx_gate.c */
ngx_int_t ngx_http_vmx_chat_admit(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx);
void ngx_http_vmx_chat_continue(ngx_http_request_t *r, ngx_int_t rc);

/* ngx_http_vmx_filter.c */
ngx_int_t ngx_http_vmx_filter_install(ngx_conf_t *cf);

/* ngx_http_vmx_util.c */
ngx_int_t ngx_http_vmx_send_error(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_uint_t status, const char *code,
    ngx_str_t *message);
ngx_int_t ngx_http_vmx_send_error_param(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_uint_t status, const char *code,
    ngx_str_t *message, const char *param);
ngx_int_t ngx_http_vmx_send_json(ngx_http_request_t *r, ngx_uint_t status,
    u_char *data, size_t len);
ngx_int_t ngx_http_vmx_send_body(ngx_http_request_t *r, u_char *data,
    size_t len);
ngx_int_t ngx_http_vmx_read_body(ngx_http_request_t *r, ngx_str_t *body);
void *ngx_http_vmx_json_alloc(void *pool, size_t size);
void ngx_http_vmx_random_init(void);
/* bytes of the worker's generator, seeded once per worker: no system call */
void ngx_http_vmx_random_bytes(u_char *buf, size_t len);
void ngx_http_vmx_span_id(u_char *id);
uint64_t ngx_http_vmx_usec(void);
ngx_table_elt_t *ngx_http_vmx_header_in(ngx_http_request_t *r,
    const char *name);
ngx_http_vmx_event_t *ngx_http_vmx_event_add(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx);
ngx_flag_t ngx_http_vmx_header_safe(ngx_str_t *value);
u_char *ngx_http_vmx_printable(u_char *dst, const char *src, size_t len);
#if (NGX_THREADS)
void ngx_http_vmx_thread_yield(void);
ngx_thread_pool_t *ngx_http_vmx_conf_thread_pool(ngx_conf_t *cf,
    ngx_str_t *arg);
#else
char *ngx_http_vmx_conf_no_threads(ngx_conf_t *cf, ngx_str_t *arg);
#endif

/* ngx_http_vmx_config.c */
ngx_int_t ngx_http_vmx_index_init(ngx_http_vmx_index_t *ix, ngx_pool_t *pool,
    ngx_uint_t n);
ngx_int_t ngx_http_vmx_index_add(ngx_http_vmx_index_t *ix, ngx_str_t *key,
    void *value);
void *ngx_http_vmx_index_find(ngx_http_vmx_index_t *ix, u_char *key,
    size_t len);
ngx_int_t ngx_http_vmx_config_init_process(ngx_cycle_t *cycle);
ngx_http_vmx_snapshot_t *ngx_http_vmx_snapshot_acquire(ngx_http_request_t *r);
uint64_t ngx_http_vmx_config_running(ngx_http_vmx_main_conf_t *mcf);
ngx_int_t ngx_http_vmx_config_api_handler(ngx_http_request_t *r);
ngx_shm_zone_t *ngx_http_vmx_zone_add(ngx_conf_t *cf, ngx_str_t *arg);
char *ngx_http_vmx_config_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_vmx_conf_read_secret(ngx_conf_t *cf, ngx_str_t *name,
    size_t min, const char *what, ngx_str_t *secret);
char *ngx_http_vmx_config_token_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* ngx_http_vmx_audit.c */
ngx_int_t ngx_http_vmx_audit_init_process(ngx_cycle_t *cycle);
void ngx_http_vmx_audit_exit_process(ngx_cycle_t *cycle);
void ngx_http_vmx_audit_write(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx);
void ngx_http_vmx_audit_capture(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, u_char *data, size_t len);
char *ngx_http_vmx_audit_spool(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_vmx_audit_refused(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx);
ngx_int_t ngx_http_vmx_spool_handler(ngx_http_request_t *r);
u_char *ngx_http_vmx_spool_metrics(ngx_http_request_t *r, u_char *p,
    u_char *last);

/* ngx_http_vmx_limits.c */
char *ngx_http_vmx_limits_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_http_vmx_admit_e ngx_http_vmx_limits_admit(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_http_vmx_scope_t *scopes, ngx_uint_t nscopes,
    ngx_int_t attempt);
void ngx_http_vmx_limits_settle(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx);
void ngx_http_vmx_limits_release(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_uint_t attempt);
time_t ngx_http_vmx_days_from_civil(ngx_int_t y, ngx_int_t m, ngx_int_t d);
void ngx_http_vmx_limits_resync(ngx_http_vmx_main_conf_t *mcf, u_char *epoch,
    size_t len);
void ngx_http_vmx_limits_flush(ngx_http_vmx_main_conf_t *mcf);
u_char *ngx_http_vmx_usd(u_char *p, int64_t micros);

/* ngx_http_vmx_redis.c */
struct redisReply;

typedef void (*ngx_http_vmx_redis_handler_pt)(struct redisReply *reply,
    void *data);

char *ngx_http_vmx_redis_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_vmx_redis_init_process(ngx_cycle_t *cycle);
ngx_uint_t ngx_http_vmx_redis_up(void);
ngx_http_vmx_redis_conf_t *ngx_http_vmx_redis_conf(void);
ngx_str_t *ngx_http_vmx_redis_master(void);
ngx_int_t ngx_http_vmx_redis_command(ngx_http_vmx_redis_handler_pt handler,
    void *data, int argc, const char **argv, const size_t *argvlen);

/* ngx_http_vmx_pools.c */
ngx_int_t ngx_http_vmx_pools_add_zone(ngx_conf_t *cf,
    ngx_http_vmx_main_conf_t *mcf);
ngx_http_vmx_admit_e ngx_http_vmx_pools_gate(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx);
void ngx_http_vmx_pools_settle(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx);
ngx_http_vmx_pool_t *ngx_http_vmx_pools_find(ngx_http_vmx_snapshot_t *snapshot,
    ngx_http_vmx_environment_t *env, ngx_str_t *name);

/* ngx_http_vmx_zone.c */
ngx_int_t ngx_http_vmx_table_add(ngx_conf_t *cf,
    ngx_http_vmx_table_zone_t *tz, const char *name, const char *directive,
    size_t size, size_t slot_size, ngx_uint_t extra);
void ngx_http_vmx_table_full(ngx_http_vmx_table_zone_t *tz, ngx_log_t *log,
    const char *then);

/* ngx_http_vmx_stats.c */
ngx_int_t ngx_http_vmx_stats_add_zones(ngx_conf_t *cf,
    ngx_http_vmx_main_conf_t *mcf);
void ngx_http_vmx_stats_record(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx);
ngx_int_t ngx_http_vmx_status_handler(ngx_http_request_t *r);
void ngx_http_vmx_health_record(ngx_http_request_t *r,
    ngx_http_vmx_target_t *target, ngx_int_t status, uint64_t usec);
double ngx_http_vmx_error_rate(ngx_http_request_t *r,
    ngx_http_vmx_target_t *target, ngx_uint_t minutes, ngx_int_t status);

/* ngx_http_vmx_capacity.c */
ngx_int_t ngx_http_vmx_capacity_add_zone(ngx_conf_t *cf,
    ngx_http_vmx_main_conf_t *mcf);
void ngx_http_vmx_capacity_record(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx);
ngx_int_t ngx_http_vmx_capacity_report(ngx_http_request_t *r);

/* ngx_http_vmx_tokens.c */
char *ngx_http_vmx_tokenizer(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
ngx_int_t ngx_http_vmx_tokens_init_process(ngx_cycle_t *cycle);
ngx_int_t ngx_http_vmx_estimate(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx);

/* ngx_http_vmx_keepalive.c */
ngx_int_t ngx_http_vmx_keepalive_init_process(ngx_cycle_t *cycle);
ngx_int_t ngx_http_vmx_keepalive_get(ngx_peer_connection_t *pc,
    ngx_http_vmx_connection_t *conn);
void ngx_http_vmx_keepalive_save(ngx_peer_connection_t *pc,
    ngx_http_upstream_t *u, ngx_http_vmx_connection_t *conn,
    ngx_uint_t state);

/* ngx_http_vmx_provider.c */
ngx_http_vmx_provider_t *ngx_http_vmx_provider(ngx_uint_t provider_id,
    ngx_http_vmx_operation_e operation);
ngx_http_vmx_build_e ngx_http_vmx_provider_request(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_chain_t **out);

/* ngx_http_vmx_upstream.c */
u_char *ngx_http_vmx_out(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    size_t size);
ngx_int_t ngx_http_vmx_upstream_start(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx);
void ngx_http_vmx_attempt_reset(ngx_http_vmx_ctx_t *ctx,
    ngx_http_vmx_target_t *target);
ngx_int_t ngx_http_vmx_upstream_conf(ngx_conf_t *cf,
    ngx_http_vmx_loc_conf_t *prev, ngx_http_vmx_loc_conf_t *conf);


#endif /* _NGX_HTTP_VMX_MODULE_H_INCLUDED_ */
