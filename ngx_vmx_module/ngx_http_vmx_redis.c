/*
 * VM-X gateway: the Redis client of the cluster counters.
 *
 * Each worker keeps one hiredis asynchronous context, its socket wrapped in
 * an ngx_connection_t and driven by nginx's event loop: hiredis asks for
 * read and write interest through the adapter hooks below, nginx calls back
 * when the socket is ready.  Events are level-triggered: hiredis 0.14 reads
 * at most 16 KB per call, and a level-triggered event comes back while more
 * is buffered, where an edge-triggered one would not.  Nothing here ever
 * blocks the worker: the address is numeric (redisAsyncConnect would resolve
 * a name synchronously), connecting is non-blocking, and a timer of the
 * worker reconnects with a backoff and gives up on an unresponsive server.
 *
 * The link is "up" once connected, authenticated (AUTH, when vmx_redis has
 * a password_file) and once the counters have checked the server's epoch
 * (ngx_http_vmx_limits_resync()); the counters enforce locally while it is
 * not.
 *
 * With sentinel=, the server is the master the sentinels name: a second
 * context of the worker asks one sentinel (the next one when it fails)
 * SENTINEL get-master-addr-by-name, then stays subscribed to its
 * +switch-master messages.  The link moves when the master does; a server
 * that says it is not a master (ROLE, or a READONLY answer) is left and
 * the next sentinel asked.
 */

#include "ngx_http_vmx_module.h"

#include <hiredis/hiredis.h>
#include <hiredis/async.h>


#define NGX_HTTP_VMX_REDIS_TICK           100
#define NGX_HTTP_VMX_REDIS_BACKOFF_MIN    100
#define NGX_HTTP_VMX_REDIS_BACKOFF_MAX    2000
#define NGX_HTTP_VMX_REDIS_SENTINELS_MAX  16
#define NGX_HTTP_VMX_REDIS_MASTER_LEN     64
#define NGX_HTTP_VMX_REDIS_NAME_LEN                                          \
    (NGX_HTTP_VMX_REDIS_MASTER_LEN + sizeof(" at ") - 1                      \
     + NGX_HTTP_VMX_REDIS_ADDR_LEN)


typedef struct {
    ngx_http_vmx_redis_handler_pt   handler;
    void                           *data;
} ngx_http_vmx_redis_call_t;


typedef enum {
    NGX_HTTP_VMX_SENTINEL_NONE = 0,
    NGX_HTTP_VMX_SENTINEL_ASKING,               /* connecting, asking */
    NGX_HTTP_VMX_SENTINEL_SUBSCRIBED            /* answered, listening */
} ngx_http_vmx_sentinel_state_e;


typedef struct {
    ngx_http_vmx_redis_conf_t      *conf;
    redisAsyncContext              *ac;
    ngx_event_t                     tick;
    ngx_msec_t                      backoff;
    ngx_msec_t                      next_connect;
    ngx_msec_t                      progress;     /* last reply or send */
    ngx_uint_t                      outstanding;  /* commands sent */
    ngx_int_t                       reported;     /* -1: nothing yet */
    ngx_http_vmx_redis_addr_t       server;       /* port 0: none known */
    ngx_str_t                       name;         /* in the log */
    u_char                          name_buf[NGX_HTTP_VMX_REDIS_NAME_LEN];

    /* sentinel= */
    redisAsyncContext              *sac;
    ngx_http_vmx_sentinel_state_e   sentinel_state;
    ngx_uint_t                      sentinel;     /* the one asked */
    ngx_msec_t                      sentinel_backoff;
    ngx_msec_t                      sentinel_next_connect;
    ngx_msec_t                      sentinel_progress;
    unsigned                        sentinel_reported:1;  /* a refusal */

    unsigned                        up:1;
} ngx_http_vmx_redis_t;


static ngx_int_t ngx_http_vmx_redis_parse_addr(ngx_conf_t *cf,
    ngx_str_t *text, ngx_http_vmx_redis_addr_t *addr);
static ngx_int_t ngx_http_vmx_redis_set_addr(ngx_http_vmx_redis_addr_t *addr,
    u_char *host, size_t hlen, u_char *port, size_t plen);
static ngx_int_t ngx_http_vmx_redis_attach(redisAsyncContext *ac);
static void ngx_http_vmx_redis_connect(void);
static void ngx_http_vmx_redis_connected(const redisAsyncContext *ac,
    int status);
static void ngx_http_vmx_redis_disconnected(const redisAsyncContext *ac,
    int status);
static void ngx_http_vmx_redis_close(const char *why, const char *detail);
static void ngx_http_vmx_redis_lost(const char *why, const char *detail);
static void ngx_http_vmx_redis_auth(redisAsyncContext *ac, void *r,
    void *privdata);
static void ngx_http_vmx_redis_ready(void);
static void ngx_http_vmx_redis_role(redisAsyncContext *ac, void *r,
    void *privdata);
static void ngx_http_vmx_redis_demoted(redisAsyncContext *ac,
    const char *role);
