/*
 * The telemetry listener: an HTTP server (libmicrohttpd, loaded with
 * dlopen only when "telemetry" is configured) that answers GET and HEAD on
 * /metrics (Prometheus text format 0.0.4, from the stats registry and
 * /proc/self), /healthz (liveness: the scheduler loop and the mount) and
 * /readyz (every configured file served), and nothing else. It runs on
 * threads of its own, never on those that answer FUSE requests, with
 * bounded connections, request size and time.
 */
#ifndef SECRETFS_TELEMETRY_H
#define SECRETFS_TELEMETRY_H

#include <jansson.h>

#include "secretfs/config.h"
#include "secretfs/diag.h"

struct sched;
struct stats;
struct telemetry;

/*
 * Checks the "telemetry" object at keypath kp and builds *out from it.
 * Returns 0, SFS_EINVAL (one diag per problem: the key path and why) or
 * SFS_ENOMEM. Touches neither the network nor the filesystem.
 */
int telemetry_config_parse(const json_t *obj, const char *kp, struct diag *d,
                           struct config_telemetry **out);

/* Frees what telemetry_config_parse built. NULL-safe. */
void telemetry_config_free(struct config_telemetry *tc);

/*
 * Binds the listening socket of cfg->telemetry now, so a busy address is a
 * start-up error: returns 0 and a listener that serves nothing yet, or
 * SFS_EIO after logging which address could not be used and why (in use,
 * not permitted, not local), or SFS_ENOMEM.
 */
int telemetry_new(const struct config *cfg, struct telemetry **out);

/*
 * Starts serving. stats and sched are borrowed and must outlive
 * telemetry_free. Returns 0, or SFS_EIO (logged: libmicrohttpd missing,
 * no thread).
 */
int telemetry_start(struct telemetry *t, struct stats *stats, struct sched *sched);

/* Tells the listener the mount is up (true) or going (false). */
void telemetry_set_mounted(struct telemetry *t, bool mounted);

/* Stops serving (joins its threads), closes the socket, removes a unix
 * socket file it made, frees. NULL-safe. */
void telemetry_free(struct telemetry *t);

#endif
