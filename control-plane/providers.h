/*
 * providers: the built-in catalog of provider ids, their config fields
 * (which are required, which are secret) and default models.  Validation,
 * the snapshot and GET /api/v1/providers all read this one table.
 */

#ifndef CP_PROVIDERS_H
#define CP_PROVIDERS_H

#include <stdbool.h>

#include <cjson/cJSON.h>

#define PROVIDER_MAX_FIELDS  4
#define PROVIDER_MAX_MODELS  8

typedef struct {
    const char  *name;
    const char  *type;
    bool         required;
    bool         secret;
    const char  *description;
} provider_field_t;

typedef struct {
    const char        *id;
    const char        *name;
    const char        *default_base_url;     /* NULL: derived from the region */
    provider_field_t   fields[PROVIDER_MAX_FIELDS];
    const char        *default_models[PROVIDER_MAX_MODELS];
} provider_t;

/* NULL when id is not a provider id nor an alias of one ("google") */
const provider_t *provider_find(const char *id);

/* the field named name of p, NULL when none */
const provider_field_t *provider_field(const provider_t *p, const char *name);

/* the whole catalog as the JSON of GET /api/v1/providers (caller deletes) */
cJSON *providers_catalog_json(void);

#endif
