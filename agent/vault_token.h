/*
 * The Vault backend's auth token (vault_token.c): logging in with the
 * configured auth method, renewing the token, logging in again before it
 * ends or once it is refused, and the end of each past token, which is
 * when the leases made under it end.
 */
#ifndef SECRETFS_VAULT_TOKEN_H
#define SECRETFS_VAULT_TOKEN_H

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>

#include "credcache.h"
#include "secretfs/backend.h"
#include "secretfs/store.h"

struct vault;

#define VAULT_GENERATIONS 32 /* past logins whose end is remembered */

struct vault_generation {
	uint64_t gen;
	uint64_t expires; /* when that token, and its leases, end */
};

struct vault_token {
	/* The token, sealed; empty until the first login. Its refresh lock
	 * is held for a whole login, so concurrent requests log in once; its
	 * lock guards the fields below; its backoff counts failed logins and
	 * renewals. */
	struct credcache cache;
	uint64_t ttl_ms; /* as granted at login */
	bool renewable;
	uint64_t expires; /* monotonic ms; UINT64_MAX: never */
	uint64_t issued;  /* monotonic ms of the login */
	uint64_t due;     /* next renewal or login */
	bool relogin;     /* due is a login, not a renewal */
	struct vault_generation past[VAULT_GENERATIONS];
	size_t npast;
};

/* Sets up an empty token (no login yet) of the backend called backend,
 * sealed in st. Returns 0 or SFS_ENOMEM; t is released either way. */
int vault_token_init(struct vault_token *t, struct store *st, const char *backend);

/* Wipes the token. */
void vault_token_release(struct vault_token *t);

/* The backend's maintain(): logs in or renews when due. Returns when it
 * is due next (monotonic ms). */
uint64_t vault_token_maintain(struct vault *v, uint64_t now);

/* The backend's lease_deadline(): leases made under generation gen end
 * when that token ends, once it has been replaced; else UINT64_MAX. */
uint64_t vault_token_lease_deadline(struct vault *v, uint64_t gen);

/* The generation of the current token (0: none yet). */
uint64_t vault_token_seen(struct vault *v);

/* A guarded copy of the current token (free with secmem_free(*out)).
 * Returns 0, SFS_ENOTFOUND (not logged in), SFS_ECRYPTO or SFS_ENOMEM. */
int vault_token_get(struct vault *v, char **out);

/*
 * vault_call with the current token: logs in first when there is none
 * yet, and when the request is refused because the token itself is no
 * longer valid, logs in again and retries once.
 */
int vault_call_authed(struct vault *v, const char *method, const char *path,
                      const char *query, const json_t *body, json_t **out,
                      struct backend_error *err);

#endif
