/*
 * What a Vault auth method (auth_*.c) sees of the "vault" backend: the
 * table each method fills in, the request function (vault_client.c) that
 * adds the Vault headers and maps the status and the {"errors": [...]}
 * body to an SFS_ code and a message, and the helpers of vault_auth.c.
 */
#ifndef SECRETFS_VAULT_H
#define SECRETFS_VAULT_H

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>

#include "secretfs/backend.h"
#include "secretfs/diag.h"

struct vault;

/* A successful login. The token is in guarded memory; the caller frees
 * it with secmem_free(token). */
struct vault_login {
	char *token;
	uint64_t ttl_ms; /* 0: does not expire */
	bool renewable;
};

struct vault_auth_ops {
	const char *method;
	const char *default_mount;
	/* Keys of the auth object besides "method" and "mount". */
	const char *const *keys;
	/* Validates the method's keys (types; required ones). */
	int (*check)(const json_t *auth, const char *keypath, struct diag *d);
	/* Logs in; conf is the auth object. Returns 0 or SFS_ code. */
	int (*login)(struct vault *v, const json_t *conf, struct vault_login *out,
	             struct backend_error *err);
	/* Optional: called once when the backend is created, before any
	 * login (the token method takes its token from the environment).
	 * Returns 0 or an SFS_ code, which fails the backend's start. */
	int (*start)(struct vault *v, const json_t *conf, const struct backend_env *env);
	/* Optional: releases what start kept (vault_auth_state). */
	void (*stop)(struct vault *v);
	/* True when a new token can be had by logging in again. */
	bool can_relogin;
	/* True when the login is proven by the TLS client certificate. */
	bool needs_client_cert;
};

/* State an auth method keeps between logins (set by its start). */
void *vault_auth_state(struct vault *v);
void vault_set_auth_state(struct vault *v, void *state);
/* The backend's name, for messages. */
const char *vault_name(const struct vault *v);

/* The auth method by name, or NULL. */
const struct vault_auth_ops *vault_auth_find(const char *method);

/* Checks a backend's "auth" object (at keypath): a registered method, only
 * its keys, a bounded mount, and the method's own check. Returns 0 or
 * SFS_EINVAL with d filled. */
int vault_auth_check(const json_t *auth, const char *keypath, struct diag *d);

/* True when auth (a checked "auth" object) names a method that logs in
 * with the TLS client certificate. */
bool vault_auth_needs_client_cert(const json_t *auth);

/* Longer TTLs and lease durations count as this (ten years: "for ever"
 * here, and never overflowing a count of ms). */
#define VAULT_MAX_TTL_S (10ll * 365 * 24 * 3600)

/*
 * A reply's duration in seconds (lease_duration, ttl) as ms into *ms: 0
 * when absent or not an integer, capped at VAULT_MAX_TTL_S. Returns 0, or
 * SFS_EPARSE for a negative one (*ms untouched).
 */
int vault_duration_ms(const json_t *seconds, uint64_t *ms);

/* Bytes of an auth mount path; longer ones are refused by the config
 * check. */
#define VAULT_MAX_MOUNT_LEN 256

/*
 * Calls the Vault API: method on /v1/<path>[?query], with body (may be
 * NULL) as JSON. With_token adds X-Vault-Token (token may override the
 * backend's current one, e.g. a wrapping token). On success *out is the
 * parsed reply (NULL for 204). Maps failures: 403 SFS_EDENIED, 404
 * SFS_ENOTFOUND (*out still set when the body is JSON: KV v2 deleted
 * versions carry metadata), 400 SFS_EBACKEND, 412/429/5xx and transport
 * errors SFS_ETRANSIENT, malformed JSON SFS_EPARSE. err names the method,
 * path and status, and Vault's error messages; never a token.
 */
int vault_call(struct vault *v, const char *method, const char *path, const char *query,
               const json_t *body, bool with_token, const char *token, json_t **out,
               struct backend_error *err);

/* The auth mount path to log in at: conf "mount" or the method's default. */
const char *vault_auth_mount(const json_t *conf, const struct vault_auth_ops *ops);

/*
 * The environment variable BAO_<suffix>, else VAULT_<suffix> ("ADDR",
 * "TOKEN", ...), when non-empty; else NULL. OpenBao's own client prefers
 * the BAO_ name when both are set, and so does secretfs.
 */
const char *vault_env(const char *suffix);

/* Wipes the values of BAO_<suffix> and VAULT_<suffix> and removes them
 * from the environment: /proc/<pid>/environ must not show a secret. */
void vault_env_wipe(const char *suffix);

/* A sealed slot an auth method may keep material in between logins (the
 * AppRole secret ID after unwrapping). stash replaces it; unstash returns
 * a guarded copy (free with secmem_free(*out)) or SFS_ENOTFOUND. */
int vault_stash(struct vault *v, const char *data, size_t len);
int vault_unstash(struct vault *v, char **out);

/* Logs in by POSTing body to auth/<mount>/login (the mount of conf, or
 * the method's default) and parses the answer into out. */
int vault_login_at(struct vault *v, const json_t *conf, const struct vault_auth_ops *ops,
                   const json_t *body, struct vault_login *out,
                   struct backend_error *err);

/* Logs in at auth/<mount>/login with {"role", "jwt"}, the JWT read from
 * conf "jwt_file" (else default_file) at every call. */
int vault_login_role_jwt(struct vault *v, const json_t *conf,
                         const struct vault_auth_ops *ops, const char *default_file,
                         struct vault_login *out, struct backend_error *err);

/* Fills out from a login reply's "auth" object. */
int vault_login_from_reply(const json_t *reply, struct vault_login *out,
                           struct backend_error *err);

#endif
