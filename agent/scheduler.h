/*
 * The scheduler: owns the sources (one per backend + path + options),
 * reads each on its own clock in a thread of its own, renders the files of
 * a source, seals them and publishes them to the filesystem, renews,
 * replaces and revokes leases, backs off on failure, and runs on_change
 * actions. FUSE handler threads never wait for it.
 */
#ifndef SECRETFS_SCHEDULER_H
#define SECRETFS_SCHEDULER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "secretfs/backend.h"
#include "secretfs/config.h"

struct sched;
struct fs;
struct monitor;
struct store;
struct stats;

/*
 * Builds the sources of cfg: secrets naming the same backend, path and
 * backend options share one source. backends[i] is the backend built for
 * cfg->backends[i]. Declares every file in fs (absent until fetched).
 * Each source and file registers its metrics in stats (may be NULL). The
 * on_change actions run through mon (monitor.h; may be NULL). All
 * pointers are borrowed and must outlive the scheduler.
 */
int sched_new(const struct config *cfg, struct backend **backends, struct fs *fs,
              struct store *st, struct stats *stats, struct monitor *mon,
              struct sched **out);

/* Starts the scheduler thread; every source is read at once. */
int sched_start(struct sched *s);

/* Waits until every source has been read successfully once, or timeout_ms.
 * Returns the number of sources not yet ready (0: all ready). */
size_t sched_wait_ready(struct sched *s, uint64_t timeout_ms);

/* Like sched_wait_ready, but a source whose first reads failed in a way
 * that retrying will not cure (anything but SFS_ETRANSIENT: not found,
 * denied, malformed) counts as settled too. Returns the number of sources
 * neither ready nor settled. */
size_t sched_wait_settled(struct sched *s, uint64_t timeout_ms);

/* Called by sched_report_missing for each file never published: its name,
 * its source ("backend:path") and why (no secret values; NULL when the
 * reasons were not asked for). */
typedef void (*sched_report_fn)(void *arg, const char *file, const char *source,
                                const char *why);

/* Reports every file that has no content now; returns how many were
 * reported. With reasons only after sched_stop(); without (why is NULL)
 * from any thread at any time, e.g. for a readiness endpoint: the reasons
 * change under a running scheduler, the names do not. */
size_t sched_report_missing(struct sched *s, bool with_reasons, sched_report_fn report,
                            void *arg);

/* Number of sources. */
size_t sched_source_count(const struct sched *s);

/* Number of files whose content is published (served, or written by the
 * directory output); files that were never rendered or whose lease expired
 * do not count. A snapshot while the scheduler runs; exact after
 * sched_stop(). */
size_t sched_published_count(const struct sched *s);

/* Stops the thread (joins it), revoking leases that were waiting for their
 * grace period to end. Idempotent. */
void sched_stop(struct sched *s);

/* Frees; stops first if needed. NULL-safe. */
void sched_free(struct sched *s);

#endif
