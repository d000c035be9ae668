/*
 * VM-X gateway: the shared zones of the tables that requests update.
 *
 * The request statistics, the providers' health, the discovered capacity
 * and the prioritization pools each have a zone of their own, sized by its
 * directive, so that one concern's lock never waits on another's, nor on a
 * snapshot being copied (vmx_config_zone keeps only the snapshot).  A zone
 * holds one table of fixed-size slots, as many as its size allows (a power
 * of two), made when the zone is; each table's file says what happens when
 * it is full.  A full table is counted (vmx_zone_full_total) and logged
 * once, naming the directive that sizes it.
 */

#include "ngx_http_vmx_module.h"


static ngx_int_t ngx_http_vmx_table_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);


/* a table's zone, with its size or the default one */

ngx_int_t
ngx_http_vmx_table_add(ngx_conf_t *cf, ngx_http_vmx_table_zone_t *tz,
    const char *name, const char *directive, size_t size, size_t slot_size,
    ngx_uint_t extra)
{
    ngx_str_t  zone;

    ngx_conf_init_size_value(tz->size, size);

    tz->name = name;
    tz->directive = directive;
    tz->slot_size = slot_size;
    tz->extra = extra;

    zone.data = (u_char *) name;
    zone.len = ngx_strlen(name);

    tz->shm_zone = ngx_shared_memory_add(cf, &zone, tz->size,
                                         &ngx_http_vmx_module);
    if (tz->shm_zone == NULL) {
        return NGX_ERROR;
    }

    tz->shm_zone->init = ngx_http_vmx_table_init_zone;
    tz->shm_zone->data = tz;

    return NGX_OK;
}


/*
 * A reload with the same size keeps the table (and the counters in it);
 * else a new table of as many slots as fit, the slab allocator's own pages
 * and the table's header aside.
 */

static ngx_int_t
ngx_http_vmx_table_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_vmx_table_zone_t  *otz = data;

    size_t                      room, overhead, len;
    ngx_uint_t                  n;
    ngx_slab_pool_t            *shpool;
    ngx_http_vmx_table_t       *table;
    ngx_http_vmx_table_zone_t  *tz;

    tz = shm_zone->data;
    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;
    tz->shpool = shpool;

    if (otz) {
        tz->table = otz->table;
        return NGX_OK;
    }

    if (shm_zone->shm.exists) {
        tz->table = shpool->data;
        return NGX_OK;
    }

    /* the allocator's pages and headers */
    overhead = shm_zone->shm.size / 64 + 16 * ngx_pagesize;
    room = (shm_zone->shm.size > overhead) ? shm_zone->shm.size - overhead
                                           : 0;

    for (n = 1; (2 * n + tz->extra) * tz->slot_size <= room; n *= 2) {
        /* void */
    }

    if (n < 8) {
        ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                      "\"%s\" zone of %uz bytes is too small: its table "
                      "needs %uz bytes for 8 slots", tz->directive,
                      shm_zone->shm.size,
                      (8 + tz->extra) * tz->slot_size + overhead);
        return NGX_ERROR;
    }

    table = ngx_slab_calloc(shpool, sizeof(ngx_http_vmx_table_t));
    if (table == NULL) {
        return NGX_ERROR;
    }

    table->slots = ngx_slab_calloc(shpool, (n + tz->extra) * tz->slot_size);
    if (table->slots == NULL) {
        return NGX_ERROR;
    }

    table->nslots = n;
    shpool->data = table;
    tz->table = table;

    len = sizeof(" in vmx zone \"\"") + shm_zone->shm.name.len;

    shpool->log_ctx = ngx_slab_alloc(shpool, len);
    if (shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(shpool->log_ctx, " in vmx zone \"%V\"%Z", &shm_zone->shm.name);

    return NGX_OK;
}


/* a lookup found no slot: counted, and logged once per zone */

void
ngx_http_vmx_table_full(ngx_http_vmx_table_zone_t *tz, ngx_log_t *log,
    const char *then)
{
    ngx_http_vmx_table_t  *table;

    table = tz->table;

    (void) ngx_atomic_fetch_add(&table->full, 1);

    if (!ngx_atomic_cmp_set(&table->warned, 0, 1)) {
        return;
    }

    ngx_log_error(NGX_LOG_WARN, log, 0,
                  "vmx: the table of zone \"%s\" is full (%ui slots): %s; "
                  "a larger \"%s\" gives it more (counted in "
                  "vmx_zone_full_total)", tz->name, table->nslots, then,
                  tz->directive);
}
