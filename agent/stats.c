/*
 * The metrics registry (see stats.h): a list of sets, each a label value
 * and an array of atomic 64-bit slots laid out as its family says. A
 * counter or gauge takes one slot per cell; a histogram takes, per cell,
 * one slot per bucket (not cumulative: an observation touches one) and one
 * for the sum. A field with dims takes one slot only, the address of its
 * cells, allocated at the field's first event: such cells are exported
 * only once non-zero, and most (a source's failures by reason) never move.
 *
 * Sets are never freed before the registry, so they are cut from blocks
 * of STATS_BLOCK bytes rather than allocated one by one: with 10 000
 * files, a malloc per set cost its header and rounding 30 000 times. The
 * blocks, oldest first, hold the sets in registration order (walked with
 * struct set_it); an index of chains finds a set by family and label.
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
#define STATS_BLOCK 16384     /* bytes of a block of sets */

_Static_assert(sizeof(void *) <= sizeof(int64_t), "a slot holds an address");

struct stats_set {
	const struct stats_layout *layout; /* of its family, shared */
	struct stats_set *chain;           /* the next of its index bucket */
	/* layout->off[fam->nfields] slots, then the label value if any
	 * (set_value) */
	_Atomic int64_t v[];
};

/* A block the sets are cut from; blocks are freed with the registry. */
struct stats_block {
	struct stats_block *next; /* newer */
	size_t used, size;        /* bytes of data */
	_Alignas(16) unsigned char data[];
};

/* The slot offsets of one family, computed once: with 10 000 files a copy
 * in every set cost a megabyte. */
struct stats_layout {
	const struct stats_family *fam;
	struct stats_layout *next;
	/* The slot of the address of the cold fields' block (field_cold) and
	 * its slots (0: no cold field); a cold field's off is into it. */
	size_t cold_at, ncold;
	size_t off[]; /* fam->nfields + 1 */
};

