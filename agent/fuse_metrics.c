/*
 * The FUSE output's metric tables (see fuse_metrics.h).
 */
#include <errno.h>

#include "secretfs/fuse_metrics.h"
#include "secretfs/stats.h"
#include "secretfs/timing.h"

static const char *const ops[] = {"lookup",  "getattr", "open",       "read",  "release",
                                  "opendir", "readdir", "releasedir", "other", NULL};
static const struct stats_dim op_dim[] = {{"op", ops}, {NULL, NULL}};
/* Seconds, in microseconds: 10 µs to 1 s. */
static const int64_t request_bounds[] = {10,   25,   50,    100,   250,    500,    1000,
                                         2500, 5000, 10000, 25000, 100000, 1000000};
static const struct stats_field request_fields[] = {
    [0] = {STATS_HISTOGRAM, "secretfs_fuse_request_duration_seconds",
           "Time the FUSE filesystem took to answer a request, by operation", op_dim,
           request_bounds, sizeof request_bounds / sizeof request_bounds[0], 1e-6},
};
static const struct stats_family request_family = {request_fields, 1, NULL};

/* Results of an open: "ok" or the errno's name. */
static const char *const results[] = {"ok", "EACCES", "EPERM", "ENOENT", "other", NULL};
static const struct stats_dim result_dim[] = {{"result", results}, {NULL, NULL}};
static const struct stats_field open_fields[] = {
    [0] = {STATS_COUNTER, "secretfs_file_opens_total",
           "Opens of the file through the mount, by result", result_dim},
};
static const struct stats_family open_family = {open_fields, 1, "file"};

struct stats_set *fuse_metrics_register(struct stats *st)
{
	return stats_register(st, &request_family, NULL);
}

void fuse_metrics_request(struct stats_set *set, enum fuse_metrics_op op,
                          uint64_t started_us)
{
	if (set)
		stats_observe_at(set, 0, op, (int64_t)(timing_now_us() - started_us));
}

struct stats_set *fuse_metrics_register_file(struct stats *st, const char *name)
{
	return stats_register(st, &open_family, name);
}

void fuse_metrics_open(struct stats_set *file_set, int err)
{
	size_t cell = err == 0        ? 0
	              : err == EACCES ? 1
	              : err == EPERM  ? 2
	              : err == ENOENT ? 3
	                              : 4;

	stats_inc_at(file_set, 0, cell);
}
