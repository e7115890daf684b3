/*
 * The daemon's counters, gauges and histograms, in one registry: per
 * source, per file, per backend and for the outputs. A module describes a
 * family of metrics once (a static table of fields and one label key, e.g.
 * "source"), then registers one set per labelled thing (one per source): a
 * set is one label value and an array of values, so 10 000 sources cost a
 * few bytes per metric, not an allocation each.
 *
 * A field may carry further labels of its own (dims) whose values are a
 * fixed list given in the table, e.g. "reason" in {"denied", "not_found",
 * ...}: it then holds one cell per combination, so the label tuples of a
 * family are bounded by construction. A histogram field holds, per cell,
 * one count per bucket of its fixed bounds (plus +Inf) and the sum.
 *
 * Names follow Prometheus conventions (secretfs_<what>_total for counters,
 * base units). Label values come only from the config (file names,
 * "backend:path" source names, backend names) and the tables: bounded
 * cardinality, never a secret, token or lease id.
 *
 * Locking rule: registering a set takes the registry's lock (it happens
 * while sources, files and backends are built); updating a value is one or
 * two lock-free atomic operations, safe from any thread including FUSE
 * handlers; reading (stats_total, stats_each) takes the registry's lock
 * only to walk the sets and reads each value atomically.
 */
#ifndef SECRETFS_STATS_H
#define SECRETFS_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct stats;
struct stats_set;

enum stats_kind { STATS_COUNTER, STATS_GAUGE, STATS_HISTOGRAM };

#define STATS_MAX_DIMS 2    /* labels of a field besides its family's */
#define STATS_MAX_BOUNDS 24 /* buckets of a histogram, +Inf not counted */

/* A label of a field with its fixed values, one cell per value. */
struct stats_dim {
	const char *key;           /* "reason" */
	const char *const *values; /* NULL-terminated, at least one */
};

struct stats_field {
	enum stats_kind kind;
	const char *name; /* "secretfs_source_reads_total" */
	const char *help; /* one line, for # HELP */
	/* Optional: up to STATS_MAX_DIMS labels, ended by an entry whose key
	 * is NULL; NULL for none. Cell index of values (i0, i1) is
	 * i0 * count(values of dim 1) + i1. */
	const struct stats_dim *dims;
	/* Histograms: nbounds ascending upper bounds, in the unit observed
	 * (e.g. microseconds); unit scales them and the sum for export (1e-6
	 * for seconds). */
	const int64_t *bounds;
	size_t nbounds;
	double unit;
	/* Rarely moves (a source's lease renewals): the family's cold fields
	 * without dims share one block of cells allocated at the first event
	 * of any of them; until then they read, and export, zero. */
	bool cold;
};

/* Static description of a family; must outlive the registry. */
struct stats_family {
	const struct stats_field *fields;
	size_t nfields;
	const char *label; /* label key ("source"), or NULL for a single set */
};

/* A new, empty registry. Returns 0 or SFS_ENOMEM. */
int stats_new(struct stats **out);

/* Frees the registry and every set in it. NULL-safe. */
void stats_free(struct stats *st);

/*
 * Registers a set of fam's metrics for label value (ignored when the
 * family has no label), all zero. Returns a handle owned by the registry,
 * valid until stats_free, or NULL when out of memory, st is NULL or a
 * field's table is malformed (more dims or bounds than allowed): updates
 * through a NULL set do nothing, so a missing metric never stops the
 * daemon. Registering fam and value again returns the set registered
 * first: one series per label (a file or source a reload removed and a
 * later one of the same name count on in it).
 */
struct stats_set *stats_register(struct stats *st, const struct stats_family *fam,
                                 const char *value);

/* Updates field i of set (cell 0 for fields with dims). NULL-safe; an
 * index or cell out of range, or the wrong kind, does nothing. */
void stats_inc(struct stats_set *set, size_t i);
void stats_add(struct stats_set *set, size_t i, uint64_t n);
void stats_set_value(struct stats_set *set, size_t i, int64_t v);

/* The same on cell `cell` of a field with dims. */
void stats_inc_at(struct stats_set *set, size_t i, size_t cell);
void stats_add_at(struct stats_set *set, size_t i, size_t cell, uint64_t n);

/* Counts observation v (in the field's unit) in histogram field i. */
void stats_observe(struct stats_set *set, size_t i, int64_t v);
void stats_observe_at(struct stats_set *set, size_t i, size_t cell, int64_t v);

/* The current value of field i summed over its cells; a histogram's count
 * of observations (0 for a NULL set). */
int64_t stats_get(const struct stats_set *set, size_t i);

/* The value of one cell of field i (a histogram's count). */
int64_t stats_get_at(const struct stats_set *set, size_t i, size_t cell);

/* The sum of the metric called name over every set that has it. */
int64_t stats_total(struct stats *st, const char *name);

/* One series as stats_each hands it out; pointers valid during the call. */
struct stats_sample {
	const struct stats_field *field;
	const char *label, *value; /* the family's label; NULL without one
	                              (value unescaped: escaping is the
	                              exporter's business) */
	size_t ndims;
	const char *dim_key[STATS_MAX_DIMS], *dim_value[STATS_MAX_DIMS];
	int64_t v; /* counter, gauge; a histogram's count */
	/* Histograms: cumulative counts of the field's nbounds bounds (the
	 * +Inf bucket is v) and the sum, in the field's unit. */
	const int64_t *buckets;
	int64_t sum;
};

typedef void (*stats_fn)(void *arg, const struct stats_sample *s);

/*
 * Calls fn for each series, grouped by metric so an exporter writes each
 * name's lines together: families in order of their first registration,
 * their fields in table order, then the sets of the family in registration
 * order, then the cells. Cells of a field with dims are skipped while
 * zero (a counter appears at its first event, bounding what a healthy
 * daemon exports); plain fields are always handed out.
 */
void stats_each(struct stats *st, stats_fn fn, void *arg);

#endif
