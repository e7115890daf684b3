/*
 * Sources (DESIGN §2): one backend object (backend + path + backend
 * options) that one or more files render from, with its lease, version and
 * next due time, and the step machine that reads it: a full read (FETCH),
 * a cheap version probe (PROBE) or a lease renewal (RENEW), each of which
 * plans the next step, backing off on failure. Private to the scheduler.
 */
#ifndef SECRETFS_SOURCE_H
#define SECRETFS_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "scheduler.h"
#include "secretfs/backend.h"
#include "secretfs/log.h"
#include "secretfs/store.h"

struct publish;
struct revoke;
struct sched_file;
struct source_set;
struct stats;
struct stats_set;

enum source_step { STEP_FETCH, STEP_PROBE, STEP_RENEW };

/* The metrics of each source (source_family in source.c); the publisher
 * and the revocation queue count into a source's set too. */
enum {
	SRC_READS,
	SRC_READ_FAILURES,
	SRC_PROBES,
	SRC_PUBLISHES,
	SRC_RENEWALS,
	SRC_RENEW_FAILURES,
	SRC_REPLACEMENTS,
	SRC_REVOCATIONS,
	SRC_REVOKE_FAILURES,
	SRC_EXPIRIES,
	SRC_FAILURES,
	SRC_LAST_SUCCESS,
	SRC_READY,
	SRC_LEASE_EXPIRY,
};

/*
 * A source. Its steps run on one thread at a time (the scheduler thread,
 * or a worker while in_flight); the strings and the files array are owned
 * by the source, the files themselves by the publisher (publish.h).
 */
struct source {
	char *label; /* "backend:path" for logs, in the source's block */
	struct backend *be;
	struct source_key key;
	uint64_t identity_hash; /* of backend + path + options, for sharing */
	/* Its files: &file1 while it has one (no allocation for the usual
	 * source of one file), an owned array once it has more. */
	struct sched_file **files;
	struct sched_file *file1;
	size_t nfiles;
	uint64_t refresh_ms;
	bool refresh_explicit; /* a file of it sets "refresh" */
	bool issued_logged;    /* "issued once, not again" said */
	bool rerender;         /* a reload gave it new or changed files */
	bool ready;            /* read successfully at least once */
	bool settled;          /* ready, or failed in a way retrying will not cure */
	bool feeds_templates;  /* some of its files are consul-template files */
	bool renewable;        /* the current lease */
	bool in_flight;        /* a worker runs its step (the scheduler's pool lock) */
	/* The members are ordered for size: with 10 000 sources every 8
	 * bytes of padding cost 80 KB. */
	enum source_step step;
	unsigned attempt; /* consecutive failures */
	uint64_t due;
	/* Heap strings, "" (never NULL) when unset, set with source_text_set
	 * (as issued_id): with 10 000 sources, fixed buffers cost 700 bytes
	 * each. */
	const char *problem; /* why the last attempt failed (no secret values) */
	const char *version;

	/* The current lease, if the value is leased. */
	const char *lease_id;
	uint64_t lease_ms;      /* as first granted */
	uint64_t lease_expires; /* monotonic ms */
	uint64_t lease_issued;  /* monotonic ms */
	uint64_t auth_gen;      /* login the lease was made under */
	uint64_t deadline;      /* when that login's leases die; UINT64_MAX unknown */
	/* The issued value served (revoke_on_replace): revoked after the grace
	 * period once a new one replaces it (fetch_result.revoke_id). */
	const char *issued_id;

	/* The last value read, sealed (publish_source keeps it), so a reload
	 * renders new or changed files without reading the source again. */
	struct store_slot value;
	/* The whole last reply of the backend (fetch_result.reply), sealed:
	 * consul-template files render from it and from those of their other
	 * sources (publish.c). Written and read under the publisher's
	 * template lock while some of its files are consul-template files
	 * (feeds_templates). Empty: none yet, or withdrawn. */
	struct store_slot reply;
	struct stats_set *stats; /* source_family; NULL-safe */
};

/* The log fields (log.h) naming a source and its current lease, if any;
 * a compound literal that lives until the end of the enclosing block. */
