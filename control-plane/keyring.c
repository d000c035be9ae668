/*
 * keyring: key files, their ids, and the states PostgreSQL gives them.
 *
 * A key id is the first 8 hex characters of BLAKE2b(key) for a local key
 * (as the single master key had before the ring) and of
 * BLAKE2b("aws-kms:" VMX_KMS_KEY_ID) for the KMS key.  A retired key keeps
 * its entry without material, so that a file left in the directory is not
 * loaded again.
 */

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sodium.h>

#include "crypto.h"
#include "keyring.h"
#include "log.h"

#define KEY_SUFFIX     ".key"
#define MAX_KEY_FILES  256            /* files of the directory read at most */

typedef struct ring_key_s {
    struct ring_key_s  *next;
    char                id[SECRETS_KEY_ID_LEN + 1];
    keyring_provider_t  provider;
    unsigned char      *material;     /* sodium_malloc'd, read-only; NULL: kms or retired */
    bool                retired;
} ring_key_t;

static struct {
    pthread_rwlock_t  lock;
    ring_key_t       *keys;           /* owned list */
    const char       *master_file;    /* from the config, may be NULL */
    const char       *dir;            /* may be NULL */
    const char       *kms_key;        /* may be NULL */
    char              first[SECRETS_KEY_ID_LEN + 1];   /* registered on a new deployment */
    char              kms_id[SECRETS_KEY_ID_LEN + 1];  /* of kms_key, "" when unset */
    pthread_mutex_t   scan_lock;      /* one scan at a time: the API's and the thread's */
    struct timespec   dir_mtime;      /* of the last successful scan */
} ring = { .lock = PTHREAD_RWLOCK_INITIALIZER, .scan_lock = PTHREAD_MUTEX_INITIALIZER };


static void
key_id_of(const void *data, size_t len, char *out)
{
    unsigned char digest[32];
    char          hex[65];

    crypto_generichash(digest, sizeof(digest), data, len, NULL, 0);
    sodium_bin2hex(hex, sizeof(hex), digest, sizeof(digest));
    memcpy(out, hex, SECRETS_KEY_ID_LEN);
    out[SECRETS_KEY_ID_LEN] = '\0';
}


/* under the lock */
static ring_key_t *
find_key(const char *id)
{
    for (ring_key_t *k = ring.keys; k != NULL; k = k->next) {
        if (strcmp(k->id, id) == 0) {
            return k;
        }
    }
    return NULL;
}


/* a new entry at the head of the list, under the write lock; NULL on ENOMEM */
static ring_key_t *
add_key(const char *id, keyring_provider_t provider)
{
    ring_key_t *k = calloc(1, sizeof(*k));

    if (k != NULL) {
        snprintf(k->id, sizeof(k->id), "%s", id);
        k->provider = provider;
        k->next = ring.keys;
        ring.keys = k;
    }
    return k;
}


/* loads a key file (what names it in logs); its id into id_out; 0 or -1 */
static int
load_file(const char *path, const char *what, char *id_out)
{
    char          *hex = config_read_secret_file(path, what);
    unsigned char *key;
    size_t         len = 0;
    int            rc;
    ring_key_t    *k;

    if (hex == NULL) {
        return -1;
    }
    key = sodium_malloc(KEYRING_KEY_BYTES);
    if (key == NULL) {
        sodium_memzero(hex, strlen(hex));
        free(hex);
        return -1;
    }
    rc = sodium_hex2bin(key, KEYRING_KEY_BYTES, hex, strlen(hex), NULL, &len, NULL);
    sodium_memzero(hex, strlen(hex));
    free(hex);
    if (rc != 0 || len != KEYRING_KEY_BYTES) {
        log_error("config %s: the key must be 64 hex characters", what);
        sodium_free(key);
        return -1;
    }
    key_id_of(key, KEYRING_KEY_BYTES, id_out);
    sodium_mprotect_readonly(key);

    pthread_rwlock_wrlock(&ring.lock);
    k = find_key(id_out);
    if (k == NULL && (k = add_key(id_out, KEYRING_LOCAL)) != NULL) {
        k->material = key;
        key = NULL;
        log_info("keyring: key loaded key_id=%s from %s", id_out, what);
    }
    pthread_rwlock_unlock(&ring.lock);
    sodium_free(key);            /* a key already held (or retired), or ENOMEM */
    return k != NULL ? 0 : -1;
}


