/*
 * Live configuration reload: on SIGHUP, and when the config file changes
 * (its directory is watched with inotify, so an edit, an atomic rename
 * and a Kubernetes ConfigMap "..data" symlink swap are all seen), the file
 * is read until its content is stable, validated with the code --check
 * uses, compared with the running config, and applied as a difference by
 * the scheduler (sched_apply_config): sources whose backend, path and
 * options did not change keep their values and leases. What cannot change
 * live (the mount, the listeners, the audit) is refused with a message
 * naming the key path, and the running config stays; so it does for an
 * invalid file. Each attempt is counted in
 * secretfs_config_reloads_total{result="ok"|"failed"}.
 *
 * Runs on the scheduler thread, as its hook (scheduler.h).
 */
#ifndef SECRETFS_RELOAD_H
#define SECRETFS_RELOAD_H

#include "envstash.h"
#include "scheduler.h"
#include "secretfs/backend.h"
#include "secretfs/config.h"

struct reload;
struct stats;
struct store;

/* What a reload needs from the running daemon; all borrowed, they must
 * outlive the reload. */
struct reload_env {
	const char *path;          /* the config file, as given on the command line */
	const struct config *cfg;  /* the config the daemon started with */
	struct backend **backends; /* built for cfg->backends, in order */
	struct sched *sched;
	struct store *store;
	struct stats *stats;
	struct envstash *envstash;
	int log_level; /* enum log_level set by the command line or environment, or -1 */
	int log_json;  /* 0 or 1 set there, or -1 */
};

/*
 * A reload for env: watches the config file's directory (a warning when it
 * cannot: SIGHUP still works), registers its metric, and becomes the
 * scheduler's hook (sched_set_hook: call before sched_start). Returns 0,
 * SFS_ENOMEM or SFS_EIO.
 */
int reload_new(const struct reload_env *env, struct reload **out);

/* Makes SIGHUP ask for a reload (until reload_free). After
 * fs_install_signals, which ignores SIGHUP. */
void reload_catch_signal(struct reload *r);

/* Frees the configs and backends reloads made (those of env stay the
 * caller's); only after sched_free. SIGHUP is ignored again. NULL-safe. */
void reload_free(struct reload *r);

#endif
