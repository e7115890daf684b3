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
#define DEV_MAX_PREFIX 32

struct dev_backend {
	struct backend base;
	uint64_t ttl_ms;
	char prefix[DEV_MAX_PREFIX + 1];
	unsigned long counter;
};

/* The backend's config object, parsed (strings borrowed from it). */
struct dev_conf {
	uint64_t ttl_ms;
	uint64_t revoke_grace_ms;
	const char *username_prefix;
};

static const struct backend_conf_key dev_conf_keys[] = {
    BACKEND_CONF_TYPE_KEY,
    BACKEND_CONF_DURATION_KEY(struct dev_conf, ttl_ms, "ttl", .min = 1000),
    BACKEND_CONF_DURATION_KEY(struct dev_conf, revoke_grace_ms, "revoke_grace"),
    BACKEND_CONF_TEXT_KEY(struct dev_conf, username_prefix, "username_prefix",
                          .max = DEV_MAX_PREFIX),
};
static const struct backend_conf_spec dev_conf_spec =
    BACKEND_CONF_SPEC("dev backends take", dev_conf_keys);

/* The config with its defaults; d may be NULL. Returns 0 or SFS_EINVAL. */
static int dev_conf_parse(const json_t *conf, const char *keypath, struct diag *d,
                          struct dev_conf *c)
{
	*c = (struct dev_conf){.ttl_ms = DEV_DEFAULT_TTL_MS,
	                       .revoke_grace_ms = DEV_DEFAULT_GRACE_MS,
	                       .username_prefix = "dev-"};
	return backend_conf_parse(&dev_conf_spec, conf, keypath, d, c);
}

static int dev_check(const json_t *conf, const char *keypath, struct diag *d)
{
	struct dev_conf c;

	return dev_conf_parse(conf, keypath, d, &c);
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
	struct dev_backend *db;
	struct dev_conf c;

	if (dev_conf_parse(conf, name, NULL, &c) < 0)
		return SFS_EINVAL;
	db = calloc(1, sizeof *db);
	if (!db)
		return SFS_ENOMEM;
	db->base.ops = &backend_dev_ops;
	db->base.name = strdup(name);
	if (!db->base.name) {
		free(db);
		return SFS_ENOMEM;
	}
	db->ttl_ms = c.ttl_ms;
	db->base.revoke_grace_ms = c.revoke_grace_ms;
	snprintf(db->prefix, sizeof db->prefix, "%s", c.username_prefix);
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
	if ((size_t)snprintf(out->lease_id, sizeof out->lease_id, "dev/%s/%s/%lu",
	                     be->name, key->path, db->counter) >= sizeof out->lease_id) {
		/* Cut, it would name another lease, or none. */
		json_decref(obj);
		memset(out, 0, sizeof *out);
		backend_error_set(err, "%s: the lease id would be longer than %zu bytes",
		                  key->path, sizeof out->lease_id - 1);
		return SFS_EINVAL;
	}
	out->value = obj;
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