static void ngx_http_vmx_redis_hello(void);
static void ngx_http_vmx_redis_epoch(redisReply *reply, void *data);
static void ngx_http_vmx_redis_report(ngx_uint_t up, const char *why,
    const char *detail);
static void ngx_http_vmx_redis_reply(redisAsyncContext *ac, void *r,
    void *privdata);
static void ngx_http_vmx_redis_sentinel_connect(void);
static void ngx_http_vmx_redis_sentinel_connected(const redisAsyncContext *ac,
    int status);
static void ngx_http_vmx_redis_sentinel_disconnected(
    const redisAsyncContext *ac, int status);
static void ngx_http_vmx_redis_sentinel_master(redisAsyncContext *ac, void *r,
    void *privdata);
static void ngx_http_vmx_redis_sentinel_switch(redisAsyncContext *ac, void *r,
    void *privdata);
static void ngx_http_vmx_redis_sentinel_drop(const char *why,
    const char *detail);
static void ngx_http_vmx_redis_follow(ngx_http_vmx_redis_addr_t *master);
static void ngx_http_vmx_redis_tick(ngx_event_t *ev);
static void ngx_http_vmx_redis_read_handler(ngx_event_t *ev);
static void ngx_http_vmx_redis_write_handler(ngx_event_t *ev);
static void ngx_http_vmx_redis_add_read(void *data);
static void ngx_http_vmx_redis_del_read(void *data);
static void ngx_http_vmx_redis_add_write(void *data);
static void ngx_http_vmx_redis_del_write(void *data);
static void ngx_http_vmx_redis_cleanup(void *data);


/* per worker */
static ngx_http_vmx_redis_t  ngx_http_vmx_redis;


/*
 * vmx_redis address | sentinel=address,... master=name
 *     [nodes=number] [timeout=time] [password_file=path]
 *     [sentinel_password_file=path]
 */

char *
ngx_http_vmx_redis_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_vmx_main_conf_t *mcf = conf;

    u_char                     *p, *last, *comma;
    ngx_int_t                   n;
    ngx_str_t                  *value, *secret, s;
    ngx_uint_t                  i;
    ngx_http_vmx_redis_conf_t  *rc;

    if (mcf->redis) {
        return "is duplicate";
    }

    value = cf->args->elts;

    rc = ngx_pcalloc(cf->pool, sizeof(ngx_http_vmx_redis_conf_t));
    if (rc == NULL) {
        return NGX_CONF_ERROR;
    }

    rc->nodes = 3;
    rc->timeout = 1000;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "sentinel=", 9) == 0) {
            rc->sentinels = ngx_pcalloc(cf->pool,
                                        NGX_HTTP_VMX_REDIS_SENTINELS_MAX
                                        * sizeof(ngx_http_vmx_redis_addr_t));
            if (rc->sentinels == NULL) {
                return NGX_CONF_ERROR;
            }

            p = value[i].data + 9;
            last = value[i].data + value[i].len;

            while (p < last) {
                if (rc->nsentinels == NGX_HTTP_VMX_REDIS_SENTINELS_MAX) {
                    return "has too many sentinels";
                }

                comma = ngx_strlchr(p, last, ',');
                if (comma == NULL) {
                    comma = last;
                }

                s.data = p;
                s.len = comma - p;

                if (ngx_http_vmx_redis_parse_addr(cf, &s,
                                         &rc->sentinels[rc->nsentinels++])
                    != NGX_OK)
                {
                    return NGX_CONF_ERROR;
                }

                p = comma + 1;
            }

            if (rc->nsentinels == 0) {
                return "has no sentinel";
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "master=", 7) == 0) {
            rc->master.data = value[i].data + 7;
            rc->master.len = value[i].len - 7;

            if (rc->master.len == 0
                || rc->master.len > NGX_HTTP_VMX_REDIS_MASTER_LEN)
            {
                return "has an invalid \"master\" name";
            }

            continue;
        }

        if (i == 1) {
            if (ngx_http_vmx_redis_parse_addr(cf, &value[1], &rc->server)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            rc->addr = value[1];
            continue;
        }

        if (ngx_strncmp(value[i].data, "nodes=", 6) == 0) {
            n = ngx_atoi(value[i].data + 6, value[i].len - 6);
            if (n < 1) {
                return "has an invalid \"nodes\" value";
            }

            rc->nodes = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "timeout=", 8) == 0) {
            s.data = value[i].data + 8;
            s.len = value[i].len - 8;

            rc->timeout = ngx_parse_time(&s, 0);
            if (rc->timeout == (ngx_msec_t) NGX_ERROR || rc->timeout == 0) {
                return "has an invalid \"timeout\" value";
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "password_file=", 14) == 0) {
            s.data = value[i].data + 14;
            secret = &rc->password;

        } else if (ngx_strncmp(value[i].data, "sentinel_password_file=", 23)
                   == 0)
        {
            s.data = value[i].data + 23;
            secret = &rc->sentinel_password;

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }

        s.len = value[i].data + value[i].len - s.data;

        if (ngx_http_vmx_conf_read_secret(cf, &s, 1, "password", secret)
            != NGX_CONF_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    if (rc->sentinels) {
        if (rc->addr.len || rc->master.len == 0) {
            return "with \"sentinel=\" needs \"master=\" and no address";
        }

        /* the counters' Redis is known by its name: it moves */
        rc->addr = rc->master;

    } else if (rc->master.len || rc->sentinel_password.len) {
        return "has \"master=\" or \"sentinel_password_file=\" without "
               "\"sentinel=\"";
    }

    mcf->redis = rc;

    return NGX_CONF_OK;
}


