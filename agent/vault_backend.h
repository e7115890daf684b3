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
	struct vault_kv kv;
};

#endif
