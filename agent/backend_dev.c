/*
 * The "dev" backend (development): makes up a credential pair
 *   {"username": "<prefix><path>-<n>", "password": <24 random characters>}
 * for each path, with a non-renewable lease of the configured ttl, like a
 * database secrets engine would. The scheduler replaces each pair before
 * its lease ends and "revokes" the old one, so an application's rotation
 * handling can be exercised on a laptop.
 */
#include <ctype.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "secretfs/backend.h"
#include "secretfs/duration.h"
#include "secretfs/error.h"
#include "secretfs/log.h"
#include "secretfs/secmem.h"

/* Registered in backend.c. */
extern const struct backend_ops backend_dev_ops;

#define DEV_DEFAULT_TTL_MS (30 * 1000)
#define DEV_DEFAULT_GRACE_MS (5 * 1000)
#define DEV_PASSWORD_LEN 24

struct dev_backend {
	struct backend base;
	uint64_t ttl_ms;
	char prefix[64];
	unsigned long counter;
};

static int dev_check_duration(const json_t *v, const char *kp, uint64_t min_ms,
                              struct diag *d)
{
	uint64_t ms;

	if (duration_parse(v, &ms) < 0) {
		diag_add(d, kp,
		         "must be a duration such as \"30s\" or a number of seconds");
		return SFS_EINVAL;
	}
	if (ms < min_ms) {
		diag_add(d, kp, "must be at least %llu ms", (unsigned long long)min_ms);
		return SFS_EINVAL;
	}
	return 0;
}

static int dev_check(const json_t *conf, const char *keypath, struct diag *d)
{
	const char *key;
	json_t *v;
	char kp[512];
	int ok = 0;

	json_object_foreach((json_t *)conf, key, v)
	{
		diag_keypath(kp, sizeof kp, keypath, key);
		if (strcmp(key, "type") == 0)
			continue;
		if (strcmp(key, "ttl") == 0) {
			if (dev_check_duration(v, kp, 1000, d) < 0)
				ok = SFS_EINVAL;
		} else if (strcmp(key, "revoke_grace") == 0) {
			if (dev_check_duration(v, kp, 0, d) < 0)
				ok = SFS_EINVAL;
		} else if (strcmp(key, "username_prefix") == 0) {
			if (!json_is_string(v) || json_string_length(v) > 32) {
				diag_add(d, kp,
				         "must be a string of at most 32 characters");
				ok = SFS_EINVAL;
			}
		} else {
			diag_add(d, kp,
			         "unknown key \"%s\" (dev backends take: type, ttl, "
			         "revoke_grace, username_prefix)",
			         key);
			ok = SFS_EINVAL;
		}
	}
	return ok;
}

static void dev_free(struct backend *be)
{
	if (!be)
		return;
	free(be->name);
	free(be);
}

static int dev_create(const struct backend_env *env, const char *name, const json_t *conf,
                      struct backend **out)
{
	struct dev_backend *db = calloc(1, sizeof *db);
	const json_t *v;

	if (!db)
		return SFS_ENOMEM;
	db->base.ops = &backend_dev_ops;
	db->base.name = strdup(name);
	if (!db->base.name) {
		free(db);
		return SFS_ENOMEM;
	}
	db->ttl_ms = DEV_DEFAULT_TTL_MS;
	db->base.revoke_grace_ms = DEV_DEFAULT_GRACE_MS;
	if ((v = json_object_get(conf, "ttl")))
		duration_parse(v, &db->ttl_ms);
	if ((v = json_object_get(conf, "revoke_grace")))
		duration_parse(v, &db->base.revoke_grace_ms);
	snprintf(db->prefix, sizeof db->prefix, "%s",
	         (v = json_object_get(conf, "username_prefix")) ? json_string_value(v)
	                                                        : "dev-");
	*out = &db->base;
	return 0;
}

static int dev_fetch(struct backend *be, const struct source_key *key,
                     struct fetch_result *out, struct backend_error *err)
{
	static const char alphabet[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
	struct dev_backend *db = (struct dev_backend *)be;
	char user[160], *pw;
	size_t n = 0;
	json_t *obj;

	pw = secmem_alloc(DEV_PASSWORD_LEN + 1);
	if (!pw)
		return SFS_ENOMEM;
	for (size_t i = 0; i < DEV_PASSWORD_LEN; i++)
		pw[i] = alphabet[randombytes_uniform(sizeof alphabet - 1)];

	db->counter++;
	n = (size_t)snprintf(user, sizeof user, "%s", db->prefix);
	for (const char *p = key->path; *p && n < 100; p++)
		user[n++] = isalnum((unsigned char)*p) ? *p : '-';
	snprintf(user + n, sizeof user - n, "-%lu", db->counter);

	obj = json_pack("{s:s, s:s}", "username", user, "password", pw);
	secmem_free(pw);
	if (!obj) {
		backend_error_set(err, "out of memory");
		return SFS_ENOMEM;
	}
	memset(out, 0, sizeof *out);
	out->value = obj;
	snprintf(out->lease_id, sizeof out->lease_id, "dev/%s/%s/%lu", be->name,
	         key->path, db->counter);
	snprintf(out->version, sizeof out->version, "%lu", db->counter);
	out->lease_ms = db->ttl_ms;
	out->renewable = false;
	return 0;
}

static int dev_revoke(struct backend *be, const char *lease_id, struct backend_error *err)
{
	return 0;
}

static const char *const dev_secret_keys[] = {NULL};

const struct backend_ops backend_dev_ops = {
    .type = "dev",
    .secret_keys = dev_secret_keys,
    .default_refresh_ms = 60 * 1000,
    .check = dev_check,
    .create = dev_create,
    .free = dev_free,
    .fetch = dev_fetch,
    .revoke = dev_revoke,
};