/* a numeric address: hiredis resolves names synchronously */

static ngx_int_t
ngx_http_vmx_redis_parse_addr(ngx_conf_t *cf, ngx_str_t *text,
    ngx_http_vmx_redis_addr_t *addr)
{
    u_char  *colon;

    colon = ngx_strlchr(text->data, text->data + text->len, ':');

    if (colon == NULL
        || ngx_http_vmx_redis_set_addr(addr, text->data, colon - text->data,
                                       colon + 1,
                                       text->data + text->len - colon - 1)
           != NGX_OK)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "vmx_redis needs a numeric IPv4 address and a "
                           "port, not \"%V\"", text);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* from the configuration, or from a sentinel's answer */

static ngx_int_t
ngx_http_vmx_redis_set_addr(ngx_http_vmx_redis_addr_t *addr, u_char *host,
    size_t hlen, u_char *port, size_t plen)
{
    u_char     *p;
    ngx_int_t   n;

    n = ngx_atoi(port, plen);

    if (hlen == 0 || hlen > NGX_INET_ADDRSTRLEN
        || ngx_inet_addr(host, hlen) == INADDR_NONE
        || n < 1 || n > 65535)
    {
        return NGX_ERROR;
    }

    p = ngx_cpymem(addr->host, host, hlen);
    *p = '\0';

    addr->port = (in_port_t) n;
    addr->len = ngx_sprintf(addr->text, "%*s:%i", hlen, host, n) - addr->text;

    return NGX_OK;
}


ngx_int_t
ngx_http_vmx_redis_init_process(ngx_cycle_t *cycle)
{
    ngx_http_vmx_redis_t      *rd;
    ngx_http_vmx_main_conf_t  *mcf;

    rd = &ngx_http_vmx_redis;

    ngx_memzero(rd, sizeof(ngx_http_vmx_redis_t));
    rd->reported = -1;

    mcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_vmx_module);

    if (mcf == NULL || mcf->redis == NULL || mcf->limits_zone == NULL) {
        return NGX_OK;
    }

    rd->conf = mcf->redis;
    rd->name.data = rd->name_buf;

    if (rd->conf->sentinels) {
        /* the workers spread over the sentinels */
        rd->sentinel = ngx_worker % rd->conf->nsentinels;
        rd->name.len = ngx_sprintf(rd->name_buf, "%V", &rd->conf->master)
                       - rd->name_buf;

    } else {
        rd->server = rd->conf->server;
        rd->name = rd->conf->addr;
    }

    /* the timer does not keep an exiting worker alive */
    rd->tick.handler = ngx_http_vmx_redis_tick;
    rd->tick.log = cycle->log;
    rd->tick.cancelable = 1;

    if (rd->conf->sentinels) {
        ngx_http_vmx_redis_sentinel_connect();

    } else {
        ngx_http_vmx_redis_connect();
    }

    ngx_add_timer(&rd->tick, NGX_HTTP_VMX_REDIS_TICK);

    return NGX_OK;
}


/* 1 when this worker's link to Redis is up */

ngx_uint_t
ngx_http_vmx_redis_up(void)
{
    return ngx_http_vmx_redis.up;
}


ngx_http_vmx_redis_conf_t *
ngx_http_vmx_redis_conf(void)
{
    return ngx_http_vmx_redis.conf;
}


/* the master the sentinels named to this worker, NULL: none or no sentinel= */

ngx_str_t *
ngx_http_vmx_redis_master(void)
{
    static ngx_str_t  master;

    if (ngx_http_vmx_redis.conf == NULL
        || ngx_http_vmx_redis.conf->sentinels == NULL
        || ngx_http_vmx_redis.server.port == 0)
    {
        return NULL;
    }

    master.data = ngx_http_vmx_redis.server.text;
    master.len = ngx_http_vmx_redis.server.len;

    return &master;
}


/*
 * Sends a command; the handler gets its reply, or NULL when the link failed
 * first.  NGX_ERROR: not sent, the handler will not be called.
 */

