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

#include "secretfs/backend.h"
#include "secretfs/log.h"

struct sched_file;
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
};

/*
 * A source. Its steps run on one thread at a time (the scheduler thread,
 * or a worker while in_flight); the strings and the files array are owned
 * by the source, the files themselves by the publisher (publish.h).
 */
struct source {
	char *label; /* "backend:path" for logs */
	struct backend *be;
	struct source_key key;
	char *identity; /* backend + path + options, for sharing */
	struct sched_file **files;
	size_t nfiles;
	uint64_t refresh_ms;
	bool refresh_explicit; /* a file of it sets "refresh" */
	bool issued_logged;    /* "issued once, not again" said */

	enum source_step step;
	uint64_t due;
	unsigned attempt;  /* consecutive failures */
	bool ready;        /* read successfully at least once */
	bool settled;      /* ready, or failed in a way retrying will not cure */
	char problem[320]; /* why the last attempt failed (no secret values) */
	char version[128];

	/* The current lease, if the value is leased. */
	char lease_id[256];
	bool renewable;
	uint64_t lease_ms;      /* as first granted */
	uint64_t lease_expires; /* monotonic ms */
	uint64_t lease_issued;  /* monotonic ms */
	uint64_t auth_gen;      /* login the lease was made under */
	uint64_t deadline;      /* when that login's leases die; UINT64_MAX unknown */

	bool in_flight;          /* a worker runs its step (the scheduler's pool lock) */
	struct stats_set *stats; /* source_family; NULL-safe */
};

/* The log fields (log.h) naming a source and its current lease, if any;
 * a compound literal that lives until the end of the enclosing block. */
#define SOURCE_FIELDS(src, ev)                                                           \
	(&(struct log_fields){.event = (ev),                                             \
	                      .source = (src)->label,                                    \
	                      .backend = (src)->be->name,                                \
	                      .lease = (src)->lease_id[0] ? (src)->lease_id : NULL})

#endif