static int
compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *) a, *(char *const *) b);
}


/* loads every <name>.key of the directory, in name order; the first one's
 * id into first (when not NULL); -1 when one cannot be loaded */
static int
scan_dir(char *first)
{
    DIR           *d = opendir(ring.dir);
    struct dirent *e;
    char          *names[MAX_KEY_FILES];
    size_t         n = 0;
    int            rc = 0;

    if (d == NULL) {
        log_error("config VMX_SECRET_KEYS_DIR: cannot open %s: %s", ring.dir, strerror(errno));
        return -1;
    }
    while ((e = readdir(d)) != NULL && n < MAX_KEY_FILES) {
        size_t len = strlen(e->d_name);

        if (e->d_name[0] != '.' && len > sizeof(KEY_SUFFIX) - 1
            && strcmp(e->d_name + len - (sizeof(KEY_SUFFIX) - 1), KEY_SUFFIX) == 0
            && (names[n] = strdup(e->d_name)) != NULL)
        {
            n++;
        }
    }
    closedir(d);
    qsort(names, n, sizeof(char *), compare_names);
    for (size_t i = 0; i < n; i++) {
        char path[4096], what[512], id[SECRETS_KEY_ID_LEN + 1];

        snprintf(path, sizeof(path), "%s/%s", ring.dir, names[i]);
        snprintf(what, sizeof(what), "VMX_SECRET_KEYS_DIR file %.255s", names[i]);
        if (load_file(path, what, id) != 0) {
            rc = -1;
        } else if (first != NULL && first[0] == '\0') {
            memcpy(first, id, sizeof(id));
        }
        free(names[i]);
    }
    return rc;
}


/*
 * scans the directory when it changed since the last scan (a file added or
 * removed), or the last scan failed (a file may have been caught half
 * written: it is tried, and logged, again); 0 or -1
 */
static int
scan(char *first)
{
    struct stat st;
    int         rc = 0;

    pthread_mutex_lock(&ring.scan_lock);
    if (stat(ring.dir, &st) != 0
        || st.st_mtim.tv_sec != ring.dir_mtime.tv_sec
        || st.st_mtim.tv_nsec != ring.dir_mtime.tv_nsec)
    {
        rc = scan_dir(first);
        ring.dir_mtime = rc == 0 ? st.st_mtim : (struct timespec) { 0, 0 };
    }
    pthread_mutex_unlock(&ring.scan_lock);
    return rc;
}


int
keyring_load(const config_t *cfg)
{
    ring.master_file = cfg->master_key_file;
    ring.dir = cfg->secret_keys_dir;
    ring.kms_key = cfg->kms_key_id;
    ring.first[0] = '\0';

    if (ring.master_file != NULL
        && load_file(ring.master_file, "VMX_MASTER_KEY_FILE", ring.first) != 0)
    {
        return -1;
    }
    if (ring.dir != NULL && scan(ring.first) != 0) {
        return -1;
    }
    if (ring.kms_key != NULL) {
        char *text;

        if (asprintf(&text, "aws-kms:%s", ring.kms_key) < 0) {
            return -1;
        }
        key_id_of(text, strlen(text), ring.kms_id);
        free(text);
        if (add_key(ring.kms_id, KEYRING_KMS) == NULL) {
            return -1;
        }
        log_info("keyring: aws-kms key %s has key_id=%s", ring.kms_key, ring.kms_id);
    }
    if (ring.first[0] == '\0') {
        log_error("config: no secrets key: set VMX_MASTER_KEY_FILE or put a <name>.key"
                  " file in VMX_SECRET_KEYS_DIR");
        return -1;
    }
    return 0;
}


void
keyring_unload(void)
{
    pthread_rwlock_wrlock(&ring.lock);
    while (ring.keys != NULL) {
        ring_key_t *k = ring.keys;

        ring.keys = k->next;
        sodium_free(k->material);
        free(k);
    }
    pthread_rwlock_unlock(&ring.lock);
}