ngx_int_t
ngx_http_vmx_redis_command(ngx_http_vmx_redis_handler_pt handler, void *data,
    int argc, const char **argv, const size_t *argvlen)
{
    ngx_http_vmx_redis_t       *rd;
    ngx_http_vmx_redis_call_t  *call;

    rd = &ngx_http_vmx_redis;

    if (rd->ac == NULL) {
        return NGX_ERROR;
    }

    call = ngx_alloc(sizeof(ngx_http_vmx_redis_call_t), ngx_cycle->log);
    if (call == NULL) {
        return NGX_ERROR;
    }

    call->handler = handler;
    call->data = data;

    if (redisAsyncCommandArgv(rd->ac, ngx_http_vmx_redis_reply, call, argc,
                              argv, argvlen)
        != REDIS_OK)
    {
        ngx_free(call);
        return NGX_ERROR;
    }

    if (rd->outstanding++ == 0) {
        rd->progress = ngx_current_msec;
    }

    return NGX_OK;
}


static void
ngx_http_vmx_redis_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    redisReply                 *reply = r;
    ngx_http_vmx_redis_call_t  *call = privdata;

    ngx_http_vmx_redis.outstanding--;
    ngx_http_vmx_redis.progress = ngx_current_msec;

    if (reply && reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "vmx: redis %V answered \"%*s\"",
                      &ngx_http_vmx_redis.name, (size_t) reply->len,
                      reply->str);

        /* a master demoted under us: writes are refused */
        if (ngx_http_vmx_redis.conf->sentinels
            && ngx_strncmp(reply->str, "READONLY", 8) == 0)
        {
            ngx_http_vmx_redis_demoted(ac, "replica");
        }

        reply = NULL;
    }

    call->handler(reply, call->data);

    ngx_free(call);
}


/* an ngx_connection_t for a context's socket, driven by nginx's events */

static ngx_int_t
ngx_http_vmx_redis_attach(redisAsyncContext *ac)
{
    ngx_connection_t  *c;

    c = ngx_get_connection(ac->c.fd, ngx_cycle->log);
    if (c == NULL) {
        return NGX_ERROR;
    }

    c->data = ac;

    /* closed by nginx when the worker exits gracefully */
    c->idle = 1;

    c->read->handler = ngx_http_vmx_redis_read_handler;
    c->write->handler = ngx_http_vmx_redis_write_handler;
    c->read->log = c->log;
    c->write->log = c->log;

    ac->ev.data = c;
    ac->ev.addRead = ngx_http_vmx_redis_add_read;
    ac->ev.delRead = ngx_http_vmx_redis_del_read;
    ac->ev.addWrite = ngx_http_vmx_redis_add_write;
    ac->ev.delWrite = ngx_http_vmx_redis_del_write;
    ac->ev.cleanup = ngx_http_vmx_redis_cleanup;

    return NGX_OK;
}


static void
ngx_http_vmx_redis_connect(void)
{
    redisAsyncContext     *ac;
    ngx_http_vmx_redis_t  *rd;

    rd = &ngx_http_vmx_redis;

    ac = redisAsyncConnect((char *) rd->server.host, rd->server.port);

    if (ac == NULL || ac->err) {
        ngx_http_vmx_redis_report(0, "cannot connect",
                                  ac ? ac->errstr : "out of memory");
        if (ac) {
            redisAsyncFree(ac);
        }

        ngx_http_vmx_redis_lost(NULL, NULL);
        return;
    }

    if (ngx_http_vmx_redis_attach(ac) != NGX_OK) {
        redisAsyncFree(ac);
        ngx_http_vmx_redis_lost(NULL, NULL);
        return;
    }

    rd->ac = ac;
    rd->outstanding = 0;
    rd->progress = ngx_current_msec;

    /* the first write event tells that the connection is established */
    redisAsyncSetConnectCallback(ac, ngx_http_vmx_redis_connected);
    redisAsyncSetDisconnectCallback(ac, ngx_http_vmx_redis_disconnected);
}


static void
ngx_http_vmx_redis_connected(const redisAsyncContext *ac, int status)
{
    const char                 *argv[2];
    size_t                      argvlen[2];
    ngx_http_vmx_redis_conf_t  *rc;

    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback */
        ngx_http_vmx_redis.ac = NULL;
        ngx_http_vmx_redis_lost("cannot connect", ac->errstr);
        return;
    }

    rc = ngx_http_vmx_redis.conf;

    if (rc->password.len == 0) {
        ngx_http_vmx_redis_ready();
        return;
    }

    argv[0] = "AUTH";
    argv[1] = (char *) rc->password.data;
    argvlen[0] = sizeof("AUTH") - 1;
    argvlen[1] = rc->password.len;

    (void) redisAsyncCommandArgv(ngx_http_vmx_redis.ac,
                                 ngx_http_vmx_redis_auth, NULL, 2, argv,
                                 argvlen);
}


/*
 * A refused password is a configuration error: logged once until AUTH
 * succeeds, the link dropped and tried again with the backoff; the counters
 * stay local meanwhile.
 */

static void
ngx_http_vmx_redis_auth(redisAsyncContext *ac, void *r, void *privdata)
{
    redisReply  *reply = r;

    if (reply == NULL) {
        /* the link failed first: the disconnect callback handles it */
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        if (ngx_http_vmx_redis.reported != 0) {
            ngx_http_vmx_redis.reported = 0;
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "vmx: redis %V refused the password of "
                          "vmx_redis password_file (\"%*s\"): counters are "
                          "enforced by this node alone",
                          &ngx_http_vmx_redis.name,
                          (size_t) reply->len, reply->str);
        }

        redisAsyncDisconnect(ac);
        return;
    }

    ngx_http_vmx_redis_ready();
}


