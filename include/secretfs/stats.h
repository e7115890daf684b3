/*
 * The daemon's counters and gauges, in one registry: per source, per file,
 * per backend and for the outputs. A module describes a family of metrics
 * once (a static table of fields and one label key, e.g. "source"), then
 * registers one set per labelled thing (one per source): a set is one
 * label value and an array of values, so 10 000 sources cost a few bytes
 * per metric, not an allocation each.
 *
 * Names follow Prometheus conventions (secretfs_<what>_total for counters,
 * base units). Label values come only from the config (file names,
 * "backend:path" source names, backend names): bounded cardinality, never
 * a secret, token or lease id.
 *
 * Locking rule: registering a set takes the registry's lock (it happens
 * while sources, files and backends are built); updating a value is one
 * lock-free atomic operation, safe from any thread including FUSE
 * handlers; reading (stats_total, stats_each) takes the registry's lock
 * only to walk the sets and reads each value atomically.
 */
#ifndef SECRETFS_STATS_H
#define SECRETFS_STATS_H

#include <stddef.h>
#include <stdint.h>

struct stats;
struct stats_set;

enum stats_kind { STATS_COUNTER, STATS_GAUGE };

struct stats_field {
	enum stats_kind kind;
	const char *name; /* "secretfs_source_reads_total" */
	const char *help; /* one line, for # HELP */
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
 * valid until stats_free, or NULL when out of memory or st is NULL:
 * updates through a NULL set do nothing, so a missing metric never stops
 * the daemon.
 */
struct stats_set *stats_register(struct stats *st, const struct stats_family *fam,
                                 const char *value);

/* Updates field i of set. NULL-safe. */
void stats_inc(struct stats_set *set, size_t i);
void stats_add(struct stats_set *set, size_t i, uint64_t n);
void stats_set_value(struct stats_set *set, size_t i, int64_t v);

/* The current value of field i (0 for a NULL set). */
int64_t stats_get(const struct stats_set *set, size_t i);

/* The sum of the metric called name over every set that has it. */
int64_t stats_total(struct stats *st, const char *name);

/* Called by stats_each for each value, sets in registration order and
 * fields in table order. label and value are NULL when the family has no
 * label (value unescaped: escaping is the exporter's business). */
typedef void (*stats_fn)(void *arg, const struct stats_field *field, const char *label,
                         const char *value, int64_t v);

void stats_each(struct stats *st, stats_fn fn, void *arg);

#endif
