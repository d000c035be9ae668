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
 */

#include "ngx_http_vmx_module.h"

#include <hiredis/hiredis.h>
#include <hiredis/async.h>


#define NGX_HTTP_VMX_REDIS_TICK         100
#define NGX_HTTP_VMX_REDIS_BACKOFF_MIN  100
#define NGX_HTTP_VMX_REDIS_BACKOFF_MAX  2000


typedef struct {
    ngx_http_vmx_redis_handler_pt   handler;
    void                           *data;
} ngx_http_vmx_redis_call_t;


typedef struct {
    ngx_http_vmx_redis_conf_t      *conf;
    redisAsyncContext              *ac;
    ngx_connection_t               *conn;
    ngx_event_t                     tick;
    ngx_msec_t                      backoff;
    ngx_msec_t                      next_connect;
    ngx_msec_t                      progress;     /* last reply or send */
    ngx_uint_t                      outstanding;  /* commands sent */
    ngx_int_t                       reported;     /* -1: nothing yet */
    unsigned                        up:1;
} ngx_http_vmx_redis_t;


static void ngx_http_vmx_redis_connect(void);
static void ngx_http_vmx_redis_connected(const redisAsyncContext *ac,
    int status);
static void ngx_http_vmx_redis_disconnected(const redisAsyncContext *ac,
    int status);
static void ngx_http_vmx_redis_lost(const char *why, const char *detail);
static void ngx_http_vmx_redis_auth(redisAsyncContext *ac, void *r,
    void *privdata);
static void ngx_http_vmx_redis_hello(void);
static void ngx_http_vmx_redis_epoch(redisReply *reply, void *data);
static void ngx_http_vmx_redis_report(ngx_uint_t up, const char *why,
    const char *detail);
static void ngx_http_vmx_redis_reply(redisAsyncContext *ac, void *r,
    void *privdata);
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


/* vmx_redis address [nodes=number] [timeout=time] [password_file=path] */

char *
ngx_http_vmx_redis_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_vmx_main_conf_t *mcf = conf;

    u_char                     *p;
    ngx_int_t                   n;
    ngx_str_t                  *value, s;
    ngx_uint_t                  i;
    ngx_url_t                   u;
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

    /* a numeric address: hiredis resolves names synchronously */

    ngx_memzero(&u, sizeof(ngx_url_t));
    u.url = value[1];
    u.no_resolve = 1;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.no_port || u.naddrs != 1
        || u.addrs[0].sockaddr->sa_family != AF_INET)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "vmx_redis needs a numeric IPv4 address and a "
                           "port, not \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    rc->addr = value[1];
    rc->port = u.port;

    rc->host = ngx_pnalloc(cf->pool, u.host.len + 1);
    if (rc->host == NULL) {
        return NGX_CONF_ERROR;
    }

    p = ngx_cpymem(rc->host, u.host.data, u.host.len);
    *p = '\0';

    for (i = 2; i < cf->args->nelts; i++) {

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
            s.len = value[i].len - 14;

            if (ngx_http_vmx_conf_read_secret(cf, &s, 1, "password",
                                              &rc->password)
                != NGX_CONF_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    mcf->redis = rc;

    return NGX_CONF_OK;
}


ngx_int_t
ngx_http_vmx_redis_init_process(ngx_cycle_t *cycle)
{
    ngx_http_vmx_main_conf_t  *mcf;

    ngx_memzero(&ngx_http_vmx_redis, sizeof(ngx_http_vmx_redis_t));
    ngx_http_vmx_redis.reported = -1;

    mcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_vmx_module);

    if (mcf == NULL || mcf->redis == NULL || mcf->limits_zone == NULL) {
        return NGX_OK;
    }

    ngx_http_vmx_redis.conf = mcf->redis;

    /* the timer does not keep an exiting worker alive */
    ngx_http_vmx_redis.tick.handler = ngx_http_vmx_redis_tick;
    ngx_http_vmx_redis.tick.log = cycle->log;
    ngx_http_vmx_redis.tick.cancelable = 1;

    ngx_http_vmx_redis_connect();

    ngx_add_timer(&ngx_http_vmx_redis.tick, NGX_HTTP_VMX_REDIS_TICK);

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
                      &ngx_http_vmx_redis.conf->addr, (size_t) reply->len,
                      reply->str);
        reply = NULL;
    }

    call->handler(reply, call->data);

    ngx_free(call);
}


static void
ngx_http_vmx_redis_connect(void)
{
    ngx_connection_t      *c;
    redisAsyncContext     *ac;
    ngx_http_vmx_redis_t  *rd;

    rd = &ngx_http_vmx_redis;

    ac = redisAsyncConnect((char *) rd->conf->host, rd->conf->port);

    if (ac == NULL || ac->err) {
        ngx_http_vmx_redis_report(0, "cannot connect",
                                  ac ? ac->errstr : "out of memory");
        if (ac) {
            redisAsyncFree(ac);
        }

        ngx_http_vmx_redis_lost(NULL, NULL);
        return;
    }

    c = ngx_get_connection(ac->c.fd, ngx_cycle->log);
    if (c == NULL) {
        redisAsyncFree(ac);
        ngx_http_vmx_redis_lost(NULL, NULL);
        return;
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

    rd->ac = ac;
    rd->conn = c;
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
        ngx_http_vmx_redis_hello();
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
                          &ngx_http_vmx_redis.conf->addr,
                          (size_t) reply->len, reply->str);
        }

        redisAsyncDisconnect(ac);
        return;
    }

    ngx_http_vmx_redis_hello();
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
                      "cluster", &rd->conf->addr);
        return;
    }

    ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                  "vmx: redis %V is unreachable (%s: %s): counters are "
                  "enforced by this node alone", &rd->conf->addr, why,
                  detail ? detail : "");
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

    if (rd->ac == NULL) {
        if ((ngx_msec_int_t) (ngx_current_msec - rd->next_connect) >= 0) {
            ngx_http_vmx_redis_connect();
        }

    } else if ((rd->outstanding || !rd->up)
               && ngx_current_msec - rd->progress > rd->conf->timeout)
    {
        /* an unresponsive server: the waiting requests get NULL replies */
        rd->up = 0;
        ngx_http_vmx_redis_report(0, "timed out", "no answer");

        redisAsyncFree(rd->ac);

        if (rd->ac) {
            /* not connected yet: no disconnect callback */
            rd->ac = NULL;
            ngx_http_vmx_redis_lost(NULL, NULL);
        }

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

    if (c->close) {
        /* the worker exits: waiting requests go on with local counters */
        ngx_http_vmx_redis.up = 0;
        redisAsyncFree(c->data);
        ngx_http_vmx_redis.ac = NULL;
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

    if (ngx_http_vmx_redis.conn == c) {
        ngx_http_vmx_redis.conn = NULL;
    }
}