struct stats {
	pthread_mutex_t lock;
	struct stats_layout *layouts;
	struct stats_block *blocks, *last; /* oldest first */
	/* Buckets of chains, (family, label value) -> set, at most 2 sets a
	 * bucket on average: registering 10 000 sources and files searched
	 * the list before (quadratic). */
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

/* A field kept in its family's cold block (stats.h); one with dims has
 * lazy cells of its own. */
static bool field_cold(const struct stats_field *f)
{
	return f->cold && field_ndims(f) == 0;
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
	*out = st;
	return 0;
}

/* The block of cells whose address slot `at` of s holds (a field with
 * dims, or the cold fields): NULL until its first event. */
static _Atomic int64_t *lazy_cells(const struct stats_set *s, size_t at)
{
	int64_t p =
	    atomic_load_explicit((_Atomic int64_t *)&s->v[at], memory_order_acquire);

	return (_Atomic int64_t *)(uintptr_t)p;
}

/* The label value of s, in its block after v; NULL without a label. */
static const char *set_value(const struct stats_set *s)
{
	const struct stats_family *fam = s->layout->fam;

	return fam->label
	           ? (const char *)(const void *)&s->v[s->layout->off[fam->nfields]]
	           : NULL;
}

/* The bytes s takes in its block. */
static size_t set_size(const struct stats_set *s)
{
	const struct stats_family *fam = s->layout->fam;
	size_t n = sizeof *s + s->layout->off[fam->nfields] * sizeof s->v[0];

	if (fam->label)
		n += strlen(set_value(s)) + 1;
	return (n + 15) & ~(size_t)15;
}

/* A position among the sets, in registration order. */
struct set_it {
	const struct stats_block *b;
	size_t at; /* bytes into b's data */
};

/* The set at it, or NULL past the last. */
static struct stats_set *it_set(const struct set_it *it)
{
	return it->b && it->at < it->b->used
	           ? (struct stats_set *)(void *)&it->b->data[it->at]
	           : NULL;
}

/* The first set of st, or NULL. */
static struct stats_set *it_first(const struct stats *st, struct set_it *it)
{
	it->b = st->blocks;
	it->at = 0;
	return it_set(it);
}

/* The set after the one at it, or NULL. */
static struct stats_set *it_next(struct set_it *it)
{
	it->at += set_size(it_set(it));
	if (it->at >= it->b->used) {
		it->b = it->b->next;
		it->at = 0;
	}
	return it_set(it);
}

void stats_free(struct stats *st)
{
	struct set_it it;

	if (!st)
		return;

	for (struct stats_set *s = it_first(st, &it); s; s = it_next(&it)) {
		for (size_t i = 0; i < s->layout->fam->nfields; i++)
			if (field_ndims(&s->layout->fam->fields[i]))
				free((void *)lazy_cells(s, s->layout->off[i]));
		if (s->layout->ncold)
			free((void *)lazy_cells(s, s->layout->cold_at));
	}
	while (st->blocks) {
		struct stats_block *b = st->blocks;
		st->blocks = b->next;
		free(b);
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

/* The index slot of fam and label value: FNV-1a of both. */
static size_t index_hash(const struct stats *st, const struct stats_family *fam,
                         const char *value)
{
	uintptr_t f = (uintptr_t)fam;
	const char *v = fam->label && value ? value : "";
	uint64_t h = sfs_fnv1a(sfs_fnv1a(SFS_FNV_BASIS, &f, sizeof f), v, strlen(v));

	return (size_t)(h ^ h >> 29) & st->index_mask;
}

/* Puts s into the index. Lock held. */
static void index_put(struct stats *st, struct stats_set *s)
{
	size_t i = index_hash(st, s->layout->fam, set_value(s));

	s->chain = st->index[i];
	st->index[i] = s;
}

/* Makes the index bigger when one more set would make its chains longer
 * than 2 on average. Returns 0 or SFS_ENOMEM (the index is kept). Lock
 * held. */
static int index_fit(struct stats *st)
{
	size_t size = st->index ? st->index_mask + 1 : 0, want = 64;
	struct stats_set **old = st->index;
	struct set_it it;

	if (st->nsets + 1 <= size * 2)
		return 0;
	while (st->nsets + 1 > want * 2)
		want <<= 1;
	st->index = calloc(want, sizeof *st->index);
	if (!st->index) {
		st->index = old;
		return SFS_ENOMEM;
	}
	st->index_mask = want - 1;
	for (struct stats_set *s = it_first(st, &it); s; s = it_next(&it))
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
	for (struct stats_set *s = st->index[index_hash(st, fam, value)]; s;
	     s = s->chain) {
		if (s->layout->fam == fam &&
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
	l->ncold = 0;
	for (size_t i = 0; i < fam->nfields; i++) {
		const struct stats_field *f = &fam->fields[i];

		if (field_cold(f)) {
			l->off[i] = l->ncold;
			l->ncold += field_cells(f) * cell_slots(f);
			continue;
		}
		l->off[i] = slots;
		slots += field_ndims(f) ? 1 : field_cells(f) * cell_slots(f);
	}
	l->cold_at = slots;
	slots += l->ncold ? 1 : 0;
	l->off[fam->nfields] = slots;
	l->next = st->layouts;
	st->layouts = l;
	return l;
}

/* size bytes, zeroed and aligned for a set, from the newest block or a
 * new one; NULL when out of memory. Lock held. */
static void *block_cut(struct stats *st, size_t size)
{
	struct stats_block *b = st->last;

	size = (size + 15) & ~(size_t)15;
	if (!b || b->size - b->used < size) {
		size_t data = size > STATS_BLOCK ? size : STATS_BLOCK;

		b = calloc(1, sizeof *b + data);
		if (!b)
			return NULL;
		b->size = data;
		if (st->last)
			st->last->next = b;
		else
			st->blocks = b;
		st->last = b;
	}
	b->used += size;
	return b->data + b->used - size;
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
	s = block_cut(st, sizeof *s + slots * sizeof s->v[0] + vlen);
	if (!s)
		goto out;
	s->layout = l;
	if (fam->label) {
		memcpy((char *)(void *)&s->v[slots], value ? value : "", vlen);
	}
	for (size_t i = 0; i < slots; i++)
		atomic_init(&s->v[i], 0);
	st->nsets++;
	index_put(st, s);
out:
	pthread_mutex_unlock(&st->lock);
	return s;
}

/* The block of n cells whose address slot `at` of set holds, allocated
 * (zero) if none yet; NULL when out of memory. Lock-free: of two threads
 * racing, the one that installs its cells first wins, the other frees its
 * own. */
static _Atomic int64_t *lazy_cells_make(const struct stats_set *set, size_t at, size_t n)
{
	_Atomic int64_t *slot = (_Atomic int64_t *)&set->v[at];
	_Atomic int64_t *c = lazy_cells(set, at);
	int64_t none = 0;

	if (c)
		return c;
	c = malloc(n * sizeof *c);
	if (!c)
		return NULL;
	for (size_t k = 0; k < n; k++)
		atomic_init(&c[k], 0);
	if (atomic_compare_exchange_strong_explicit(slot, &none, (int64_t)(uintptr_t)c,
	                                            memory_order_acq_rel,
	                                            memory_order_acquire))
		return c;
	free((void *)c);
	return (_Atomic int64_t *)(uintptr_t)none;
}

/* The first slot of cell of field i, or NULL when out of range or not of
 * the kind wanted (-1: any), or (for a field with dims or a cold one)
 * when it has no cells yet and make is false or they cannot be
 * allocated. */
static _Atomic int64_t *cell_at(const struct stats_set *set, size_t i, size_t cell,
                                int kind, bool make)
{
	const struct stats_layout *l;
	const struct stats_field *f;
	_Atomic int64_t *c;
	size_t at, n;

	if (!set || i >= set->layout->fam->nfields)
		return NULL;
	l = set->layout;
	f = &l->fam->fields[i];
	if ((kind >= 0 && (int)f->kind != kind) || cell >= field_cells(f))
		return NULL;
	if (field_cold(f)) {
		at = l->cold_at;
		n = l->ncold;
	} else if (field_ndims(f)) {
		at = l->off[i];
		n = field_cells(f) * cell_slots(f);
	} else {
		return (_Atomic int64_t *)&set->v[l->off[i] + cell * cell_slots(f)];
	}
	c = make ? lazy_cells_make(set, at, n) : lazy_cells(set, at);
	if (!c)
		return NULL;
	return &c[(field_cold(f) ? l->off[i] : 0) + cell * cell_slots(f)];
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
	/* Adding 0 allocates no lazy cells: they would read 0 anyway. */
	_Atomic int64_t *c = cell_at(set, i, cell, -1, n != 0);

	if (c && set->layout->fam->fields[i].kind != STATS_HISTOGRAM)
		atomic_fetch_add_explicit(c, (int64_t)n, memory_order_relaxed);
}

void stats_set_value(struct stats_set *set, size_t i, int64_t v)
{
	/* Setting 0 allocates no lazy cells: they would read 0 anyway. */
	_Atomic int64_t *c = cell_at(set, i, 0, -1, v != 0);

	if (c && set->layout->fam->fields[i].kind != STATS_HISTOGRAM)
		atomic_store_explicit(c, v, memory_order_relaxed);
}

void stats_observe(struct stats_set *set, size_t i, int64_t v)
{
	stats_observe_at(set, i, 0, v);
}

void stats_observe_at(struct stats_set *set, size_t i, size_t cell, int64_t v)
{
	_Atomic int64_t *c = cell_at(set, i, cell, STATS_HISTOGRAM, true);
	const struct stats_field *f;
	size_t b = 0;

	if (!c)
		return;
	f = &set->layout->fam->fields[i];
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
	const _Atomic int64_t *c = cell_at(set, i, cell, -1, false);
	const struct stats_field *f;
	int64_t n = 0;

	if (!c)
		return 0;
	f = &set->layout->fam->fields[i];
	if (f->kind != STATS_HISTOGRAM)
		return load(c);
	for (size_t b = 0; b <= f->nbounds; b++)
		n += load(&c[b]);
	return n;
}

int64_t stats_get(const struct stats_set *set, size_t i)
{
	int64_t sum = 0;

	if (!set || i >= set->layout->fam->nfields)
		return 0;
	for (size_t c = 0; c < field_cells(&set->layout->fam->fields[i]); c++)
		sum += stats_get_at(set, i, c);
	return sum;
}

int64_t stats_total(struct stats *st, const char *name)
{
	struct set_it it;
	int64_t sum = 0;

	if (!st)
		return 0;
	pthread_mutex_lock(&st->lock);
	for (struct stats_set *s = it_first(st, &it); s; s = it_next(&it))
		for (size_t i = 0; i < s->layout->fam->nfields; i++)
			if (strcmp(s->layout->fam->fields[i].name, name) == 0)
				sum += stats_get(s, i);
	pthread_mutex_unlock(&st->lock);
	return sum;
}

/* Hands out every cell of field i of set. */
static void each_cell(const struct stats_set *s, size_t i, stats_fn fn, void *arg)
{
	const struct stats_field *f = &s->layout->fam->fields[i];
	size_t ndims = field_ndims(f), cells = field_cells(f);
	struct stats_sample smp = {.field = f,
	                           .label = s->layout->fam->label,
	                           .value = set_value(s),
	                           .ndims = ndims};
	int64_t buckets[STATS_MAX_BOUNDS];

	static _Atomic int64_t zeros[STATS_MAX_BOUNDS + 2];

	for (size_t c = 0; c < cells; c++) {
		const _Atomic int64_t *slot = cell_at(s, i, c, -1, false);
		size_t rest = c;

		if (!slot && ndims)
			return; /* no event yet: every cell zero, skipped */
		if (!slot)
			slot = zeros; /* a cold field before the first event */

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
	struct set_it it, jt;

	if (!st)
		return;
	pthread_mutex_lock(&st->lock);
	for (struct stats_set *s = it_first(st, &it); s; s = it_next(&it)) {
		const struct stats_family *fam = s->layout->fam;
		size_t k = 0;
		bool grouped;

		while (k < nseen && seen[k] != fam)
			k++;
		if (k < nseen)
			continue;
		grouped = nseen < STATS_MAX_FAMILIES;
		if (grouped)
			seen[nseen++] = fam;
		/* Past the limit a family is walked once per set: still
		 * complete, only its lines are no longer together. */
		for (size_t i = 0; i < fam->nfields; i++) {
			jt = it;
			for (struct stats_set *t = s; t;
			     t = grouped ? it_next(&jt) : NULL)
				if (t->layout->fam == fam)
					each_cell(t, i, fn, arg);
		}
	}
	pthread_mutex_unlock(&st->lock);
}