/* a master the sentinels named may have been demoted since: ROLE tells */

static void
ngx_http_vmx_redis_ready(void)
{
    if (ngx_http_vmx_redis.conf->sentinels == NULL) {
        ngx_http_vmx_redis_hello();
        return;
    }

    (void) redisAsyncCommand(ngx_http_vmx_redis.ac, ngx_http_vmx_redis_role,
                             NULL, "ROLE");
}


static void
ngx_http_vmx_redis_role(redisAsyncContext *ac, void *r, void *privdata)
{
    redisReply  *reply = r, *role;

    if (reply == NULL) {
        return;
    }

    role = (reply->type == REDIS_REPLY_ARRAY && reply->elements > 0)
           ? reply->element[0] : reply;

    if (role->type != REDIS_REPLY_STRING) {
        ngx_http_vmx_redis_demoted(ac, "no role");
        return;
    }

    if (role->len == 6 && ngx_strncmp(role->str, "master", 6) == 0) {
        ngx_http_vmx_redis_hello();
        return;
    }

    /* hiredis ends its strings with a null */
    ngx_http_vmx_redis_demoted(ac, role->str);
}


/*
 * The server the sentinel named is not a master (a failover under way, or
 * a sentinel that has not seen it): left, and the next sentinel asked.
 * Logged when the link's state changes, as an unreachable server.
 */

static void
ngx_http_vmx_redis_demoted(redisAsyncContext *ac, const char *role)
{
    ngx_http_vmx_redis_t  *rd;

    rd = &ngx_http_vmx_redis;

    if (ac->c.flags & REDIS_DISCONNECTING) {
        /* another answer of the same server told it already */
        return;
    }

    rd->up = 0;
    ngx_http_vmx_redis_report(0, "not the master, its role", role);

    if (rd->sentinel_state == NGX_HTTP_VMX_SENTINEL_SUBSCRIBED) {
        ngx_http_vmx_redis_sentinel_drop("named a server that is not the "
                                         "master, its role", role);
    }

    redisAsyncDisconnect(ac);
}


static void
ngx_http_vmx_redis_hello(void)
{
    u_char        *p, epoch[NGX_HTTP_VMX_EPOCH_LEN];
    const char    *argv[4];
    size_t         argvlen[4];

    /*
     * A random epoch marks this Redis' counters: a server that lost them
     * (restarted without persistence) has another one, and every node then
     * pushes its whole local usage again.
     */

    p = ngx_sprintf(epoch, "%08xD%08xD%08xD", (uint32_t) ngx_random(),
                    (uint32_t) ngx_random(), (uint32_t) ngx_time());

    argv[0] = "SET";
    argv[1] = "vmx:epoch";
    argv[2] = (char *) epoch;
    argv[3] = "NX";
    argvlen[0] = 3;
    argvlen[1] = sizeof("vmx:epoch") - 1;
    argvlen[2] = p - epoch;
    argvlen[3] = 2;

    if (redisAsyncCommandArgv(ngx_http_vmx_redis.ac, NULL, NULL, 4, argv,
                              argvlen)
        != REDIS_OK)
    {
        return;
    }

    argv[0] = "GET";

    (void) ngx_http_vmx_redis_command(ngx_http_vmx_redis_epoch, NULL, 2, argv,
                                      argvlen);
}


static void
ngx_http_vmx_redis_epoch(redisReply *reply, void *data)
{
    ngx_http_vmx_main_conf_t  *mcf;

    if (reply == NULL || reply->type != REDIS_REPLY_STRING) {
        return;
    }

    mcf = ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_http_vmx_module);

    ngx_http_vmx_limits_resync(mcf, (u_char *) reply->str, reply->len);

    ngx_http_vmx_redis.up = 1;
    ngx_http_vmx_redis.backoff = 0;

    ngx_http_vmx_redis_report(1, NULL, NULL);
}


static void
ngx_http_vmx_redis_disconnected(const redisAsyncContext *ac, int status)
{
    /* hiredis frees the context after this callback */
    ngx_http_vmx_redis.ac = NULL;

    ngx_http_vmx_redis_lost("connection lost",
                            status == REDIS_OK ? "closed" : ac->errstr);
}


/* the link is dropped now: the waiting requests get NULL replies */

static void
ngx_http_vmx_redis_close(const char *why, const char *detail)
{
    ngx_http_vmx_redis_t  *rd;

    rd = &ngx_http_vmx_redis;

    rd->up = 0;
    ngx_http_vmx_redis_report(0, why, detail);

    redisAsyncFree(rd->ac);

    if (rd->ac) {
        /* not connected yet: no disconnect callback */
        rd->ac = NULL;
        ngx_http_vmx_redis_lost(NULL, NULL);
    }
}


/* the link is down: counting locally, and a reconnection later */

