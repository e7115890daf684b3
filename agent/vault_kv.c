/*
 * KV paths for the Vault backend. Paths are written as for `vault kv get`;
 * each mount's type and KV version come from sys/internal/ui/mounts, and
 * "data/" or "metadata/" is inserted for KV v2. A probe reads KV v2
 * metadata, so a full read happens only when current_version changed;
 * when a policy refuses metadata/ (403), the mount's probes read data/ and
 * take the version from its own metadata instead (logged once, counted).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "secretfs/error.h"
#include "secretfs/log.h"
#include "vault_backend.h"

/* The metrics of each Vault backend (stats.h). */
enum { VAULT_METADATA_DENIED, VAULT_PROBES_BY_READING };
static const struct stats_field vault_fields[] = {
    [VAULT_METADATA_DENIED] = {STATS_COUNTER, "secretfs_vault_metadata_denied_total",
                               "KV v2 mounts whose metadata/ the policy refused, "
                               "so new versions are found by reading data/"},
    [VAULT_PROBES_BY_READING] = {STATS_COUNTER, "secretfs_vault_probes_by_reading_total",
                                 "Version checks made by reading data/ because "
                                 "metadata/ is refused"},
};
static const struct stats_family vault_family = {
    vault_fields, sizeof vault_fields / sizeof vault_fields[0], "backend"};

void vault_kv_init(struct vault_kv *kv, struct stats *reg, const char *name)
{
	memset(kv, 0, sizeof *kv);
	pthread_mutex_init(&kv->lock, NULL);
	kv->stats = stats_register(reg, &vault_family, name);
}

void vault_kv_release(struct vault_kv *kv)
{
	for (size_t i = 0; i < kv->nmounts; i++)
		free(kv->mounts[i].prefix);
	pthread_mutex_destroy(&kv->lock);
}

static const struct vault_mount *mount_lookup(struct vault_kv *kv, const char *path)
{
	const struct vault_mount *found = NULL;

	pthread_mutex_lock(&kv->lock);
	for (size_t i = 0; i < kv->nmounts && !found; i++)
		if (strncmp(path, kv->mounts[i].prefix, strlen(kv->mounts[i].prefix)) ==
		    0)
			found = &kv->mounts[i];
	pthread_mutex_unlock(&kv->lock);
	return found;
}

int vault_kv_mount_from_reply(const json_t *reply, const char *path, const char **prefix,
                              const char **type, int *kv_version)
{
	const json_t *data = json_object_get(reply, "data");
	const json_t *p = json_object_get(data, "path"),
	             *t = json_object_get(data, "type");
	const char *version = json_string_value(
	    json_object_get(json_object_get(data, "options"), "version"));

	/* KV v2 paths are cut after the prefix, so it must begin path; an
	 * empty one or one cut at a NUL would claim every path. */
	if (!json_is_string(p) || !json_is_string(t) || json_string_length(p) == 0 ||
	    strlen(json_string_value(p)) != json_string_length(p) ||
	    strlen(json_string_value(t)) != json_string_length(t) ||
	    strncmp(path, json_string_value(p), json_string_length(p)) != 0)
		return SFS_EPARSE;
	*prefix = json_string_value(p);
	*type = json_string_value(t);
	*kv_version = strcmp(*type, "kv") == 0 || strcmp(*type, "generic") == 0
	                  ? (version && strcmp(version, "2") == 0 ? 2 : 1)
	                  : 0;
	return 0;
}

const struct vault_mount *vault_kv_mount_for(struct vault *v, const char *path,
                                             struct backend_error *err, int *rc)
{
	struct vault_kv *kv = &v->kv;
	const struct vault_mount *m;
	json_t *reply = NULL;
	const char *type, *prefix;
	char *p = NULL;
	int kvv;

	*rc = 0;
	if ((m = mount_lookup(kv, path)))
		return m;
	if (asprintf(&p, "sys/internal/ui/mounts/%s", path) < 0) {
		*rc = SFS_ENOMEM;
		return NULL;
	}
	*rc = vault_call_authed(v, "GET", p, NULL, NULL, &reply, err);
	free(p);
	if (*rc == SFS_EDENIED || *rc == SFS_ENOTFOUND || *rc == SFS_EBACKEND) {
		/* No permission to look, or no such mount: read the path as is. */
		json_decref(reply);
		*rc = 0;
		return NULL;
	}
	if (*rc < 0) {
		json_decref(reply);
		return NULL;
	}
	if (vault_kv_mount_from_reply(reply, path, &prefix, &type, &kvv) < 0) {
		json_decref(reply);
		return NULL;
	}
	pthread_mutex_lock(&kv->lock);
	/* Another request may have learnt it meanwhile. */
	for (size_t i = 0; i < kv->nmounts; i++)
		if (strcmp(kv->mounts[i].prefix, prefix) == 0)
			m = &kv->mounts[i];
	if (!m && kv->nmounts < VAULT_MAX_MOUNTS &&
	    (kv->mounts[kv->nmounts].prefix = strdup(prefix))) {
		kv->mounts[kv->nmounts].kv_version = kvv;
		m = &kv->mounts[kv->nmounts++];
		log_info("backend %s: mount %s is %s%s", v->base.name, prefix, type,
		         kvv == 2   ? " v2"
		         : kvv == 1 ? " v1"
		                    : "");
	}
	pthread_mutex_unlock(&kv->lock);
	json_decref(reply);
	return m;
}

/* Builds "<mount><infix><rest>" for KV v2 paths; the rest of an API path
 * loses the "data/" it names (consul-template adds it only when absent). */
