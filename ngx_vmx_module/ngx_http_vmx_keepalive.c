/*
 * VM-X gateway: keepalive connections to providers.
 *
 * Each worker keeps up to vmx_keepalive idle provider connections, found
 * again by address, scheme and TLS server name (providers behind one CDN
 * share addresses).  A connection is kept only after an answer read to the
 * end of its framing, from a provider that did not ask to close.
 */

#include "ngx_http_vmx_module.h"


typedef struct {
    ngx_queue_t                  queue;
    ngx_connection_t            *connection;

    socklen_t                    socklen;
    ngx_sockaddr_t               sockaddr;
    u_char                       host[256];
    size_t                       host_len;
    unsigned                     https:1;
} ngx_http_vmx_keepalive_item_t;


static ngx_http_vmx_keepalive_item_t *ngx_http_vmx_keepalive_find(
    ngx_peer_connection_t *pc, ngx_http_vmx_connection_t *conn);
static void ngx_http_vmx_keepalive_close_handler(ngx_event_t *ev);
static void ngx_http_vmx_keepalive_dummy_handler(ngx_event_t *ev);
static void ngx_http_vmx_keepalive_close(ngx_connection_t *c);


/* the worker's idle connections, most recent first, and the free items */
static ngx_queue_t  ngx_http_vmx_keepalive_cache;
static ngx_queue_t  ngx_http_vmx_keepalive_free;


ngx_int_t
ngx_http_vmx_keepalive_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                      i;
    ngx_http_vmx_main_conf_t       *mcf;
    ngx_http_vmx_keepalive_item_t  *items;

    ngx_queue_init(&ngx_http_vmx_keepalive_cache);
    ngx_queue_init(&ngx_http_vmx_keepalive_free);

    mcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_vmx_module);

    if (mcf == NULL || mcf->keepalive == 0) {
        return NGX_OK;
    }

    items = ngx_pcalloc(cycle->pool,
                        mcf->keepalive * sizeof(ngx_http_vmx_keepalive_item_t));
    if (items == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < mcf->keepalive; i++) {
        ngx_queue_insert_head(&ngx_http_vmx_keepalive_free, &items[i].queue);
    }

    return NGX_OK;
}


/* NGX_DONE with pc->connection set when an idle connection fits */

ngx_int_t
ngx_http_vmx_keepalive_get(ngx_peer_connection_t *pc,
    ngx_http_vmx_connection_t *conn)
{
    ngx_connection_t               *c;
    ngx_http_vmx_keepalive_item_t  *item;

    item = ngx_http_vmx_keepalive_find(pc, conn);
    if (item == NULL) {
        return NGX_OK;
    }

    ngx_queue_remove(&item->queue);
    ngx_queue_insert_head(&ngx_http_vmx_keepalive_free, &item->queue);

    c = item->connection;

    c->idle = 0;
    c->sent = 0;
    c->data = NULL;
    c->log = pc->log;
    c->read->log = pc->log;
    c->write->log = pc->log;
    c->pool->log = pc->log;

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    pc->connection = c;
    pc->cached = 1;

    return NGX_DONE;
}


static ngx_http_vmx_keepalive_item_t *
ngx_http_vmx_keepalive_find(ngx_peer_connection_t *pc,
    ngx_http_vmx_connection_t *conn)
{
    ngx_queue_t                    *q;
    ngx_http_vmx_keepalive_item_t  *item;

    for (q = ngx_queue_head(&ngx_http_vmx_keepalive_cache);
         q != ngx_queue_sentinel(&ngx_http_vmx_keepalive_cache);
         q = ngx_queue_next(q))
    {
        item = ngx_queue_data(q, ngx_http_vmx_keepalive_item_t, queue);

        if (item->https == conn->https
            && item->host_len == conn->host.len
            && ngx_memcmp(item->host, conn->host.data, conn->host.len) == 0
            && ngx_memn2cmp((u_char *) &item->sockaddr,
                            (u_char *) pc->sockaddr, item->socklen,
                            pc->socklen)
               == 0)
        {
            return item;
        }
    }

    return NULL;
}


/* keeps the attempt's connection when its answer allows */

