/*
 * The state of one "vault" backend, shared by the files that make it up:
 * backend_vault.c (the backend table), vault_client.c (HTTP), vault_token.c
 * (the auth token), vault_kv.c (KV mounts, reads and probes) and
 * vault_auth.c (the auth methods' registry and helpers). The auth methods
 * themselves see only vault.h.
 */
#ifndef SECRETFS_VAULT_BACKEND_H
#define SECRETFS_VAULT_BACKEND_H

#include <jansson.h>

#include "credcache.h"
#include "secretfs/backend.h"
#include "vault.h"
#include "vault_client.h"
#include "vault_kv.h"
#include "vault_token.h"

struct vault {
	struct backend base;
	struct vault_client client;

	const struct vault_auth_ops *auth;
	json_t *auth_conf;
	struct vault_token token;
	struct credcache_slot stash; /* auth method material */
	void *auth_state;            /* the auth method's own (vault_auth_state) */
	struct vault_kv kv;
};

/*
 * Parses the reply of a read that is not KV v2 (backend_vault.c): data
 * (an object) into out->value, and lease_id, lease_duration and renewable
 * into the lease, made under auth generation gen; a lease_id with a zero
 * duration is no lease. On success the caller releases out. Returns 0 or
 * SFS_EPARSE (no data object; a lease_id that does not fit or holds a
 * NUL; a negative duration) with err naming path.
 */
int vault_lease_from_reply(const json_t *reply, const char *path, uint64_t gen,
                           struct fetch_result *out, struct backend_error *err);

/* Parses a sys/leases/renew reply: its lease_duration into *lease_ms.
 * Returns 0, SFS_EEXPIRED (not renewable and 0 s left: the lease ends) or
 * SFS_EPARSE (negative duration). */
int vault_renewal_from_reply(const json_t *reply, uint64_t *lease_ms,
                             struct backend_error *err);

/*
 * The id of the certificate with serial that a write to path issued, for
 * revoke_on_replace: "<mount>/cert/<serial>", the mount being path before
 * "/issue/<role>", "/sign/<role>" or "/sign-verbatim" (and before
 * "/issuer/<ref>"), into out (len bytes). Returns 0, SFS_EINVAL (no serial,
 * one with '/' or a newline, or no such part in path; out is "") or
 * SFS_ETOOBIG.
 */
int vault_pki_revoke_id(const char *path, const char *serial, char *out, size_t len);

#endif
