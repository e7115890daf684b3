/*
 * The metrics registry (see stats.h): a list of sets, each a label value
 * and an array of atomic 64-bit slots laid out as its family says. A
 * counter or gauge takes one slot per cell; a histogram takes, per cell,
 * one slot per bucket (not cumulative: an observation touches one) and one
 * for the sum.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "secretfs/error.h"
#include "secretfs/stats.h"

#define STATS_MAX_FAMILIES 64 /* distinct families stats_each groups */

struct stats_set {
	const struct stats_family *fam;
	struct stats_set *next;
	char *value;         /* label value; NULL without a label */
	size_t *off;         /* fam->nfields + 1 slot offsets, in this block */
	_Atomic int64_t v[]; /* off[fam->nfields] slots */
};

struct stats {
	pthread_mutex_t lock;
	struct stats_set *head, **tail;
};

/* How many values a dim lists. */
static size_t dim_count(const struct stats_dim *d)
{
	size_t n = 0;

	while (d->values[n])
		n++;
	return n;
}

static size_t field_ndims(const struct stats_field *f)
{
	size_t n = 0;

	while (f->dims && f->dims[n].key)
		n++;
	return n;
}

static size_t field_cells(const struct stats_field *f)
{
	size_t cells = 1;

	for (size_t d = 0; d < field_ndims(f); d++)
		cells *= dim_count(&f->dims[d]);
	return cells;
}

static size_t cell_slots(const struct stats_field *f)
{
	return f->kind == STATS_HISTOGRAM ? f->nbounds + 2 : 1;
}

static bool field_ok(const struct stats_field *f)
{
	if (field_ndims(f) > STATS_MAX_DIMS || field_cells(f) == 0)
		return false;
	return f->kind != STATS_HISTOGRAM || f->nbounds <= STATS_MAX_BOUNDS;
}

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

/* The set of fam for label value already registered, or NULL. Lock held. */
static struct stats_set *set_find(struct stats *st, const struct stats_family *fam,
                                  const char *value)
{
	for (struct stats_set *s = st->head; s; s = s->next)
		if (s->fam == fam &&
		    (!fam->label || strcmp(s->value, value ? value : "") == 0))
			return s;
	return NULL;
}

struct stats_set *stats_register(struct stats *st, const struct stats_family *fam,
                                 const char *value)
{
	struct stats_set *s, *had;
	size_t slots = 0;

	if (!st)
		return NULL;
	pthread_mutex_lock(&st->lock);
	had = set_find(st, fam, value);
	pthread_mutex_unlock(&st->lock);
	if (had)
		return had;
	for (size_t i = 0; i < fam->nfields; i++) {
		if (!field_ok(&fam->fields[i]))
			return NULL;
		slots += field_cells(&fam->fields[i]) * cell_slots(&fam->fields[i]);
	}
	s = calloc(1, sizeof *s + slots * sizeof s->v[0] +
	                  (fam->nfields + 1) * sizeof s->off[0]);
	if (!s)
		return NULL;
	s->fam = fam;
	s->off = (size_t *)(void *)&s->v[slots];
	if (fam->label && !(s->value = strdup(value ? value : ""))) {
		free(s);
		return NULL;
	}
	slots = 0;
	for (size_t i = 0; i < fam->nfields; i++) {
		s->off[i] = slots;
		slots += field_cells(&fam->fields[i]) * cell_slots(&fam->fields[i]);
	}
	s->off[fam->nfields] = slots;
	for (size_t i = 0; i < slots; i++)
		atomic_init(&s->v[i], 0);
	pthread_mutex_lock(&st->lock);
	had = set_find(st, fam, value);
	if (!had) {
		*st->tail = s;
		st->tail = &s->next;
	}
	pthread_mutex_unlock(&st->lock);
	if (had) {
		free(s->value);
		free(s);
	}
	return had ? had : s;
}

/* The first slot of cell of field i, or NULL when out of range or not of
 * the kind wanted (-1: any). */
static _Atomic int64_t *cell_at(const struct stats_set *set, size_t i, size_t cell,
                                int kind)
{
	const struct stats_field *f;

	if (!set || i >= set->fam->nfields)
		return NULL;
	f = &set->fam->fields[i];
	if ((kind >= 0 && (int)f->kind != kind) || cell >= field_cells(f))
		return NULL;
	return (_Atomic int64_t *)&set->v[set->off[i] + cell * cell_slots(f)];
}

void stats_inc(struct stats_set *set, size_t i)
{
	stats_add_at(set, i, 0, 1);
}

void stats_add(struct stats_set *set, size_t i, uint64_t n)
{
	stats_add_at(set, i, 0, n);
}

