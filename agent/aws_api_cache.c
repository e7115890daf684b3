/*
 * The sealed answer cache of the AWS agent API (see aws_api_cache.h).
 * Entries sit in one array, found by a linear scan: the cache holds at
 * most a few thousand, and each lookup compares short strings. Each body
 * is sealed under its own name ("\x01aws_api/<n>") and a version that
 * grows with every put, so a blob can never be opened as another entry's.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aws_api_cache.h"
#include "secretfs/error.h"
#include "secretfs/store.h"

struct entry {
	char *id, *version_id, *stage;
	char *version; /* the VersionId of the answer */
	char name[32]; /* sealing name */
	uint64_t seal_version;
	struct store_blob *blob;
	uint64_t read_ms;
	uint64_t used; /* the use counter when last served: LRU order */
};

struct apicache {
	pthread_mutex_t lock;
	struct store *st;
	struct entry *e;
	size_t n, max;
	uint64_t next_name, next_version, uses;
};

int apicache_new(struct store *st, size_t max, struct apicache **out)
{
	struct apicache *c = calloc(1, sizeof *c);

	if (!c || !(c->e = calloc(max ? max : 1, sizeof *c->e))) {
		free(c);
		return SFS_ENOMEM;
	}
	pthread_mutex_init(&c->lock, NULL);
	c->st = st;
	c->max = max;
	*out = c;
	return 0;
}

static void entry_release(struct entry *e)
{
	free(e->id);
	free(e->version_id);
	free(e->stage);
	free(e->version);
	store_blob_free(e->blob);
	memset(e, 0, sizeof *e);
}

void apicache_free(struct apicache *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++)
		entry_release(&c->e[i]);
	pthread_mutex_destroy(&c->lock);
	free(c->e);
	free(c);
}

/* The entry of k, or NULL; lock held. */
static struct entry *find(struct apicache *c, const struct apicache_key *k)
{
	for (size_t i = 0; i < c->n; i++)
		if (strcmp(c->e[i].id, k->id) == 0 &&
		    strcmp(c->e[i].version_id, k->version_id) == 0 &&
		    strcmp(c->e[i].stage, k->stage) == 0)
			return &c->e[i];
	return NULL;
}

/* Removes e (moving the last entry into its place); lock held. */
static void drop(struct apicache *c, struct entry *e)
{
	entry_release(e);
	if (e != &c->e[c->n - 1]) {
		*e = c->e[c->n - 1];
		memset(&c->e[c->n - 1], 0, sizeof *e);
	}
	c->n--;
}

int apicache_get(struct apicache *c, const struct apicache_key *k, struct secbuf *out)
{
	unsigned char *plain = NULL;
	size_t len = 0;
	struct entry *e;
	int rc;

	pthread_mutex_lock(&c->lock);
	e = find(c, k);
	if (!e) {
		pthread_mutex_unlock(&c->lock);
		return SFS_ENOTFOUND;
	}
	rc = store_unseal(c->st, e->blob, e->name, e->seal_version, &plain, &len);
	if (rc == 0) {
		e->used = ++c->uses;
		rc = secbuf_append(out, plain, len);
	}
	if (rc < 0)
		drop(c, e);
	pthread_mutex_unlock(&c->lock);
	secmem_free(plain);
	return rc;
}

int apicache_put(struct apicache *c, const struct apicache_key *k, const char *version,
                 const void *body, size_t len, uint64_t now, size_t *evicted)
{
	struct store_blob *blob = NULL;
	struct entry *e, fresh = {0};
	uint64_t seal_version;
	char name[32];
	int rc;

	if (c->max == 0)
		return 0;
	pthread_mutex_lock(&c->lock);
	e = find(c, k);
	if (e) {
		memcpy(name, e->name, sizeof name);
	} else {
		snprintf(name, sizeof name,
		         "\x01"
		         "aws_api/%llu",
		         (unsigned long long)c->next_name++);
	}
	seal_version = ++c->next_version;
	rc = store_seal(c->st, name, seal_version, body, len, &blob);
	if (rc < 0)
		goto out;
	if (e) {
		char *v = strdup(version);
		if (!v) {
			rc = SFS_ENOMEM;
			goto out;
		}
		free(e->version);
		e->version = v;
		store_blob_free(e->blob);
	} else {
		fresh.id = strdup(k->id);
		fresh.version_id = strdup(k->version_id);
		fresh.stage = strdup(k->stage);
		fresh.version = strdup(version);
		if (!fresh.id || !fresh.version_id || !fresh.stage || !fresh.version) {
			entry_release(&fresh);
			rc = SFS_ENOMEM;
			goto out;
		}
		if (c->n == c->max) {
			/* Full: the least recently served one goes. */
			struct entry *lru = &c->e[0];
			for (size_t i = 1; i < c->n; i++)
				if (c->e[i].used < lru->used)
					lru = &c->e[i];
			drop(c, lru);
			if (evicted)
				(*evicted)++;
		}
		memcpy(fresh.name, name, sizeof name);
		e = &c->e[c->n++];
		*e = fresh;
		e->used = ++c->uses;
	}
	e->blob = blob;
	blob = NULL;
	e->seal_version = seal_version;
	e->read_ms = now;
out:
	pthread_mutex_unlock(&c->lock);
	store_blob_free(blob);
	return rc;
}

size_t apicache_stale(struct apicache *c, uint64_t stale_before,
                      struct apicache_stale *out, size_t max)
{
	size_t n = 0;

	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < c->n && n < max; i++) {
		struct entry *e = &c->e[i];
		struct apicache_stale *s = &out[n];
		if (e->read_ms >= stale_before)
			continue;
		s->id = strdup(e->id);
		s->version_id = strdup(e->version_id);
		s->stage = strdup(e->stage);
		s->version = strdup(e->version);
		if (!s->id || !s->version_id || !s->stage || !s->version) {
			apicache_stale_free(s, 1);
			break;
		}
		n++;
	}
	pthread_mutex_unlock(&c->lock);
	return n;
}

void apicache_stale_free(struct apicache_stale *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(s[i].id);
		free(s[i].version_id);
		free(s[i].stage);
		free(s[i].version);
		memset(&s[i], 0, sizeof s[i]);
	}
}

void apicache_touch(struct apicache *c, const struct apicache_key *k, uint64_t now)
{
	struct entry *e;

	pthread_mutex_lock(&c->lock);
	if ((e = find(c, k)))
		e->read_ms = now;
	pthread_mutex_unlock(&c->lock);
}

size_t apicache_size(struct apicache *c)
{
	size_t n;

	pthread_mutex_lock(&c->lock);
	n = c->n;
	pthread_mutex_unlock(&c->lock);
	return n;
}
