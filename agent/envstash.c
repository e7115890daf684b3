/*
 * The environment's secrets, sealed (see envstash.h): a list of the
 * variables taken, each with its sealed slot when it was set.
 */
#include <pthread.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "credcache.h"
#include "envstash.h"
#include "secretfs/error.h"

struct envstash_var {
	struct envstash_var *next;
	char *name;                 /* owned */
	bool set;                   /* slot holds the value */
	struct credcache_slot slot; /* set up only when set */
};

struct envstash {
	pthread_mutex_t lock; /* guards vars */
	struct store *store;  /* borrowed */
	struct envstash_var *vars;
};

int envstash_new(struct store *st, struct envstash **out)
{
	struct envstash *es = calloc(1, sizeof *es);

	if (!es)
		return SFS_ENOMEM;
	pthread_mutex_init(&es->lock, NULL);
	es->store = st;
	*out = es;
	return 0;
}

void envstash_free(struct envstash *es)
{
	struct envstash_var *v, *next;

	if (!es)
		return;
	for (v = es->vars; v; v = next) {
		next = v->next;
		if (v->set)
			credcache_slot_release(&v->slot);
		free(v->name);
		free(v);
	}
	pthread_mutex_destroy(&es->lock);
	free(es);
}

/* The entry of var, or NULL; lock held. */
static struct envstash_var *envstash_find(struct envstash *es, const char *var)
{
	struct envstash_var *v;

	for (v = es->vars; v && strcmp(v->name, var) != 0; v = v->next)
		;
	return v;
}

int envstash_take(struct envstash *es, const char *var)
{
	struct envstash_var *v;
	char *value;
	int rc = 0;

	pthread_mutex_lock(&es->lock);
	if (envstash_find(es, var))
		goto out;
	value = getenv(var);
	v = calloc(1, sizeof *v);
	if (v && !(v->name = strdup(var))) {
		free(v);
		v = NULL;
	}
	if (!v) {
		rc = SFS_ENOMEM;
	} else {
		if (value && *value) {
			rc = credcache_slot_init(&v->slot, es->store, "%s", var);
			if (rc == 0) {
				v->set = true;
				rc = credcache_slot_put(&v->slot, value, strlen(value));
			}
		}
		v->next = es->vars;
		es->vars = v;
	}
	if (value) {
		sodium_memzero(value, strlen(value));
		unsetenv(var);
	}
out:
	pthread_mutex_unlock(&es->lock);
	return rc;
}

int envstash_get(struct envstash *es, const char *var, char **out)
{
	struct envstash_var *v;
	int rc = SFS_ENOTFOUND;

	pthread_mutex_lock(&es->lock);
	v = envstash_find(es, var);
	if (v && v->set)
		rc = credcache_slot_get(&v->slot, out);
	pthread_mutex_unlock(&es->lock);
	return rc;
}