static void
ngx_http_vmx_redis_lost(const char *why, const char *detail)
{
    ngx_http_vmx_redis_t  *rd;

    rd = &ngx_http_vmx_redis;

    rd->up = 0;

    if (why && !ngx_exiting) {
        ngx_http_vmx_redis_report(0, why, detail);
    }

    rd->backoff = rd->backoff
                  ? ngx_min(rd->backoff * 2, NGX_HTTP_VMX_REDIS_BACKOFF_MAX)
                  : NGX_HTTP_VMX_REDIS_BACKOFF_MIN;
    rd->next_connect = ngx_current_msec + rd->backoff;
}


/* the state is logged when it changes, not on every failed attempt */

static void
ngx_http_vmx_redis_report(ngx_uint_t up, const char *why, const char *detail)
{
    ngx_http_vmx_redis_t  *rd;

    rd = &ngx_http_vmx_redis;

    if (rd->reported == (ngx_int_t) up) {
        return;
    }

    rd->reported = up;

    if (up) {
        ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                      "vmx: redis %V is up: counters are shared by the "
                      "cluster", &rd->name);
        return;
    }

    ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                  "vmx: redis %V is unreachable (%s: %s): counters are "
                  "enforced by this node alone", &rd->name, why,
                  detail ? detail : "");
}


/*
 * The sentinel link: AUTH when sentinel_password_file is set, the master's
 * address asked, then +switch-master listened to.  Commands are queued
 * before the connection completes; hiredis sends them once it does.
 */

static void
ngx_http_vmx_redis_sentinel_connect(void)
{
    const char                 *argv[3];
    size_t                      argvlen[3];
    redisAsyncContext          *ac;
    ngx_http_vmx_redis_t       *rd;
    ngx_http_vmx_redis_conf_t  *rc;
    ngx_http_vmx_redis_addr_t  *sentinel;

    rd = &ngx_http_vmx_redis;
    rc = rd->conf;
    sentinel = &rc->sentinels[rd->sentinel];

    rd->sentinel_state = NGX_HTTP_VMX_SENTINEL_ASKING;
    rd->sentinel_progress = ngx_current_msec;

    ac = redisAsyncConnect((char *) sentinel->host, sentinel->port);

    if (ac == NULL || ac->err) {
        ngx_http_vmx_redis_sentinel_drop("cannot connect",
                                         ac ? ac->errstr : "out of memory");
        if (ac) {
            redisAsyncFree(ac);
        }

        return;
    }

    if (ngx_http_vmx_redis_attach(ac) != NGX_OK) {
        redisAsyncFree(ac);
        ngx_http_vmx_redis_sentinel_drop("cannot connect", "no connection");
        return;
    }

    rd->sac = ac;

    redisAsyncSetConnectCallback(ac, ngx_http_vmx_redis_sentinel_connected);
    redisAsyncSetDisconnectCallback(ac,
                                    ngx_http_vmx_redis_sentinel_disconnected);

    if (rc->sentinel_password.len) {
        /* a refusal fails the question below: logged there */
        argv[0] = "AUTH";
        argv[1] = (char *) rc->sentinel_password.data;
        argvlen[0] = sizeof("AUTH") - 1;
        argvlen[1] = rc->sentinel_password.len;

        (void) redisAsyncCommandArgv(ac, NULL, NULL, 2, argv, argvlen);
    }

    argv[0] = "SENTINEL";
    argv[1] = "get-master-addr-by-name";
    argv[2] = (char *) rc->master.data;
    argvlen[0] = sizeof("SENTINEL") - 1;
    argvlen[1] = sizeof("get-master-addr-by-name") - 1;
    argvlen[2] = rc->master.len;

    (void) redisAsyncCommandArgv(ac, ngx_http_vmx_redis_sentinel_master, NULL,
                                 3, argv, argvlen);
}


static void
ngx_http_vmx_redis_sentinel_connected(const redisAsyncContext *ac,
    int status)
{
    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback */
        ngx_http_vmx_redis.sac = NULL;
        ngx_http_vmx_redis_sentinel_drop("cannot connect", ac->errstr);
    }
}


static void
ngx_http_vmx_redis_sentinel_disconnected(const redisAsyncContext *ac,
    int status)
{
    ngx_http_vmx_redis_t  *rd;

    rd = &ngx_http_vmx_redis;

    if (rd->sac == ac) {
        rd->sac = NULL;
    }

    /* NONE: dropped on purpose, already accounted for */
    if (rd->sentinel_state != NGX_HTTP_VMX_SENTINEL_NONE && !ngx_exiting) {
        ngx_http_vmx_redis_sentinel_drop("connection lost",
                                         status == REDIS_OK ? "closed"
                                                            : ac->errstr);
    }
}


