/*
 * kms: AWS KMS data keys for envelope encryption (secrets.h), over the AWS
 * JSON 1.1 protocol (POST /, X-Amz-Target: TrentService.<operation>),
 * signed with SigV4 (lib/vmx_sigv4) from the control plane's base AWS
 * credentials (AWS_ACCESS_KEY_ID, ...).  Settings: VMX_KMS_KEY_ID (the KMS
 * key that makes data keys), VMX_KMS_REGION (else the key ARN's region),
 * VMX_KMS_ENDPOINT (else https://kms.<region>.amazonaws.com/).
 *
 * Every data key is bound to its connection by the EncryptionContext
 * {"connectionId": <id>}.  Decrypted data keys are cached in locked memory
 * (bounded, oldest out) so that reads do not call KMS each time.  A
 * failure is logged once per cause, and its end once.
 */

#ifndef CP_KMS_H
#define CP_KMS_H

#include <stddef.h>

#include "config.h"
#include "secrets.h"

#define KMS_DATA_KEY_BYTES   32
#define KMS_MAX_BLOB         1024       /* a CiphertextBlob is about 184 bytes */

/* keeps cfg's settings (cfg outlives kms); -1 with the reason logged */
int kms_init(const config_t *cfg);
void kms_shutdown(void);

/*
 * GenerateDataKey: the plain data key into key (the caller wipes it) and
 * its CiphertextBlob into blob (*blob_len bytes, at most KMS_MAX_BLOB);
 * -1 with *err (status 503)
 */
int kms_generate_data_key(const char *context_id, unsigned char *key,
    unsigned char *blob, size_t *blob_len, secrets_error_t *err);

/* Decrypt of a CiphertextBlob made for context_id (cached): -1 with *err */
int kms_decrypt_data_key(const unsigned char *blob, size_t blob_len,
    const char *context_id, unsigned char *key, secrets_error_t *err);

#endif