void
ngx_http_vmx_keepalive_save(ngx_peer_connection_t *pc, ngx_http_upstream_t *u,
    ngx_http_vmx_connection_t *conn, ngx_uint_t state)
{
    ngx_queue_t                    *q;
    ngx_connection_t               *c;
    ngx_http_vmx_main_conf_t       *mcf;
    ngx_http_vmx_keepalive_item_t  *item;

    c = pc->connection;

    if (state & NGX_PEER_FAILED
        || c == NULL
        || !u->keepalive
        || !u->request_body_sent
        || conn->host.len > sizeof(item->host)
        || c->read->eof || c->read->error || c->read->timedout
        || c->write->error || c->write->timedout
        || ngx_terminate || ngx_exiting
        || (ngx_queue_empty(&ngx_http_vmx_keepalive_free)
            && ngx_queue_empty(&ngx_http_vmx_keepalive_cache)))
    {
        return;
    }

    mcf = ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_http_vmx_module);

    if (c->requests >= mcf->keepalive_requests
        || ngx_handle_read_event(c->read, 0) != NGX_OK)
    {
        return;
    }

    if (ngx_queue_empty(&ngx_http_vmx_keepalive_free)) {
        /* the least recently used connection makes room */
        q = ngx_queue_last(&ngx_http_vmx_keepalive_cache);
        ngx_queue_remove(q);

        item = ngx_queue_data(q, ngx_http_vmx_keepalive_item_t, queue);
        ngx_http_vmx_keepalive_close(item->connection);

    } else {
        q = ngx_queue_head(&ngx_http_vmx_keepalive_free);
        ngx_queue_remove(q);

        item = ngx_queue_data(q, ngx_http_vmx_keepalive_item_t, queue);
    }

    ngx_queue_insert_head(&ngx_http_vmx_keepalive_cache, q);

    item->connection = c;
    item->socklen = pc->socklen;
    ngx_memcpy(&item->sockaddr, pc->sockaddr, pc->socklen);
    ngx_memcpy(item->host, conn->host.data, conn->host.len);
    item->host_len = conn->host.len;
    item->https = conn->https;

    pc->connection = NULL;

    c->read->delayed = 0;
    ngx_add_timer(c->read, mcf->keepalive_timeout);

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    c->write->handler = ngx_http_vmx_keepalive_dummy_handler;
    c->read->handler = ngx_http_vmx_keepalive_close_handler;

    c->data = item;
    c->idle = 1;
    c->log = ngx_cycle->log;
    c->read->log = ngx_cycle->log;
    c->write->log = ngx_cycle->log;
    c->pool->log = ngx_cycle->log;

    if (c->read->ready) {
        ngx_http_vmx_keepalive_close_handler(c->read);
    }
}


/* an idle connection that becomes readable was closed or is broken */

static void
ngx_http_vmx_keepalive_close_handler(ngx_event_t *ev)
{
    int                             n;
    char                            buf[1];
    ngx_connection_t               *c;
    ngx_http_vmx_keepalive_item_t  *item;

    c = ev->data;

    if (!c->close && !c->read->timedout) {
        n = recv(c->fd, buf, 1, MSG_PEEK);

        if (n == -1 && ngx_socket_errno == NGX_EAGAIN) {
            ev->ready = 0;

            if (ngx_handle_read_event(c->read, 0) == NGX_OK) {
                return;
            }
        }
    }

    item = c->data;

    ngx_http_vmx_keepalive_close(c);

    ngx_queue_remove(&item->queue);
    ngx_queue_insert_head(&ngx_http_vmx_keepalive_free, &item->queue);
}


static void
ngx_http_vmx_keepalive_dummy_handler(ngx_event_t *ev)
{
    return;
}


static void
ngx_http_vmx_keepalive_close(ngx_connection_t *c)
{
#if (NGX_HTTP_SSL)

    if (c->ssl) {
        c->ssl->no_wait_shutdown = 1;
        c->ssl->no_send_shutdown = 1;

        if (ngx_ssl_shutdown(c) == NGX_AGAIN) {
            c->ssl->handler = ngx_http_vmx_keepalive_close;
            return;
        }
    }

#endif

    ngx_destroy_pool(c->pool);
    ngx_close_connection(c);
}