static void
ngx_http_vmx_redis_sentinel_master(redisAsyncContext *ac, void *r,
    void *privdata)
{
    ngx_str_t                   answer;
    redisReply                 *reply = r;
    ngx_http_vmx_redis_t       *rd;
    ngx_http_vmx_redis_addr_t   master;

    rd = &ngx_http_vmx_redis;

    if (reply == NULL || ac != rd->sac) {
        /* the link failed first, or was dropped */
        return;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2
        || reply->element[0]->type != REDIS_REPLY_STRING
        || reply->element[1]->type != REDIS_REPLY_STRING
        || ngx_http_vmx_redis_set_addr(&master,
                                       (u_char *) reply->element[0]->str,
                                       reply->element[0]->len,
                                       (u_char *) reply->element[1]->str,
                                       reply->element[1]->len)
           != NGX_OK)
    {
        /* a configuration error: the master's name, a password, a host name */
        if (reply->type == REDIS_REPLY_ERROR) {
            answer.data = (u_char *) reply->str;
            answer.len = reply->len;

        } else {
            ngx_str_set(&answer, "no such master, or not a numeric address");
        }

        if (!rd->sentinel_reported) {
            rd->sentinel_reported = 1;
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "vmx: redis sentinel %*s cannot name master "
                          "\"%V\" (%V)",
                          rd->conf->sentinels[rd->sentinel].len,
                          rd->conf->sentinels[rd->sentinel].text,
                          &rd->conf->master, &answer);
        }

        ngx_http_vmx_redis_sentinel_drop(NULL, NULL);
        return;
    }

    rd->sentinel_reported = 0;
    rd->sentinel_backoff = 0;
    rd->sentinel_state = NGX_HTTP_VMX_SENTINEL_SUBSCRIBED;

    (void) redisAsyncCommand(ac, ngx_http_vmx_redis_sentinel_switch, NULL,
                             "SUBSCRIBE +switch-master");

    ngx_http_vmx_redis_follow(&master);
}


/* "+switch-master <name> <old ip> <old port> <new ip> <new port>" */

static void
ngx_http_vmx_redis_sentinel_switch(redisAsyncContext *ac, void *r,
    void *privdata)
{
    u_char                     *p, *last, *field[5];
    size_t                      len[5];
    ngx_uint_t                  n;
    redisReply                 *reply = r, *msg;
    ngx_http_vmx_redis_t       *rd;
    ngx_http_vmx_redis_addr_t   master;

    rd = &ngx_http_vmx_redis;

    if (reply == NULL || ac != rd->sac || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 3
        || reply->element[0]->type != REDIS_REPLY_STRING
        || reply->element[0]->len != 7
        || ngx_strncmp(reply->element[0]->str, "message", 7) != 0
        || reply->element[2]->type != REDIS_REPLY_STRING)
    {
        /* the subscription's confirmation, or the link going away */
        return;
    }

    msg = reply->element[2];
    p = (u_char *) msg->str;
    last = p + msg->len;

    for (n = 0; n < 5 && p < last; n++) {
        field[n] = p;
        p = ngx_strlchr(p, last, ' ');
        if (p == NULL) {
            p = last;
        }

        len[n] = p - field[n];
        p++;
    }

    if (n != 5 || len[0] != rd->conf->master.len
        || ngx_strncmp(field[0], rd->conf->master.data, len[0]) != 0
        || ngx_http_vmx_redis_set_addr(&master, field[3], len[3], field[4],
                                       len[4])
           != NGX_OK)
    {
        return;
    }

    ngx_http_vmx_redis_follow(&master);
}


/*
 * A sentinel failed (why) or answered uselessly (why NULL, logged by the
 * caller): its link is dropped, the next one asked after a backoff.
 */

static void
ngx_http_vmx_redis_sentinel_drop(const char *why, const char *detail)
{
    redisAsyncContext     *ac;
    ngx_http_vmx_redis_t  *rd;

    rd = &ngx_http_vmx_redis;

    if (why) {
        ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                      "vmx: redis sentinel %*s %s (%s): asking the next one",
                      rd->conf->sentinels[rd->sentinel].len,
                      rd->conf->sentinels[rd->sentinel].text, why,
                      detail ? detail : "");
    }

    rd->sentinel_state = NGX_HTTP_VMX_SENTINEL_NONE;
    rd->sentinel = (rd->sentinel + 1) % rd->conf->nsentinels;
    rd->sentinel_backoff = rd->sentinel_backoff
                           ? ngx_min(rd->sentinel_backoff * 2,
                                     NGX_HTTP_VMX_REDIS_BACKOFF_MAX)
                           : NGX_HTTP_VMX_REDIS_BACKOFF_MIN;
    rd->sentinel_next_connect = ngx_current_msec + rd->sentinel_backoff;

    ac = rd->sac;

    if (ac) {
        /* its disconnect callback finds the state NONE */
        rd->sac = NULL;
        redisAsyncFree(ac);
    }
}


/* a sentinel named the master: the link moves to it when it moved */

