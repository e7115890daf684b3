/*
 * The publisher: the files of the config, each declared in the filesystem
 * (fs.h) at start or by a reload (which may also remove them), and the way from a
 * source's fetched value to them: render each file (render.h) in guarded memory, skip one
 * whose keyed hash did not change, seal the rest (store.h) and publish them in one atomic
 * fs_publish, then trigger their on_change actions. Owns the files, the
 * hash key and the actions; the actions have a lock of their own (workers
 * trigger them, the scheduler thread runs them).
 */
#ifndef SECRETFS_PUBLISH_H
#define SECRETFS_PUBLISH_H

#include <stddef.h>
#include <stdint.h>

#include <sodium.h>

#include "secretfs/backend.h"
#include "secretfs/config.h"

#define HASH_LEN crypto_generichash_BYTES

struct monitor;
struct publish;
struct source;
struct fs;
struct store;
struct stats;
struct stats_set;
struct onchange;

/*
 * One file. Its source (source.h) renders it; its state changes only
 * while that source's step runs (one thread at a time), or while a reload
 * applies (no step runs). Owned by the publisher; cs is borrowed from the
 * running config (NULL while removed).
 */
struct sched_file {
	const struct config_secret *cs;
	struct source *source; /* the source it renders from (source.h) */
	size_t fs_id;
	uint64_t version; /* of the published content; 0 = never published; written
	                     atomically (readiness reads it from other threads) */
	unsigned char hash[HASH_LEN]; /* keyed hash of the published content */
	struct onchange *action;      /* shared; NULL when none */
	char *problem;                /* why the last render failed; NULL if it did not */
	/* consul-template files: the source of each secret call of the
	 * template, in its order (ctmpl_secret_at); NULL otherwise. Set by
	 * source_set_attach. */
	struct source **calls;
	struct stats_set *stats; /* file_family; NULL-safe */
	uint32_t ncalls;
	bool removed; /* by a reload; named again, it comes back */
	/* A copy of cs->name (kept while removed), in the file's block: the
	 * members are ordered for size (10 000 files). */
	char name[];
};

/*
 * A publisher for the files of cfg (the mount's defaults), writing to fs and sealing with
 * st; its files and actions register their metrics in stats (may be NULL); the actions
 * run through mon (monitor.h, may be NULL). All borrowed; they must outlive the
 * publisher. Returns 0 or SFS_ENOMEM.
 */
int publish_new(const struct config *cfg, struct fs *fs, struct store *st,
                struct stats *stats, struct monitor *mon, struct publish **out);

/*
 * Adds the file of cs (absent until published): declares it in the fs
 * with its mode and owner and shares its on_change action with the files
 * that have the same one. Sets *out to the file, owned by p. Returns 0,
 * SFS_ENOMEM, or what fs_add_file returned.
 */
int publish_add_file(struct publish *p, const struct config_secret *cs,
                     struct sched_file **out);

/*
 * Renders every file of src from what it read (res: its value, and its
 * reply for consul-template files, which render from the last replies of
 * their other sources too, and wait until each has one) and publishes
 * those that changed, atomically; a file that cannot be rendered keeps its
 * last content (the failure is logged and kept for sched_report_missing).
 * Triggers the on_change action of each file updated (not first
 * published) at now. Returns 0, or SFS_EIO when the changed files could
 * not be published (nothing of them changed; the caller retries). Keeps
 * the value (and the reply, for consul-template files) sealed in src so
 * that a reload renders its files again without reading it.
 */
int publish_source(struct publish *p, struct source *src, const struct fetch_result *res,
                   uint64_t now);

/* Renders the files of src again from the value (and reply) it keeps
 * sealed (a reload added files or changed how they render); unchanged
 * files stay as they are. Returns 0, SFS_ENOTFOUND (no value kept, or no
 * reply for its consul-template files), or as publish_source. */
int publish_source_again(struct publish *p, struct source *src, uint64_t now);

/* From now on the mount's defaults (file mode and owner, mount path for
 * actions) are cfg's; borrowed, must outlive the publisher or the next
 * call. Only while no source step runs. */
void publish_set_config(struct publish *p, const struct config *cfg);

/* A reload removed f: it becomes absent in the fs and undeclared, and is
 * kept (removed) for its name to come back. Returns 0 or what
 * fs_remove_file returned (nothing changed). */
int publish_remove_file(struct publish *p, struct sched_file *f);

/*
 * A reload keeps f under the new secret cs (same name; old_cfg is the
 * config f->cs came from, still alive): a new mode or owner is applied
 * at once (fs_set_file_attrs), the on_change action is looked up again.
 * Returns 1 when cs renders differently from the old one (the caller
 * renders it again), 0 when not, or a negative code (SFS_ENOMEM, or what
 * fs_set_file_attrs returned).
 */
int publish_rebind_file(struct publish *p, const struct config *old_cfg,
                        struct sched_file *f, const struct config_secret *cs);

/* After the files were rebound: each action borrows the config of a file
 * that names it; those no file names are freed. */
void publish_rebind_actions(struct publish *p);

/* Makes every file of src absent (its lease expired), and forgets the
 * reply it kept for consul-template files. */
void publish_withdraw(struct publish *p, struct source *src);

/* Runs the on_change actions that are due at now (onchange_poll); returns
 * the next time one wants to run (UINT64_MAX: none). Scheduler thread. */
uint64_t publish_run_actions(struct publish *p, uint64_t now);

/* Number of files whose content is published now (see
 * sched_published_count). */
size_t publish_count(const struct publish *p);

/* Frees the files and actions (a command still running is left to
 * finish) and wipes the hash key. NULL-safe. */
void publish_free(struct publish *p);

#endif
