/*
 * The revocation queue: leases that were replaced wait here for their
 * backend's grace period (revoke_grace_ms) and are then revoked, so a
 * reader that still holds the old credentials has time to move on. At
 * shutdown the rest (and the current leases the operator asked for) are
 * revoked within shutdown_timeout. Has a lock of its own: workers add,
 * the scheduler thread runs.
 */
#ifndef SECRETFS_REVOKE_H
#define SECRETFS_REVOKE_H

#include <stdbool.h>
#include <stdint.h>

#include "secretfs/backend.h"

struct revoke;
struct stats_set;

/* A new, empty queue; shutdown_timeout_ms is the budget that
 * revoke_begin_shutdown opens. Returns 0 or SFS_ENOMEM. */
int revoke_new(uint64_t shutdown_timeout_ms, struct revoke **out);

/*
 * Queues lease_id of be, to be revoked at due (monotonic ms). label
 * ("backend:path") is copied for the logs; be and stats are borrowed and
 * must outlive the queue. The outcome is counted in stats'
 * SRC_REVOCATIONS or SRC_REVOKE_FAILURES (source.h; stats may be NULL).
 * Any thread. Returns 0, or SFS_ENOMEM (logged: the lease will not be
 * revoked).
 */
int revoke_add(struct revoke *rq, struct backend *be, const char *label,
               const char *lease_id, struct stats_set *stats, uint64_t due);

/* The same for an issued value that was replaced (a certificate), by its
 * fetch_result.revoke_id, revoked with be's revoke_issued. */
int revoke_add_issued(struct revoke *rq, struct backend *be, const char *label,
                      const char *revoke_id, struct stats_set *stats, uint64_t due);

/* Revokes the queued leases due by now (all of them when all), outside
 * the lock, and logs each outcome. One thread at a time. Returns the next
 * due time of those left (UINT64_MAX: none). */
uint64_t revoke_run(struct revoke *rq, uint64_t now, bool all);

/* A reload's new shutdown_timeout; before revoke_begin_shutdown. */
void revoke_set_shutdown_timeout(struct revoke *rq, uint64_t shutdown_timeout_ms);

/* From now on revocations share what is left of shutdown_timeout from now
 * (each gets its share of the rest, so one hung revoke cannot starve the
 * others) and fail once it is spent. Only once nothing else runs the
 * queue. */
void revoke_begin_shutdown(struct revoke *rq, uint64_t now);

/* Frees the queue; leases still queued are not revoked. NULL-safe. */
void revoke_free(struct revoke *rq);

#endif
