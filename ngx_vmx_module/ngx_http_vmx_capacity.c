/*
 * VM-X gateway: discovered capacity.
 *
 * Providers announce their limits in answer headers.  The last values seen
 * per connection and model are kept in a table of their own zone
 * (vmx_capacity_zone), shared by the workers, and served at GET
 * /vmx/capacity for the control plane, which shows them on the connection.
 * They are the latest news, not counters: a full table takes over the
 * slot updated the longest ago.
 */

#include "ngx_http_vmx_module.h"


#define NGX_HTTP_VMX_CAPACITY_ZONE   (512 * 1024)   /* 2048 slots */
#define NGX_HTTP_VMX_CAPACITY_FRESH  10      /* seconds before a rewrite */


typedef struct {
    u_char                       connection_id[36];
    u_char                       model[128];
    size_t                       model_len;
    ngx_int_t                    requests;       /* -1: not announced */
    ngx_int_t                    tokens;
    time_t                       updated_at;     /* 0: free slot */
} ngx_http_vmx_capacity_t;


static ngx_http_vmx_capacity_t *ngx_http_vmx_capacity_slot(
    ngx_http_vmx_table_zone_t *tz, ngx_str_t *connection_id,
    ngx_str_t *model, ngx_log_t *log);


ngx_int_t
ngx_http_vmx_capacity_add_zone(ngx_conf_t *cf, ngx_http_vmx_main_conf_t *mcf)
{
    return ngx_http_vmx_table_add(cf, &mcf->capacity_zone, "vmx_capacity",
                                  "vmx_capacity_zone",
                                  NGX_HTTP_VMX_CAPACITY_ZONE,
                                  sizeof(ngx_http_vmx_capacity_t), 0);
}


void
ngx_http_vmx_capacity_record(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx)
{
    ngx_http_vmx_capacity_t   *slot;
    ngx_http_vmx_main_conf_t  *mcf;

    if (ctx->attempt.requests_limit < 0 && ctx->attempt.tokens_limit < 0) {
        return;
    }

    mcf = ngx_http_get_module_main_conf(r, ngx_http_vmx_module);

    if (mcf->capacity_zone.table == NULL
        || ctx->attempt.target->connection->id.len != 36
        || ctx->attempt.target->model.len > sizeof(slot->model))
    {
        return;
    }

    ngx_shmtx_lock(&mcf->capacity_zone.shpool->mutex);

    slot = ngx_http_vmx_capacity_slot(&mcf->capacity_zone,
                                      &ctx->attempt.target->connection->id,
                                      &ctx->attempt.target->model,
                                      r->connection->log);

    /* most answers repeat the same limits: write only what is news */
    if (slot->requests != ctx->attempt.requests_limit
        || slot->tokens != ctx->attempt.tokens_limit
        || ngx_time() - slot->updated_at >= NGX_HTTP_VMX_CAPACITY_FRESH)
    {
        ngx_memcpy(slot->connection_id,
                   ctx->attempt.target->connection->id.data, 36);
        ngx_memcpy(slot->model, ctx->attempt.target->model.data,
                   ctx->attempt.target->model.len);
        slot->model_len = ctx->attempt.target->model.len;
        slot->requests = ctx->attempt.requests_limit;
        slot->tokens = ctx->attempt.tokens_limit;
        slot->updated_at = ngx_time();
    }

    ngx_shmtx_unlock(&mcf->capacity_zone.shpool->mutex);
}


/*
 * The slot of a connection and model, or a free one; when the table is
 * full, the one updated the longest ago.  Under the zone's lock.
 */

