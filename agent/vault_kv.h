/*
 * The Vault backend's KV reads (vault_kv.c): which mounts are KV and of
 * which version, KV v2 reads and version probes, and the fallback for a
 * policy that refuses metadata/.
 */
#ifndef SECRETFS_VAULT_KV_H
#define SECRETFS_VAULT_KV_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "secretfs/backend.h"
#include "secretfs/stats.h"

struct vault;

#define VAULT_MAX_MOUNTS 64

struct vault_mount {
	char *prefix;         /* "secret/" */
	int kv_version;       /* 0: not KV; 1 or 2 */
	bool metadata_denied; /* KV v2 metadata/ refused: probe by reading data/ */
};

struct vault_kv {
	pthread_mutex_t lock; /* guards the mounts */
	struct vault_mount mounts[VAULT_MAX_MOUNTS];
	size_t nmounts;
	struct stats_set *stats; /* the KV counters; NULL-safe */
};

/* Sets up kv with no mount known yet, its counters registered in reg
 * (may be NULL) for the backend called name. */
void vault_kv_init(struct vault_kv *kv, struct stats *reg, const char *name);

/* Frees the mounts learnt. */
void vault_kv_release(struct vault_kv *kv);

/*
 * The mount holding path, asked of sys/internal/ui/mounts the first time
 * and remembered (up to VAULT_MAX_MOUNTS). NULL with *rc 0 when path is
 * not under a mount the token may look up (it is then read as is); NULL
 * with *rc < 0 and err filled on failure.
 */
const struct vault_mount *vault_kv_mount_for(struct vault *v, const char *path,
                                             struct backend_error *err, int *rc);

/*
 * Parses the sys/internal/ui/mounts/<path> reply for path: data.path (the
 * mount's prefix, "secret/") and data.type, both borrowed from reply, and
 * the KV version (1 or 2; 0: not a KV mount). Returns 0, or SFS_EPARSE
 * when either is missing or not a string, holds a NUL byte, or the prefix
 * is empty or does not begin path.
 */
int vault_kv_mount_from_reply(const json_t *reply, const char *path, const char **prefix,
                              const char **type, int *kv_version);

/*
 * Parses the reply of a KV v2 data/ read of path, whose request returned
 * rc (vault_call: a 404 reply still carries the version's metadata, which
 * names a deleted or destroyed version in err). On rc 0, fills out (the
 * caller releases it) with data.data, which must be an object, and
 * data.metadata.version. Returns 0, rc when negative, or SFS_EPARSE.
 */
int vault_kv_read_from_reply(const json_t *reply, int rc, const char *path,
                             struct fetch_result *out, struct backend_error *err);

/* The data.current_version of a KV v2 metadata/ reply, in decimal, into
 * version ("0" when absent). */
void vault_kv_version_from_metadata(const json_t *reply, char *version,
                                    size_t versionlen);

/* Reads key from the KV v2 mount m (data/, pinned to key's "version" if
 * given) into out. A deleted or destroyed version is SFS_ENOTFOUND with
 * err saying which. */
int vault_kv_read(struct vault *v, const struct vault_mount *m,
                  const struct source_key *key, struct fetch_result *out,
                  struct backend_error *err);

/*
 * The backend's probe(): the current version of key into version ("" when
 * the path is not KV v2 and has none). Reads KV v2 metadata/; when the
 * policy refuses it, the mount is probed by reading data/ from then on
 * (logged once, counted).
 */
int vault_kv_probe(struct vault *v, const struct source_key *key, char *version,
                   size_t versionlen, struct backend_error *err);

#endif
