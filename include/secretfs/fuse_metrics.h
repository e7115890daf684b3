/*
 * The metrics of the FUSE output, defined here (outside fuse/) so the
 * filesystem only records them: secretfs_fuse_request_duration_seconds{op}
 * (one histogram set for the mount) and secretfs_file_opens_total
 * {file,result} (one set per file). Recording is a few relaxed atomic
 * adds: cheap enough for every request.
 */
#ifndef SECRETFS_FUSE_METRICS_H
#define SECRETFS_FUSE_METRICS_H

#include <stdint.h>

struct stats;
struct stats_set;

/* The operations timed, in the order of their "op" label values. */
enum fuse_metrics_op {
	FUSE_OP_LOOKUP,
	FUSE_OP_GETATTR,
	FUSE_OP_OPEN,
	FUSE_OP_READ,
	FUSE_OP_RELEASE,
	FUSE_OP_OPENDIR,
	FUSE_OP_READDIR,
	FUSE_OP_RELEASEDIR,
	FUSE_OP_OTHER,
};

/* Registers the mount's request histogram in st. NULL-safe (returns NULL;
 * recording through NULL does nothing). */
struct stats_set *fuse_metrics_register(struct stats *st);

/* Records one request of op that began at started_us (timing_now_us()). */
void fuse_metrics_request(struct stats_set *set, enum fuse_metrics_op op,
                          uint64_t started_us);

/* Registers the open counters of the file called name (a config name). */
struct stats_set *fuse_metrics_register_file(struct stats *st, const char *name);

/* Counts one open of the file: err 0 for success, else the positive errno
 * that refused it (EACCES, EPERM, ENOENT, ...; others count as "other"). */
void fuse_metrics_open(struct stats_set *file_set, int err);

#endif
