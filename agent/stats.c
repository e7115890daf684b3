/*
 * The metrics registry (see stats.h): a list of sets, each a label value
 * and an array of atomic 64-bit values laid out as its family says.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "secretfs/error.h"
#include "secretfs/stats.h"

struct stats_set {
	const struct stats_family *fam;
	struct stats_set *next;
	char *value;         /* label value; NULL without a label */
	_Atomic int64_t v[]; /* fam->nfields */
};

struct stats {
	pthread_mutex_t lock;
	struct stats_set *head, **tail;
};

int stats_new(struct stats **out)
{
	struct stats *st = calloc(1, sizeof *st);

	if (!st)
		return SFS_ENOMEM;
	pthread_mutex_init(&st->lock, NULL);
	st->tail = &st->head;
	*out = st;
	return 0;
}

void stats_free(struct stats *st)
{
	if (!st)
		return;
	while (st->head) {
		struct stats_set *s = st->head;
		st->head = s->next;
		free(s->value);
		free(s);
	}
	pthread_mutex_destroy(&st->lock);
	free(st);
}

struct stats_set *stats_register(struct stats *st, const struct stats_family *fam,
                                 const char *value)
{
	struct stats_set *s;

	if (!st)
		return NULL;
	s = calloc(1, sizeof *s + fam->nfields * sizeof s->v[0]);
	if (!s)
		return NULL;
	s->fam = fam;
	if (fam->label && !(s->value = strdup(value ? value : ""))) {
		free(s);
		return NULL;
	}
	for (size_t i = 0; i < fam->nfields; i++)
		atomic_init(&s->v[i], 0);
	pthread_mutex_lock(&st->lock);
	*st->tail = s;
	st->tail = &s->next;
	pthread_mutex_unlock(&st->lock);
	return s;
}

void stats_inc(struct stats_set *set, size_t i)
{
	stats_add(set, i, 1);
}

void stats_add(struct stats_set *set, size_t i, uint64_t n)
{
	if (set && i < set->fam->nfields)
		atomic_fetch_add_explicit(&set->v[i], (int64_t)n, memory_order_relaxed);
}

void stats_set_value(struct stats_set *set, size_t i, int64_t v)
{
	if (set && i < set->fam->nfields)
		atomic_store_explicit(&set->v[i], v, memory_order_relaxed);
}

int64_t stats_get(const struct stats_set *set, size_t i)
{
	if (!set || i >= set->fam->nfields)
		return 0;
	return atomic_load_explicit(&((struct stats_set *)set)->v[i],
	                            memory_order_relaxed);
}

int64_t stats_total(struct stats *st, const char *name)
{
	int64_t sum = 0;

	if (!st)
		return 0;
	pthread_mutex_lock(&st->lock);
	for (struct stats_set *s = st->head; s; s = s->next)
		for (size_t i = 0; i < s->fam->nfields; i++)
			if (strcmp(s->fam->fields[i].name, name) == 0)
				sum += stats_get(s, i);
	pthread_mutex_unlock(&st->lock);
	return sum;
}

void stats_each(struct stats *st, stats_fn fn, void *arg)
{
	if (!st)
		return;
	pthread_mutex_lock(&st->lock);
	for (struct stats_set *s = st->head; s; s = s->next)
		for (size_t i = 0; i < s->fam->nfields; i++)
			fn(arg, &s->fam->fields[i], s->fam->label, s->value,
			   stats_get(s, i));
	pthread_mutex_unlock(&st->lock);
}