void stats_inc_at(struct stats_set *set, size_t i, size_t cell)
{
	stats_add_at(set, i, cell, 1);
}

void stats_add_at(struct stats_set *set, size_t i, size_t cell, uint64_t n)
{
	_Atomic int64_t *c = cell_at(set, i, cell, -1);

	if (c && set->fam->fields[i].kind != STATS_HISTOGRAM)
		atomic_fetch_add_explicit(c, (int64_t)n, memory_order_relaxed);
}

void stats_set_value(struct stats_set *set, size_t i, int64_t v)
{
	_Atomic int64_t *c = cell_at(set, i, 0, -1);

	if (c && set->fam->fields[i].kind != STATS_HISTOGRAM)
		atomic_store_explicit(c, v, memory_order_relaxed);
}

void stats_observe(struct stats_set *set, size_t i, int64_t v)
{
	stats_observe_at(set, i, 0, v);
}

void stats_observe_at(struct stats_set *set, size_t i, size_t cell, int64_t v)
{
	_Atomic int64_t *c = cell_at(set, i, cell, STATS_HISTOGRAM);
	const struct stats_field *f;
	size_t b = 0;

	if (!c)
		return;
	f = &set->fam->fields[i];
	while (b < f->nbounds && v > f->bounds[b])
		b++;
	atomic_fetch_add_explicit(&c[b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&c[f->nbounds + 1], v, memory_order_relaxed);
}

static int64_t load(const _Atomic int64_t *c)
{
	return atomic_load_explicit((_Atomic int64_t *)c, memory_order_relaxed);
}

int64_t stats_get_at(const struct stats_set *set, size_t i, size_t cell)
{
	const _Atomic int64_t *c = cell_at(set, i, cell, -1);
	const struct stats_field *f;
	int64_t n = 0;

	if (!c)
		return 0;
	f = &set->fam->fields[i];
	if (f->kind != STATS_HISTOGRAM)
		return load(c);
	for (size_t b = 0; b <= f->nbounds; b++)
		n += load(&c[b]);
	return n;
}

int64_t stats_get(const struct stats_set *set, size_t i)
{
	int64_t sum = 0;

	if (!set || i >= set->fam->nfields)
		return 0;
	for (size_t c = 0; c < field_cells(&set->fam->fields[i]); c++)
		sum += stats_get_at(set, i, c);
	return sum;
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

/* Hands out every cell of field i of set. */
static void each_cell(const struct stats_set *s, size_t i, stats_fn fn, void *arg)
{
	const struct stats_field *f = &s->fam->fields[i];
	size_t ndims = field_ndims(f), cells = field_cells(f);
	struct stats_sample smp = {
	    .field = f, .label = s->fam->label, .value = s->value, .ndims = ndims};
	int64_t buckets[STATS_MAX_BOUNDS];

	for (size_t c = 0; c < cells; c++) {
		const _Atomic int64_t *slot = &s->v[s->off[i] + c * cell_slots(f)];
		size_t rest = c;

		for (size_t d = ndims; d-- > 0;) {
			size_t n = dim_count(&f->dims[d]);
			smp.dim_key[d] = f->dims[d].key;
			smp.dim_value[d] = f->dims[d].values[rest % n];
			rest /= n;
		}
		if (f->kind == STATS_HISTOGRAM) {
			int64_t run = 0;
			for (size_t b = 0; b < f->nbounds; b++)
				buckets[b] = run += load(&slot[b]);
			smp.v = run + load(&slot[f->nbounds]);
			smp.buckets = buckets;
			smp.sum = load(&slot[f->nbounds + 1]);
		} else {
			smp.v = load(slot);
		}
		if (ndims && smp.v == 0)
			continue;
		fn(arg, &smp);
	}
}

void stats_each(struct stats *st, stats_fn fn, void *arg)
{
	const struct stats_family *seen[STATS_MAX_FAMILIES];
	size_t nseen = 0;

	if (!st)
		return;
	pthread_mutex_lock(&st->lock);
	for (struct stats_set *s = st->head; s; s = s->next) {
		size_t k = 0;
		bool grouped;

		while (k < nseen && seen[k] != s->fam)
			k++;
		if (k < nseen)
			continue;
		grouped = nseen < STATS_MAX_FAMILIES;
		if (grouped)
			seen[nseen++] = s->fam;
		/* Past the limit a family is walked once per set: still
		 * complete, only its lines are no longer together. */
		for (size_t i = 0; i < s->fam->nfields; i++)
			for (struct stats_set *t = s; t; t = grouped ? t->next : NULL)
				if (t->fam == s->fam)
					each_cell(t, i, fn, arg);
	}
	pthread_mutex_unlock(&st->lock);
}
