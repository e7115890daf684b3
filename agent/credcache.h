/*
 * Sealed material a backend keeps between requests, in two shapes:
 *
 * - credcache_slot: one sealed store slot with its lock and its sealing
 *   name (Vault's auth-method stash, the AWS variables sealed from the
 *   environment).
 * - credcache: a credential that is refreshed from its source (the Vault
 *   login token, AWS credentials): the slot, a refresh lock so that one
 *   thread refreshes while the others wait and then use its result, a
 *   generation that says which credential a caller used, and the capped
 *   exponential backoff after a failed refresh.
 *
 * The plaintext only ever leaves a slot as a guarded copy the caller frees
 * with secmem_free().
 */
#ifndef SECRETFS_CREDCACHE_H
#define SECRETFS_CREDCACHE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "secretfs/backend.h"
#include "secretfs/store.h"

struct credcache_slot {
	pthread_mutex_t lock; /* guards slot (and, in a credcache, more) */
	struct store *store;  /* borrowed */
	struct store_slot slot;
	char *name; /* the sealing name (owned) */
};

/* Sets up an empty slot in st, sealed under the name that fmt and its
 * arguments make (allocated: never cut). Returns 0 or SFS_ENOMEM; on
 * failure s needs no release. */
int credcache_slot_init(struct credcache_slot *s, struct store *st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Empties the slot and frees its name. */
void credcache_slot_release(struct credcache_slot *s);

/* Seals len bytes of data into the slot, replacing what it held. Returns 0
 * or SFS_ENOMEM. Takes the lock; the _locked form expects it held. */
int credcache_slot_put(struct credcache_slot *s, const void *data, size_t len);
int credcache_slot_put_locked(struct credcache_slot *s, const void *data, size_t len);

/* A NUL-terminated guarded copy of the content into *out (free with
 * secmem_free). Returns 0, SFS_ENOTFOUND (empty), SFS_ECRYPTO or
 * SFS_ENOMEM. Takes the lock; the _locked form expects it held. */
int credcache_slot_get(struct credcache_slot *s, char **out);
int credcache_slot_get_locked(struct credcache_slot *s, char **out);

struct credcache {
	/* The credential. Its lock guards the fields below and whatever the
	 * owner keeps about the credential (its expiry, its schedule). */
	struct credcache_slot cred;
	/* Held for a whole refresh, so concurrent callers refresh once. */
	pthread_mutex_t refresh_lock;
	uint64_t base_ms, cap_ms; /* the backoff after failures */
	unsigned attempt;         /* failed refreshes in a row */
	uint64_t retry_at;        /* no refresh before (monotonic ms) */
	char last_error[sizeof((struct backend_error *)0)->msg];
};

/* Sets up an empty credential sealed as credcache_slot_init does, backing
 * off from base_ms up to cap_ms after failures. Returns 0 or SFS_ENOMEM; on
 * failure c needs no release. */
int credcache_init(struct credcache *c, struct store *st, uint64_t base_ms,
                   uint64_t cap_ms, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Wipes the credential, frees the name, destroys the locks. */
void credcache_release(struct credcache *c);

void credcache_lock(struct credcache *c);
void credcache_unlock(struct credcache *c);

/* Whether a credential is held; lock held. */
bool credcache_has_locked(const struct credcache *c);

/* The generation of the credential held: 0 while there is none, then one
 * more at each put. Lock held for the _locked form. */
uint64_t credcache_gen_locked(const struct credcache *c);
uint64_t credcache_gen(struct credcache *c);

/* A guarded copy of the credential (free with secmem_free(*out)), and
 * its generation in *gen (may be NULL), read together. Returns as
 * credcache_slot_get. */
int credcache_get(struct credcache *c, char **out, uint64_t *gen);

/*
 * Starts a refresh by a caller that used generation seen: takes the
 * refresh lock, waiting for a refresh under way. Returns 1 when the caller
 * should refresh (it then holds the refresh lock until
 * credcache_refresh_end); 0 when another thread replaced the credential
 * since (nothing held: use the new one); SFS_ETRANSIENT when
 * honour_backoff and a failed refresh is not due for a retry at now
 * (nothing held; err gets the last failure and the time until the retry).
 * err may be NULL when !honour_backoff.
 */
int credcache_refresh_begin(struct credcache *c, uint64_t seen, bool honour_backoff,
                            uint64_t now, struct backend_error *err);

/* Releases the refresh lock taken by credcache_refresh_begin. */
void credcache_refresh_end(struct credcache *c);

/* Seals a new credential (one more generation) and forgets past failures.
 * Lock held. Returns 0 or SFS_ENOMEM. */
int credcache_put_locked(struct credcache *c, const void *data, size_t len);

/* Forgets past failures without a new credential (one was extended).
 * Lock held. */
void credcache_succeeded_locked(struct credcache *c);

/* Counts a failed refresh at now (or renewal) whose error message is why:
 * returns the delay before the next try (capped exponential backoff with
 * full jitter, never under retry_after_ms) and sets retry_at to now plus
 * it. Lock held. */
uint64_t credcache_failed_locked(struct credcache *c, uint64_t now,
                                 uint64_t retry_after_ms, const char *why);

#endif
