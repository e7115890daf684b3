/*
 * The audit trail: one JSON line per open of a secret file through the FUSE
 * mount, saying who opened what and whether it was allowed:
 *
 *   {"ts":"2026-11-22T15:22:21.123Z","file":"db/password","version":3,
 *    "pid":4242,"uid":1000,"gid":1000,"comm":"psql","result":"ok","count":1}
 *
 * result is "ok" or the errno name of the refusal ("EACCES", ...); comm is
 * null when /proc/<pid>/comm could not be read. Never any content.
 *
 * Lines are written off the FUSE request path: audit_open() copies a
 * fixed-size record into a bounded ring and returns; a writer thread formats
 * and appends. When the ring is full the record is dropped and counted
 * (secretfs_audit_lines_dropped_total, and a log line at most every 10 s).
 * The writer coalesces repeats of the same pid, file, version and result
 * within one second: the first is written at once (count 1), the others as
 * one line with their count when the second is over.
 */
#ifndef SECRETFS_AUDIT_H
#define SECRETFS_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <jansson.h>

#include "secretfs/diag.h"

struct audit;
struct stats;

/* The "audit" block of the config. */
struct audit_config {
	char *path;        /* absolute, or "-" for stderr */
	size_t queue_size; /* records the ring holds; default 1024 */
};

/*
 * Validates the "audit" block v (key path kp) into a new audit_config in
 * *out. directory_mount: the mount is a directory output, which sees no
 * opens, so audit is refused there. Returns 0, or SFS_EINVAL after one diag
 * message per problem (SFS_ENOMEM after "out of memory"); *out is set only
 * on success.
 */
int audit_config_parse(const json_t *v, const char *kp, bool directory_mount,
                       struct diag *d, struct audit_config **out);

/* Frees a parsed block. NULL-safe. */
void audit_config_free(struct audit_config *c);

/*
 * Opens the audit file (O_APPEND, created 0600) and starts the writer. The
 * lines counters are registered in stats (borrowed, may be NULL). Returns 0
 * or SFS_EIO (the file cannot be opened: logged with its path) or
 * SFS_ENOMEM.
 */
int audit_new(const struct audit_config *c, struct stats *stats, struct audit **out);

/* Declares a file name (copied) and writes its id, for audit_open. Before
 * the first audit_open. Returns 0 or SFS_ENOMEM. */
int audit_add_file(struct audit *a, const char *name, size_t *id);

/*
 * Records one open of file (an audit_add_file id) at version by the caller
 * pid/uid/gid, with err 0 (allowed) or the errno it was refused with.
 * Reads /proc/<pid>/comm (one bounded read) and queues: never waits for
 * the writer. Thread-safe; NULL a does nothing.
 */
void audit_open(struct audit *a, size_t file, uint64_t version, pid_t pid, uid_t uid,
                gid_t gid, int err);

/* Asks the writer to reopen the file (log rotation: SIGUSR1). Only sets a
 * flag and posts a semaphore: async-signal-safe. NULL-safe. */
void audit_request_reopen(struct audit *a);

/* Writes what is queued (giving up after about a second if the file does
 * not take it), stops the writer, closes the file and frees. NULL-safe. */
void audit_free(struct audit *a);

#endif