static ngx_http_vmx_capacity_t *
ngx_http_vmx_capacity_slot(ngx_http_vmx_table_zone_t *tz,
    ngx_str_t *connection_id, ngx_str_t *model, ngx_log_t *log)
{
    ngx_uint_t                i, n, mask;
    ngx_http_vmx_capacity_t  *table, *slot, *oldest;

    table = tz->table->slots;
    mask = tz->table->nslots - 1;
    oldest = NULL;

    i = ngx_murmur_hash2(connection_id->data, connection_id->len)
        ^ ngx_murmur_hash2(model->data, model->len);

    for (n = 0; n <= mask; n++, i++) {
        slot = &table[i & mask];

        if (slot->updated_at == 0) {
            tz->table->used++;
            return slot;
        }

        if (slot->model_len == model->len
            && ngx_memcmp(slot->connection_id, connection_id->data, 36) == 0
            && ngx_memcmp(slot->model, model->data, model->len) == 0)
        {
            return slot;
        }

        if (oldest == NULL || slot->updated_at < oldest->updated_at) {
            oldest = slot;
        }
    }

    ngx_http_vmx_table_full(tz, log, "the entry updated the longest ago is "
                                     "replaced");

    oldest->requests = -2;      /* news whatever comes */

    return oldest;
}


ngx_int_t
ngx_http_vmx_capacity_report(ngx_http_request_t *r)
{
    u_char                    *p, *start;
    size_t                     len;
    ngx_tm_t                   tm;
    ngx_uint_t                 i, n, nslots;
    ngx_http_vmx_capacity_t   *table, *slot;
    ngx_http_vmx_main_conf_t  *mcf;

    static const char  item[] = "{\"connectionId\":\"\",\"model\":\"\","
                                "\"requests\":,\"tokens\":,"
                                "\"updatedAt\":\"1970-01-01T00:00:00Z\"},";

    mcf = ngx_http_get_module_main_conf(r, ngx_http_vmx_module);

    if (mcf->capacity_zone.table == NULL) {
        return ngx_http_vmx_send_json(r, NGX_HTTP_OK,
                                      (u_char *) "{\"entries\":[]}",
                                      sizeof("{\"entries\":[]}") - 1);
    }

    table = mcf->capacity_zone.table->slots;
    nslots = mcf->capacity_zone.table->nslots;

    ngx_shmtx_lock(&mcf->capacity_zone.shpool->mutex);

    for (n = 0, len = sizeof("{\"entries\":[]}"), i = 0; i < nslots; i++) {
        if (table[i].updated_at) {
            n++;
            len += sizeof(item) + 36 + 2 * NGX_INT_T_LEN
                   + vmx_json_escape(NULL, (char *) table[i].model,
                                     table[i].model_len);
        }
    }

    start = ngx_pnalloc(r->pool, len);
    if (start == NULL) {
        ngx_shmtx_unlock(&mcf->capacity_zone.shpool->mutex);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(start, "{\"entries\":[", sizeof("{\"entries\":[") - 1);

    for (i = 0; n && i < nslots; i++) {
        slot = &table[i];

        if (slot->updated_at == 0) {
            continue;
        }

        ngx_gmtime(slot->updated_at, &tm);

        p = ngx_sprintf(p, "{\"connectionId\":\"%*s\",\"model\":\"",
                        (size_t) 36, slot->connection_id);
        p += vmx_json_escape((char *) p, (char *) slot->model,
                             slot->model_len);
        p = ngx_sprintf(p, "\",\"requests\":");
        p = (slot->requests >= 0) ? ngx_sprintf(p, "%i", slot->requests)
                                  : ngx_cpymem(p, "null", 4);
        p = ngx_sprintf(p, ",\"tokens\":");
        p = (slot->tokens >= 0) ? ngx_sprintf(p, "%i", slot->tokens)
                                : ngx_cpymem(p, "null", 4);
        p = ngx_sprintf(p, ",\"updatedAt\":\"%4d-%02d-%02dT%02d:%02d:%02dZ\"},",
                        tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                        tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec);
    }

    ngx_shmtx_unlock(&mcf->capacity_zone.shpool->mutex);

    if (n) {
        p--;
    }

    p = ngx_cpymem(p, "]}", 2);

    return ngx_http_vmx_send_json(r, NGX_HTTP_OK, start, p - start);
}
