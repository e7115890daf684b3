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

/* Number of sources. Any thread. */
size_t sched_source_count(struct sched *s);

/* Number of files of the running config. Any thread. */
size_t sched_file_count(struct sched *s);

/* Number of files whose content is published (served, or written by the
 * directory output); files that were never rendered or whose lease expired
 * do not count. A snapshot while the scheduler runs; exact after
 * sched_stop(). */
size_t sched_published_count(struct sched *s);

/* Descriptors a hook may have polled by the scheduler thread. */
#define SCHED_HOOK_FDS 2

/*
 * Work of another module's that runs on the scheduler thread, between
 * steps (a configuration reload: reload.h). run is called when its last
 * answer is due or one of fd (-1: none) is readable; it returns when it
 * wants to run next (UINT64_MAX: only on a descriptor).
 */
struct sched_hook {
	int fd[SCHED_HOOK_FDS];
	uint64_t (*run)(void *arg, uint64_t now);
	void *arg;
};

/* Sets the hook (copied); before sched_start. */
void sched_set_hook(struct sched *s, const struct sched_hook *hook);

/*
 * Whether cfg could replace old (the running config) live as far as the
 * files go: a new name that clashes with the running mount's tree, and,
 * for an output that cannot change its files once mounted (directory),
 * any file added, removed or given another mode or owner, are problems,
 * one diag each at its key path. Returns 0 or SFS_EINVAL. Any thread.
 */
int sched_check_config(struct sched *s, const struct config *old,
                       const struct config *cfg, struct diag *d);

/* What sched_apply_config did. */
struct sched_applied {
	size_t added, removed, changed; /* files */
	size_t sources_kept, sources_new, sources_ended;
};

/*
 * Applies cfg (checked with sched_check_config) in place of old, which
 * must stay alive until this returns; from then on every file borrows
 * cfg and backends[0..nbackends) (cfg's, in its order: those kept are
 * the same objects as before, the others new) replace the running ones.
 * A source whose backend object, path and options are unchanged keeps
 * its value, version and lease and is not read; files added to it or
 * rendered differently are rendered from its kept value. Files removed
 * become absent; sources no file uses end and their leases are revoked
 * after the grace period; sources of backends rebuilt or gone end too,
 * and their files are read from new sources (serving their last content
 * until then). Runs only on the scheduler thread (from the hook), after
 * the steps in flight end. Returns 0, or SFS_ENOMEM / an fs error when it
 * stopped part-way (the files then borrow from both configs).
 */
int sched_apply_config(struct sched *s, const struct config *old,
                       const struct config *cfg, struct backend **backends,
                       size_t nbackends, struct sched_applied *out);

/* Stops the thread (joins it), revoking leases that were waiting for their
 * grace period to end. Idempotent. */
void sched_stop(struct sched *s);

/* Frees; stops first if needed. NULL-safe. */
void sched_free(struct sched *s);

#endif
