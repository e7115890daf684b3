/*
 * on_change actions: a signal to the process named by a pid file, or a
 * command run without a shell. Files that share the same action share one
 * object, so a burst of changes across them runs the action once (trailing
 * debounce, bounded so a steady stream still runs it). Runs only from the
 * scheduler thread. The config block of an action is parsed here too.
 */
#ifndef SECRETFS_ONCHANGE_H
#define SECRETFS_ONCHANGE_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "confval.h"
#include "secretfs/config.h"
#include "secretfs/stats.h"

struct monitor;
struct onchange;

/* The PATH of on_change commands, where a bare command name is found. */
#define ONCHANGE_SAFE_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/*
 * Parses the "on_change" object obj found at key path kp: {"signal": NAME,
 * "pid_file": PATH} or {"command": [argv...]}, optional "debounce". Each
 * problem is reported through cv at its key path. Sets *out to a new
 * action config whenever obj is an object (even with problems: the caller
 * refuses the whole config then); free it with onchange_config_free.
 */
void onchange_parse(struct confval *cv, const json_t *obj, const char *kp,
                    struct config_onchange **out);

/* Frees an action config from onchange_parse. NULL-safe. */
void onchange_config_free(struct config_onchange *cfg);

/* A new action for cfg (borrowed; must outlive the action). Its runs and failures are
 * counted in stats (secretfs_onchange_*_total{action}; stats may be NULL). The monitor
 * mon (borrowed) sends the signal and runs the command, outside the daemon's sandbox, and
 * only for an action of the config it started with; without one (NULL) every run fails
 * (-ENOSYS), logged and counted. Returns NULL when out of memory. */
struct onchange *onchange_new(const struct config_onchange *cfg, struct stats *stats,
                              struct monitor *mon);

/* After a configuration reload: oc borrows cfg (onchange_same as its
 * old one) from now on (the mount path cannot change live). */
void onchange_rebind(struct onchange *oc, const struct config_onchange *cfg);

/* True when cfg describes the same action (same signal and pid file, or the
 * same argv), so the files share it. */
bool onchange_same(const struct onchange *oc, const struct config_onchange *cfg);

/* The same for two action configs (the debounce is not compared). */
bool onchange_config_same(const struct config_onchange *a,
                          const struct config_onchange *b);

/* Records that file changed at now (ms, monotonic). */
void onchange_trigger(struct onchange *oc, const char *file, uint64_t now);

/* Runs the action when due, reaps a finished command, kills one that ran
 * too long. Returns the next time it wants to be called (UINT64_MAX: idle). */
uint64_t onchange_poll(struct onchange *oc, uint64_t now);

/* Frees; a command still running is left to finish (and is not waited for). */
void onchange_free(struct onchange *oc);

#endif
