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
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "secretfs/error.h"
#include "secretfs/hash.h"
#include "secretfs/stats.h"

#define STATS_MAX_FAMILIES 64 /* distinct families stats_each groups */

struct stats_set {
	const struct stats_family *fam;
	struct stats_set *next;
	const size_t *off; /* fam->nfields + 1 slot offsets, shared by the family */
	/* off[fam->nfields] slots, then the label value if any (set_value) */
	_Atomic int64_t v[];
};

/* The slot offsets of one family, computed once: with 10 000 files a copy
 * in every set cost a megabyte. */
struct stats_layout {
	const struct stats_family *fam;
	struct stats_layout *next;
	size_t off[]; /* fam->nfields + 1 */
};

struct stats {
	pthread_mutex_t lock;
	struct stats_set *head, **tail;
	struct stats_layout *layouts;
	/* Open addressing, (family, label value) -> set (NULL: empty), at
	 * most 3/4 full: registering 10 000 sources and files searched the
	 * list before (quadratic). */
	struct stats_set **index;
	size_t index_mask, nsets; /* index size - 1, a power of two */
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
		free(s);
	}
	while (st->layouts) {
		struct stats_layout *l = st->layouts;
		st->layouts = l->next;
		free(l);
	}
	free(st->index);
	pthread_mutex_destroy(&st->lock);
	free(st);
}

/* The label value of s, in its block after v; NULL without a label. */
static const char *set_value(const struct stats_set *s)
{
	return s->fam->label ? (const char *)(const void *)&s->v[s->off[s->fam->nfields]]
	                     : NULL;
}

/* The index slot of fam and label value: FNV-1a of both. */
static size_t index_hash(const struct stats *st, const struct stats_family *fam,
                         const char *value)
{
	uintptr_t f = (uintptr_t)fam;
	const char *v = fam->label && value ? value : "";
	uint64_t h = sfs_fnv1a(sfs_fnv1a(SFS_FNV_BASIS, &f, sizeof f), v, strlen(v));

	return (size_t)(h ^ h >> 29) & st->index_mask;
}

/* Puts s into the index, which has room. Lock held. */
static void index_put(struct stats *st, struct stats_set *s)
{
	size_t i = index_hash(st, s->fam, set_value(s));

	while (st->index[i])
		i = (i + 1) & st->index_mask;
	st->index[i] = s;
}

/* Makes the index bigger when one more set would fill it past 3/4.
 * Returns 0 or SFS_ENOMEM (the index is kept). Lock held. */
static int index_fit(struct stats *st)
{
	size_t size = st->index ? st->index_mask + 1 : 0, want = 64;
	struct stats_set **old = st->index;

	if (st->nsets + 1 <= size / 4 * 3)
		return 0;
	while (st->nsets + 1 > want / 4 * 3)
		want <<= 1;
	st->index = calloc(want, sizeof *st->index);
	if (!st->index) {
		st->index = old;
		return SFS_ENOMEM;
	}
	st->index_mask = want - 1;
	for (struct stats_set *s = st->head; s; s = s->next)
		index_put(st, s);
	free(old);
	return 0;
}

/* The set of fam for label value already registered, or NULL. Lock held. */
static struct stats_set *set_find(struct stats *st, const struct stats_family *fam,
                                  const char *value)
{
	if (!st->index)
		return NULL;
	for (size_t i = index_hash(st, fam, value); st->index[i];
	     i = (i + 1) & st->index_mask) {
		struct stats_set *s = st->index[i];

		if (s->fam == fam &&
		    (!fam->label || strcmp(set_value(s), value ? value : "") == 0))
			return s;
	}
	return NULL;
}

/* The layout of fam, made on first use, or NULL when out of memory or a
 * field's table is malformed. Lock held. */
static const struct stats_layout *layout_of(struct stats *st,
                                            const struct stats_family *fam)
{
	struct stats_layout *l;
	size_t slots = 0;

	for (l = st->layouts; l; l = l->next)
		if (l->fam == fam)
			return l;
	for (size_t i = 0; i < fam->nfields; i++)
		if (!field_ok(&fam->fields[i]))
			return NULL;
	l = malloc(sizeof *l + (fam->nfields + 1) * sizeof l->off[0]);
	if (!l)
		return NULL;
	l->fam = fam;
	for (size_t i = 0; i < fam->nfields; i++) {
		l->off[i] = slots;
		slots += field_cells(&fam->fields[i]) * cell_slots(&fam->fields[i]);
	}
	l->off[fam->nfields] = slots;
	l->next = st->layouts;
	st->layouts = l;
	return l;
}

struct stats_set *stats_register(struct stats *st, const struct stats_family *fam,
                                 const char *value)
{
	const struct stats_layout *l;
	struct stats_set *s;
	size_t slots, vlen = 0;

	if (!st)
		return NULL;
	if (fam->label)
		vlen = strlen(value ? value : "") + 1;
	pthread_mutex_lock(&st->lock);
	s = set_find(st, fam, value);
	if (s)
		goto out;
	l = layout_of(st, fam);
	if (!l || index_fit(st) < 0)
		goto out;
	slots = l->off[fam->nfields];
	s = calloc(1, sizeof *s + slots * sizeof s->v[0] + vlen);
	if (!s)
		goto out;
	s->fam = fam;
	s->off = l->off;
	if (fam->label) {
		memcpy((char *)(void *)&s->v[slots], value ? value : "", vlen);
	}
	for (size_t i = 0; i < slots; i++)
		atomic_init(&s->v[i], 0);
	*st->tail = s;
	st->tail = &s->next;
	st->nsets++;
	index_put(st, s);
out:
	pthread_mutex_unlock(&st->lock);
	return s;
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
	    .field = f, .label = s->fam->label, .value = set_value(s), .ndims = ndims};
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