static char *kv2_path(const struct vault_mount *m, const struct source_key *key,
                      const char *infix)
{
	const char *rest = key->path + strlen(m->prefix);
	char *out = NULL;

	if (key->api_path && strncmp(rest, "data/", 5) == 0)
		rest += 5;
	if (asprintf(&out, "%s%s%s", m->prefix, infix, rest) < 0)
		return NULL;
	return out;
}

int vault_kv_read_from_reply(const json_t *reply, int rc, const char *path,
                             struct fetch_result *out, struct backend_error *err)
{
	const json_t *data = json_object_get(reply, "data");
	const json_t *meta = json_object_get(data, "metadata");

	if (rc == SFS_ENOTFOUND && json_is_object(meta)) {
		const json_t *del = json_object_get(meta, "deletion_time");
		backend_error_set(
		    err, "%s: version %lld is %s", path,
		    (long long)json_integer_value(json_object_get(meta, "version")),
		    json_is_true(json_object_get(meta, "destroyed")) ? "destroyed"
		    : del && json_string_length(del)                 ? "deleted"
		                                                     : "gone");
	}
	if (rc < 0)
		return rc;
	if (!json_is_object(json_object_get(data, "data"))) {
		backend_error_set(err, "%s: reply has no data.data object", path);
		return SFS_EPARSE;
	}
	memset(out, 0, sizeof *out);
	out->value = json_incref(json_object_get(data, "data"));
	out->reply = json_incref((json_t *)reply);
	snprintf(out->version, sizeof out->version, "%lld",
	         (long long)json_integer_value(json_object_get(meta, "version")));
	return 0;
}

int vault_kv_read(struct vault *v, const struct vault_mount *m,
                  const struct source_key *key, struct fetch_result *out,
                  struct backend_error *err)
{
	const json_t *pin = json_object_get(key->extra, "version");
	char *path = kv2_path(m, key, "data/"), query[32];
	json_t *reply = NULL;
	int rc;

	if (!path)
		return SFS_ENOMEM;
	if (pin)
		snprintf(query, sizeof query, "version=%lld",
		         (long long)json_integer_value(pin));
	rc = vault_call_authed(v, "GET", path, pin ? query : NULL, NULL, &reply, err);
	rc = vault_kv_read_from_reply(reply, rc, key->path, out, err);
	json_decref(reply);
	free(path);
	return rc;
}

static bool metadata_denied(struct vault_kv *kv, const struct vault_mount *m)
{
	bool denied;

	pthread_mutex_lock(&kv->lock);
	denied = m->metadata_denied;
	pthread_mutex_unlock(&kv->lock);
	return denied;
}

/* Marks m's metadata/ as refused; returns true the first time (to log and
 * count it once). */
static bool metadata_deny(struct vault_kv *kv, const struct vault_mount *m)
{
	bool first;

	pthread_mutex_lock(&kv->lock);
	first = !m->metadata_denied;
	((struct vault_mount *)m)->metadata_denied = true;
	pthread_mutex_unlock(&kv->lock);
	if (first)
		stats_inc(kv->stats, VAULT_METADATA_DENIED);
	return first;
}

/* A version check without metadata/: the version of a full read of data/
 * (its own metadata), which the scheduler compares with the last one. */
static int probe_by_reading(struct vault *v, const struct vault_mount *m,
                            const struct source_key *key, char *version,
                            size_t versionlen, struct backend_error *err)
{
	struct fetch_result r = {0};
	int rc;

	stats_inc(v->kv.stats, VAULT_PROBES_BY_READING);
	rc = vault_kv_read(v, m, key, &r, err);
	if (rc == 0)
		snprintf(version, versionlen, "%s", r.version);
	fetch_result_release(&r);
	return rc;
}

void vault_kv_version_from_metadata(const json_t *reply, char *version, size_t versionlen)
{
	snprintf(version, versionlen, "%lld",
	         (long long)json_integer_value(
	             json_object_get(json_object_get(reply, "data"), "current_version")));
}

int vault_kv_probe(struct vault *v, const struct source_key *key, char *version,
                   size_t versionlen, struct backend_error *err)
{
	const json_t *pin = json_object_get(key->extra, "version");
	const struct vault_mount *m;
	json_t *reply = NULL;
	char *path;
	int rc;

	if (pin) {
		snprintf(version, versionlen, "%lld", (long long)json_integer_value(pin));
		return 0;
	}
	m = vault_kv_mount_for(v, key->path, err, &rc);
	if (rc < 0)
		return rc;
	if (!m || m->kv_version != 2) {
		version[0] = '\0'; /* unversioned: the scheduler reads in full */
		return 0;
	}
	if (metadata_denied(&v->kv, m))
		return probe_by_reading(v, m, key, version, versionlen, err);
	path = kv2_path(m, key, "metadata/");
	if (!path)
		return SFS_ENOMEM;
	rc = vault_call_authed(v, "GET", path, NULL, NULL, &reply, err);
	if (rc == 0)
		vault_kv_version_from_metadata(reply, version, versionlen);
	json_decref(reply);
	free(path);
	if (rc == SFS_EDENIED) {
		/* A policy granting data/ but not metadata/ is common (and
		 * enough for Vault Agent): read the data each interval. */
		if (metadata_deny(&v->kv, m))
			log_warn(
			    "backend %s: %s; checking %s for new versions by reading "
			    "its data instead (grant read on %smetadata/* for cheaper "
			    "probes)",
			    v->base.name, err->msg, m->prefix, m->prefix);
		memset(err, 0, sizeof *err);
		return probe_by_reading(v, m, key, version, versionlen, err);
	}
	return rc;
}
