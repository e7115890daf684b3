/*
 * The sealed answer cache of the AWS agent API (aws_api.c): one entry per
 * (secret id, versionId, versionStage) asked for, holding the answer body
 * sealed in the store, the VersionId it carries, and when it was last read
 * from Secrets Manager and last served. Entries older than the ttl are
 * refreshed by aws_api's refresher thread with a DescribeSecret probe (a
 * full read only when the stage moved); the least recently served entry
 * is evicted when a new one does not fit. Thread-safe.
 */
#ifndef SECRETFS_AWS_API_CACHE_H
#define SECRETFS_AWS_API_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "secretfs/secmem.h"

struct store;
struct apicache;

/* One entry's identity, as the request named it ("" for an absent
 * versionId or versionStage). */
struct apicache_key {
	const char *id;
	const char *version_id;
	const char *stage;
};

/* A new cache of at most max entries, sealing with st (borrowed). Returns
 * 0 or SFS_ENOMEM. */
int apicache_new(struct store *st, size_t max, struct apicache **out);

/* Frees every entry. NULL-safe. */
void apicache_free(struct apicache *c);

/* The answer of k into out (guarded, initialised empty by the caller) and
 * marks it the most recently served. Returns 0, SFS_ENOTFOUND, or SFS_ECRYPTO /
 * SFS_ENOMEM (the entry is dropped). */
int apicache_get(struct apicache *c, const struct apicache_key *k, struct secbuf *out);

/* Stores body (len bytes) carrying version as the answer of k, read at now;
 * evicts the least recently served entry when full. Returns 0 or
 * SFS_ENOMEM. *evicted counts evictions (may be NULL). */
int apicache_put(struct apicache *c, const struct apicache_key *k, const char *version,
                 const void *body, size_t len, uint64_t now, size_t *evicted);

/* Up to max entries read before stale_before, as copies of their keys and
 * versions (free with apicache_stale_free). Returns how many. */
struct apicache_stale {
	char *id, *version_id, *stage, *version;
};
size_t apicache_stale(struct apicache *c, uint64_t stale_before,
                      struct apicache_stale *out, size_t max);
void apicache_stale_free(struct apicache_stale *s, size_t n);

/* Marks k read at now without a new body (a probe found its version
 * current). No-op when k is gone. */
void apicache_touch(struct apicache *c, const struct apicache_key *k, uint64_t now);

/* Entries held. */
size_t apicache_size(struct apicache *c);

#endif