static void
ngx_http_vmx_redis_follow(ngx_http_vmx_redis_addr_t *master)
{
    ngx_http_vmx_redis_t  *rd;

    rd = &ngx_http_vmx_redis;

    if (rd->server.len == master->len
        && ngx_memcmp(rd->server.text, master->text, master->len) == 0)
    {
        return;
    }

    if (rd->ac) {
        ngx_http_vmx_redis_close("the master moved", "leaving it");
    }

    ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                  "vmx: redis master \"%V\" is %*s (was %*s), named by "
                  "sentinel %*s", &rd->conf->master, master->len,
                  master->text, rd->server.len ? rd->server.len : 4,
                  rd->server.len ? rd->server.text : (u_char *) "none",
                  rd->conf->sentinels[rd->sentinel].len,
                  rd->conf->sentinels[rd->sentinel].text);

    rd->server = *master;
    rd->name.len = ngx_snprintf(rd->name_buf, NGX_HTTP_VMX_REDIS_NAME_LEN,
                                "%V at %*s", &rd->conf->master,
                                master->len, master->text)
                   - rd->name_buf;

    rd->backoff = 0;
    ngx_http_vmx_redis_connect();
}


static void
ngx_http_vmx_redis_tick(ngx_event_t *ev)
{
    ngx_http_vmx_redis_t      *rd;
    ngx_http_vmx_main_conf_t  *mcf;

    rd = &ngx_http_vmx_redis;

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    if (rd->conf->sentinels) {
        if (rd->sac == NULL) {
            if ((ngx_msec_int_t) (ngx_current_msec
                                  - rd->sentinel_next_connect) >= 0)
            {
                ngx_http_vmx_redis_sentinel_connect();
            }

        } else if (rd->sentinel_state == NGX_HTTP_VMX_SENTINEL_ASKING
                   && ngx_current_msec - rd->sentinel_progress
                      > rd->conf->timeout)
        {
            ngx_http_vmx_redis_sentinel_drop("timed out", "no answer");
        }
    }

    if (rd->ac == NULL) {
        if (rd->server.port
            && (ngx_msec_int_t) (ngx_current_msec - rd->next_connect) >= 0)
        {
            /*
             * The master failed twice in a row: the next sentinel is asked,
             * in case the subscribed one is stuck and missed a failover.
             */
            if (rd->sentinel_state == NGX_HTTP_VMX_SENTINEL_SUBSCRIBED
                && rd->backoff > NGX_HTTP_VMX_REDIS_BACKOFF_MIN)
            {
                ngx_http_vmx_redis_sentinel_drop(NULL, NULL);
            }

            ngx_http_vmx_redis_connect();
        }

    } else if ((rd->outstanding || !rd->up)
               && ngx_current_msec - rd->progress > rd->conf->timeout)
    {
        /* an unresponsive server */
        ngx_http_vmx_redis_close("timed out", "no answer");

    } else if (rd->up) {
        mcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                                  ngx_http_vmx_module);
        ngx_http_vmx_limits_flush(mcf);
    }

    ngx_add_timer(ev, NGX_HTTP_VMX_REDIS_TICK);
}


static void
ngx_http_vmx_redis_read_handler(ngx_event_t *ev)
{
    ngx_connection_t  *c = ev->data;

    redisAsyncContext     *ac;
    ngx_http_vmx_redis_t  *rd;

    rd = &ngx_http_vmx_redis;

    if (c->close) {
        /* the worker exits: waiting requests go on with local counters */
        ac = c->data;
        rd->up = 0;
        rd->sentinel_state = NGX_HTTP_VMX_SENTINEL_NONE;

        redisAsyncFree(ac);

        if (rd->ac == ac) {
            rd->ac = NULL;
        }

        if (rd->sac == ac) {
            rd->sac = NULL;
        }

        return;
    }

    /* the context may be freed in there, and the connection with it */
    redisAsyncHandleRead(c->data);
}


static void
ngx_http_vmx_redis_write_handler(ngx_event_t *ev)
{
    ngx_connection_t  *c = ev->data;

    redisAsyncHandleWrite(c->data);
}


static void
ngx_http_vmx_redis_add_read(void *data)
{
    ngx_connection_t  *c = data;

    if (!c->read->active) {
        (void) ngx_add_event(c->read, NGX_READ_EVENT, 0);
    }
}


static void
ngx_http_vmx_redis_del_read(void *data)
{
    ngx_connection_t  *c = data;

    if (c->read->active) {
        (void) ngx_del_event(c->read, NGX_READ_EVENT, 0);
    }
}


static void
ngx_http_vmx_redis_add_write(void *data)
{
    ngx_connection_t  *c = data;

    if (!c->write->active) {
        (void) ngx_add_event(c->write, NGX_WRITE_EVENT, 0);
    }
}


static void
ngx_http_vmx_redis_del_write(void *data)
{
    ngx_connection_t  *c = data;

    if (c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
    }
}


/* hiredis closes the socket itself, right after this */

static void
ngx_http_vmx_redis_cleanup(void *data)
{
    ngx_connection_t  *c = data;

    if (c->read->active) {
        (void) ngx_del_event(c->read, NGX_READ_EVENT, NGX_CLOSE_EVENT);
    }

    if (c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, NGX_CLOSE_EVENT);
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    c->fd = (ngx_socket_t) -1;
    ngx_free_connection(c);
}