#define SOURCE_FIELDS(src, ev)                                                           \
	(&(struct log_fields){.event = (ev),                                             \
	                      .source = (src)->label,                                    \
	                      .backend = (src)->be->name,                                \
	                      .lease = (src)->lease_id[0] ? (src)->lease_id : NULL})

/*
 * A new, empty set. Its sources' steps publish to p
 * and hand replaced leases to rq; a file's "backend" is looked up among
 * backends; each source registers its metrics in stats (may be NULL). All
 * borrowed; they must outlive the set. Returns 0 or SFS_ENOMEM.
 */
int source_set_new(struct backend **backends, size_t nbackends, struct publish *p,
                   struct revoke *rq, struct stats *stats, struct source_set **out);

/*
 * Attaches f (borrowed; must outlive the set) to the source of its secret,
 * made on first use: secrets naming the same backend, path and backend
 * options share one. A consul-template file is attached to the source of
 * each secret call of its template (f->calls; f->source is the first).
 * The source is read as often as the most frequent "refresh" of its files
 * asks. Sets f->source. Before the sources run, or while a reload applies
 * (no step runs; a new source is due at once). Returns 0, SFS_ENOMEM, or
 * SFS_EINVAL (no such backend).
 */
int source_set_attach(struct source_set *set, struct sched_file *f);

/* Whether src is the source of key of backend (strings of a config). */
bool source_is(const struct source *src, const char *backend,
               const struct source_key *key);

/* ---- reloads: only while no step runs ---------------------------------- */

/* The backends a file's "backend" names from now on (borrowed). */
void source_set_set_backends(struct source_set *set, struct backend **backends,
                             size_t nbackends);

/* Takes f off its source, or a consul-template file off each of its
 * sources (f->source becomes NULL, f->calls too). The source may be left
 * without files: source_set_prune ends those. */
void source_set_detach(struct source_set *set, struct sched_file *f);

/* Ends every source left without files: its lease goes to the revocation
 * queue, revoked after its backend's grace period (when the backend
 * revokes), and the source is freed. Returns how many ended. */
size_t source_set_prune(struct source_set *set, uint64_t now);

/* After the files were rebound to a new config: each source borrows its
 * key from one of its files and is read as often as the most frequent
 * "refresh" of its files now asks (the next read stays when it was due). */
void source_set_rebind(struct source_set *set);

/* Number of sources. */
size_t source_set_count(const struct source_set *set);

/* Source i (below source_set_count), owned by set. */
struct source *source_set_get(struct source_set *set, size_t i);

/*
 * Runs the step src is due for (read, probe or renew), publishes what it
 * read, and plans its next step (src->step and src->due): on failure with
 * capped exponential backoff, making its files absent once its lease has
 * expired. Marks it ready or settled for source_set_wait. Blocks on the
 * network; one thread per source at a time.
 */
void source_run(struct source_set *set, struct source *src, uint64_t now);

/* Leases die with the login that made them: when src's backend has
 * learnt when that is, brings the replacement forward. Only while src is
 * idle. */
void source_check_lease_deadline(struct source *src, uint64_t now);

/* Its backend saw a change: read src at now, unless a lease renewal is
 * due (a renewal keeps the value). Only while src is idle. */
void source_read_now(struct source *src, uint64_t now);

/* Waits until every source has been read successfully once (settled:
 * or failed in a way retrying will not cure), until timeout_ms, or until
 * source_set_stop_waits. Any thread. Returns how many are short. */
size_t source_set_wait(struct source_set *set, bool settled, uint64_t timeout_ms);

/* Ends the waits of source_set_wait, now and from now on. */
void source_set_stop_waits(struct source_set *set);

/* At shutdown, hands each current lease whose backend is to revoke it on
 * shutdown (revoke_on_shutdown) to the revocation queue. Only once no
 * source runs. */
void source_set_revoke_leases(struct source_set *set);

/* Calls report for each file never published (see sched_report_missing);
 * returns how many. With reasons only once no source runs. */
size_t source_set_report_missing(const struct source_set *set, bool with_reasons,
                                 sched_report_fn report, void *arg);

/* Frees the sources (not their files, nor anything borrowed). NULL-safe. */
void source_set_free(struct source_set *set);

#endif
