/*
 * reencrypt: moves every connection secret to the active key, in the
 * background (docs/ARCHITECTURE.md, "Secrets and the keyring").
 *
 * One thread, every reconcile interval or when woken: it takes in new key
 * files and the ring's states (keyring_sync()), then, on the leading
 * replica (leader.h), re-encrypts the connections that hold a secret under
 * another key, VMX_REENCRYPT_BATCH connections per transaction (FOR UPDATE
 * SKIP LOCKED: two leaders for a moment share the work),
 * VMX_REENCRYPT_PAUSE_MS between transactions.
 * Every batch is committed on its own, so a restart goes on from where the
 * last one left.  The plain text does not change, so these transactions
 * bump no config version (vmx.reencrypt, schema 0011).
 */

#ifndef CP_REENCRYPT_H
#define CP_REENCRYPT_H

#include "config.h"

int reencrypt_start(const config_t *cfg);
void reencrypt_stop(void);

/* the ring changed: look again now */
void reencrypt_notify(void);

#endif
