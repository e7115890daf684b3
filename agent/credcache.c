/*
 * Sealed slots and refreshed credentials (see credcache.h): the locking
 * and backoff that the Vault token and the AWS credentials share.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "credcache.h"
#include "secretfs/error.h"
#include "secretfs/timing.h"

/* Sets up s under the name fmt and ap make. */
static int slot_init(struct credcache_slot *s, struct store *st, const char *fmt,
                     va_list ap) __attribute__((format(printf, 3, 0)));

static int slot_init(struct credcache_slot *s, struct store *st, const char *fmt,
                     va_list ap)
{
	memset(s, 0, sizeof *s);
	if (vasprintf(&s->name, fmt, ap) < 0) {
		s->name = NULL;
		return SFS_ENOMEM;
	}
	s->store = st;
	pthread_mutex_init(&s->lock, NULL);
	return 0;
}

int credcache_slot_init(struct credcache_slot *s, struct store *st, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = slot_init(s, st, fmt, ap);
	va_end(ap);
	return rc;
}

void credcache_slot_release(struct credcache_slot *s)
{
	if (!s->name)
		return; /* never set up */
	store_slot_clear(&s->slot);
	pthread_mutex_destroy(&s->lock);
	free(s->name);
	s->name = NULL;
}

int credcache_slot_put_locked(struct credcache_slot *s, const void *data, size_t len)
{
	return store_slot_put(s->store, &s->slot, s->name, data, len);
}

int credcache_slot_get_locked(struct credcache_slot *s, char **out)
{
	return store_slot_get(s->store, &s->slot, s->name, out);
}

int credcache_slot_put(struct credcache_slot *s, const void *data, size_t len)
{
	int rc;

	pthread_mutex_lock(&s->lock);
	rc = credcache_slot_put_locked(s, data, len);
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int credcache_slot_get(struct credcache_slot *s, char **out)
{
	int rc;

	pthread_mutex_lock(&s->lock);
	rc = credcache_slot_get_locked(s, out);
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int credcache_init(struct credcache *c, struct store *st, uint64_t base_ms,
                   uint64_t cap_ms, const char *fmt, ...)
{
	va_list ap;
	int rc;

	memset(c, 0, sizeof *c);
	va_start(ap, fmt);
	rc = slot_init(&c->cred, st, fmt, ap);
	va_end(ap);
	if (rc < 0)
		return rc;
	pthread_mutex_init(&c->refresh_lock, NULL);
	c->base_ms = base_ms;
	c->cap_ms = cap_ms;
	return 0;
}

void credcache_release(struct credcache *c)
{
	if (!c->cred.name)
		return; /* never set up */
	credcache_slot_release(&c->cred);
	pthread_mutex_destroy(&c->refresh_lock);
}

void credcache_lock(struct credcache *c)
{
	pthread_mutex_lock(&c->cred.lock);
}

void credcache_unlock(struct credcache *c)
{
	pthread_mutex_unlock(&c->cred.lock);
}

bool credcache_has_locked(const struct credcache *c)
{
	return c->cred.slot.blob != NULL;
}

uint64_t credcache_gen_locked(const struct credcache *c)
{
	return c->cred.slot.blob ? c->cred.slot.version : 0;
}

uint64_t credcache_gen(struct credcache *c)
{
	uint64_t gen;

	credcache_lock(c);
	gen = credcache_gen_locked(c);
	credcache_unlock(c);
	return gen;
}

int credcache_get(struct credcache *c, char **out, uint64_t *gen)
{
	int rc;

	credcache_lock(c);
	if (gen)
		*gen = credcache_gen_locked(c);
	rc = credcache_slot_get_locked(&c->cred, out);
	credcache_unlock(c);
	return rc;
}

int credcache_refresh_begin(struct credcache *c, uint64_t seen, bool honour_backoff,
                            uint64_t now, struct backend_error *err)
{
	int rc = 1;

	pthread_mutex_lock(&c->refresh_lock);
	credcache_lock(c);
	if (credcache_gen_locked(c) != seen) {
		rc = 0;
	} else if (honour_backoff && now < c->retry_at) {
		/* A source that is down is not asked again by every caller. */
		backend_error_set(err, "%s", c->last_error);
		err->retry_after_ms = c->retry_at - now;
		rc = SFS_ETRANSIENT;
	}
	credcache_unlock(c);
	if (rc != 1)
		pthread_mutex_unlock(&c->refresh_lock);
	return rc;
}

void credcache_refresh_end(struct credcache *c)
{
	pthread_mutex_unlock(&c->refresh_lock);
}

void credcache_succeeded_locked(struct credcache *c)
{
	c->attempt = 0;
	c->retry_at = 0;
}

int credcache_put_locked(struct credcache *c, const void *data, size_t len)
{
	int rc = credcache_slot_put_locked(&c->cred, data, len);

	if (rc == 0)
		credcache_succeeded_locked(c);
	return rc;
}

uint64_t credcache_failed_locked(struct credcache *c, uint64_t now,
                                 uint64_t retry_after_ms, const char *why)
{
	uint64_t delay = timing_backoff(c->attempt++, c->base_ms, c->cap_ms,
	                                retry_after_ms, timing_random());

	c->retry_at = now + delay;
	snprintf(c->last_error, sizeof c->last_error, "%s", why);
	return delay;
}
