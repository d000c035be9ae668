/*
 * keyring: the keys of the secrets (docs/ARCHITECTURE.md, "Secrets and the
 * keyring").
 *
 * Key material stays out of PostgreSQL: local keys are the files
 * VMX_MASTER_KEY_FILE and VMX_SECRET_KEYS_DIR/<name>.key (64 hex chars
 * each), held in sodium_malloc'd memory; the aws-kms key is VMX_KMS_KEY_ID,
 * whose material never leaves KMS.  Each control plane of a cluster holds
 * the same files.  The states (active, decrypt-only, retired) live in
 * PostgreSQL (encryption_keys), shared by the cluster: keyring_sync() takes
 * them in, and wipes the material of retired keys.
 *
 * Thread safe: readers (the API, the pusher, the re-encryption) and the
 * syncing thread share the ring under a read-write lock.
 */

#ifndef CP_KEYRING_H
#define CP_KEYRING_H

#include <stdbool.h>

#include "config.h"
#include "db.h"
#include "secrets.h"

#define KEYRING_KEY_BYTES  32

typedef enum {
    KEYRING_LOCAL,
    KEYRING_KMS
} keyring_provider_t;

/* loads the key files of cfg (which outlives the ring); -1 with the reason logged */
int keyring_load(const config_t *cfg);
void keyring_unload(void);

/* loads key files added to VMX_SECRET_KEYS_DIR since the last look */
void keyring_scan(void);

/* registers the first key as active when encryption_keys is empty (a new
 * deployment, or one from before the keyring); 0 or -1 */
int keyring_register_first(db_conn_t *c);

/* takes the states of encryption_keys in; 0 or -1 */
int keyring_sync(db_conn_t *c);

/*
 * the active key id, read in c's transaction (FOR SHARE: an activation
 * waits for the writer), into out[SECRETS_KEY_ID_LEN + 1]; -1 with *err
 */
int keyring_active(db_conn_t *c, char *out, secrets_error_t *err);

/*
 * how to use key_id: its provider, and for a local key its material copied
 * into key (the caller wipes it); -1 with *err when the key is not held
 * here or retired
 */
int keyring_lookup(const char *key_id, keyring_provider_t *provider,
    unsigned char *key, secrets_error_t *err);

/* key_id is a local key loaded here, and not retired */
bool keyring_holds_local(const char *key_id);

/* the id of the aws-kms key of VMX_KMS_KEY_ID into out, false when unset */
bool keyring_kms_id(char *out);

#endif