void
keyring_scan(void)
{
    if (ring.dir != NULL) {
        (void) scan(NULL);
    }
}


int
keyring_register_first(db_conn_t *c)
{
    char        uuid[UUID_LEN + 1];
    const char *params[2] = { uuid, ring.first };
    PGresult   *res;

    crypto_uuid_v4(uuid);
    res = db_exec(c, "INSERT INTO encryption_keys (id, key_id, provider, state)"
                     " SELECT $1, $2, 'local', 'active'"
                     " WHERE NOT EXISTS (SELECT 1 FROM encryption_keys)"
                     " ON CONFLICT DO NOTHING", 2, params);
    if (res == NULL) {
        log_error("keyring: cannot register the first key key_id=%s", ring.first);
        return -1;
    }
    if (strcmp(PQcmdTuples(res), "1") == 0) {
        log_info("keyring: key_id=%s registered as the active key", ring.first);
    }
    PQclear(res);
    return 0;
}


int
keyring_sync(db_conn_t *c)
{
    PGresult *res = db_exec(c, "SELECT key_id, provider, state FROM encryption_keys", 0, NULL);

    if (res == NULL) {
        return -1;
    }
    pthread_rwlock_wrlock(&ring.lock);
    for (int i = 0; i < PQntuples(res); i++) {
        const char *id = PQgetvalue(res, i, 0);
        bool        kms = strcmp(PQgetvalue(res, i, 1), "aws-kms") == 0;
        ring_key_t *k = find_key(id);

        /* a KMS blob names its key itself: any aws-kms key of the ring decrypts */
        if (k == NULL && kms) {
            k = add_key(id, KEYRING_KMS);
        }
        if (k != NULL && !k->retired && strcmp(PQgetvalue(res, i, 2), "retired") == 0) {
            sodium_free(k->material);
            k->material = NULL;
            k->retired = true;
            log_info("keyring: key_id=%s retired, its material wiped", id);
        }
    }
    pthread_rwlock_unlock(&ring.lock);
    PQclear(res);
    return 0;
}


int
keyring_active(db_conn_t *c, char *out, secrets_error_t *err)
{
    PGresult *res = db_exec(c, "SELECT key_id FROM encryption_keys WHERE state = 'active'"
                               " FOR SHARE", 0, NULL);
    int       rc = -1;

    if (res == NULL) {
        secrets_set_error(err, 503, "the encryption keys cannot be read");
    } else if (PQntuples(res) != 1) {
        secrets_set_error(err, 503, "no encryption key is active");
    } else {
        snprintf(out, SECRETS_KEY_ID_LEN + 1, "%s", PQgetvalue(res, 0, 0));
        rc = 0;
    }
    PQclear(res);
    return rc;
}


int
keyring_lookup(const char *key_id, keyring_provider_t *provider, unsigned char *key,
    secrets_error_t *err)
{
    ring_key_t *k;
    int         rc = -1;

    pthread_rwlock_rdlock(&ring.lock);
    k = find_key(key_id);
    if (k == NULL) {
        secrets_set_error(err, 503, "the encryption key %.8s is not held by this control"
                          " plane (no such file in VMX_SECRET_KEYS_DIR)", key_id);
    } else if (k->retired) {
        secrets_set_error(err, 503, "the encryption key %.8s is retired", key_id);
    } else {
        *provider = k->provider;
        if (k->provider == KEYRING_LOCAL) {
            memcpy(key, k->material, KEYRING_KEY_BYTES);
        }
        rc = 0;
    }
    pthread_rwlock_unlock(&ring.lock);
    return rc;
}


bool
keyring_holds_local(const char *key_id)
{
    ring_key_t *k;
    bool        held;

    pthread_rwlock_rdlock(&ring.lock);
    k = find_key(key_id);
    held = k != NULL && k->provider == KEYRING_LOCAL && !k->retired;
    pthread_rwlock_unlock(&ring.lock);
    return held;
}


bool
keyring_kms_id(char *out)
{
    memcpy(out, ring.kms_id, sizeof(ring.kms_id));
    return ring.kms_id[0] != '\0';
}
