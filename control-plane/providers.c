/*
 * providers: the catalog (SPEC §3).
 */

#include <string.h>

#include "providers.h"

#define API_KEY_FIELD \
    { "apiKey", "string", true, true, "API key of the provider account" }
#define BASE_URL_FIELD \
    { "baseUrl", "url", false, false, \
      "send traffic to this compatible endpoint instead of the default" }

static const provider_t catalog[] = {
    { "openai", "OpenAI", "https://api.openai.com/v1",
      { API_KEY_FIELD, BASE_URL_FIELD },
      { "gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "o3-mini" } },

    { "anthropic", "Anthropic", "https://api.anthropic.com",
      { API_KEY_FIELD, BASE_URL_FIELD },
      { "claude-3-5-haiku-latest", "claude-3-7-sonnet-latest", "claude-sonnet-4-0",
        "claude-opus-4-0" } },

    { "gemini", "Google Gemini", "https://generativelanguage.googleapis.com/v1beta",
      { API_KEY_FIELD, BASE_URL_FIELD },
      { "gemini-2.0-flash", "gemini-2.5-flash", "gemini-2.5-pro" } },

    { "groq", "Groq", "https://api.groq.com/openai/v1",
      { API_KEY_FIELD, BASE_URL_FIELD },
      { "llama-3.1-8b-instant", "llama-3.3-70b-versatile" } },

    { "aws-bedrock", "AWS Bedrock", NULL,
      { { "region", "aws-region", true, false, "AWS region, e.g. us-east-1" },
        { "iamRoleArn", "string", true, false, "role the control plane assumes" },
        { "externalId", "string", false, false,
          "ExternalId of AssumeRole (default <workspaceId>:<environmentId>)" },
        { "endpoint", "url", false, false, "Bedrock runtime endpoint override" } },
      { "anthropic.claude-3-5-haiku-20241022-v1:0", "amazon.nova-lite-v1:0",
        "meta.llama3-1-8b-instruct-v1:0" } },
};


const provider_t *
provider_find(const char *id)
{
    /* the original product's spelling of gemini (SPEC §1) */
    if (strcmp(id, "google") == 0) {
        id = "gemini";
    }
    for (size_t i = 0; i < sizeof(catalog) / sizeof(catalog[0]); i++) {
        if (strcmp(catalog[i].id, id) == 0) {
            return &catalog[i];
        }
    }
    return NULL;
}


const provider_field_t *
provider_field(const provider_t *p, const char *name)
{
    for (int i = 0; i < PROVIDER_MAX_FIELDS && p->fields[i].name != NULL; i++) {
        if (strcmp(p->fields[i].name, name) == 0) {
            return &p->fields[i];
        }
    }
    return NULL;
}


static cJSON *
provider_json(const provider_t *p)
{
    cJSON *obj = cJSON_CreateObject();
    cJSON *fields = cJSON_AddArrayToObject(obj, "configFields");
    cJSON *models;

    cJSON_AddStringToObject(obj, "id", p->id);
    cJSON_AddStringToObject(obj, "name", p->name);
    if (p->default_base_url != NULL) {
        cJSON_AddStringToObject(obj, "defaultBaseUrl", p->default_base_url);
    } else {
        cJSON_AddNullToObject(obj, "defaultBaseUrl");
    }
    for (int i = 0; i < PROVIDER_MAX_FIELDS && p->fields[i].name != NULL; i++) {
        const provider_field_t *f = &p->fields[i];
        cJSON                  *fj = cJSON_CreateObject();

        cJSON_AddStringToObject(fj, "name", f->name);
        cJSON_AddStringToObject(fj, "type", f->type);
        cJSON_AddBoolToObject(fj, "required", f->required);
        cJSON_AddBoolToObject(fj, "secret", f->secret);
        cJSON_AddStringToObject(fj, "description", f->description);
        cJSON_AddItemToArray(fields, fj);
    }
    models = cJSON_AddArrayToObject(obj, "defaultModels");
    for (int i = 0; i < PROVIDER_MAX_MODELS && p->default_models[i] != NULL; i++) {
        cJSON_AddItemToArray(models, cJSON_CreateString(p->default_models[i]));
    }
    return obj;
}


cJSON *
providers_catalog_json(void)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *data = cJSON_AddArrayToObject(root, "data");
    size_t n = sizeof(catalog) / sizeof(catalog[0]);

    for (size_t i = 0; i < n; i++) {
        cJSON_AddItemToArray(data, provider_json(&catalog[i]));
    }
    cJSON_AddNumberToObject(root, "total", (double) n);
    cJSON_AddNumberToObject(root, "pageIndex", 0);
    cJSON_AddNumberToObject(root, "pageSize", (double) n);
    return root;
}
