/*
 * Calls into a backend, timed and counted (see backend.h): every read,
 * probe, renewal and revocation the scheduler makes goes through here, so
 * the request metrics of every backend type come from one place. The
 * duration covers the whole call, retries and waits for a pooled client
 * included: what a source waited for its answer.
 */
#include "secretfs/backend.h"
#include "secretfs/error.h"
#include "secretfs/http.h"
#include "secretfs/stats.h"
#include "secretfs/timing.h"

enum { OP_READ, OP_PROBE, OP_RENEW, OP_REVOKE };
static const char *const operations[] = {"read", "probe", "renew", "revoke", NULL};

/* Failure classes, in backend_failure_reason's order. */
#define FAILURE_REASONS                                                                  \
	"unavailable", "denied", "not_found", "expired", "invalid", "backend_error",     \
	    "cancelled", "other"
const char *const backend_failure_reasons[] = {FAILURE_REASONS, NULL};
static const char *const outcomes[] = {"ok", FAILURE_REASONS, NULL};

static const struct stats_dim call_dims[] = {
    {"operation", operations}, {"outcome", outcomes}, {NULL, NULL}};
/* Seconds, in microseconds: 1 ms to 30 s (the default request timeout). */
static const int64_t call_bounds[] = {1000,    5000,     10000,   25000,   50000,
                                      100000,  250000,   500000,  1000000, 2500000,
                                      5000000, 10000000, 30000000};

enum { CALL_REQUESTS, CALL_DURATION };
static const struct stats_field call_fields[] = {
    [CALL_REQUESTS] = {STATS_COUNTER, "secretfs_backend_requests_total",
                       "Requests to the backend by operation and outcome", call_dims},
    [CALL_DURATION] = {STATS_HISTOGRAM, "secretfs_backend_request_duration_seconds",
                       "Time a request to the backend took, retries included", NULL,
                       call_bounds, sizeof call_bounds / sizeof call_bounds[0], 1e-6},
};
static const struct stats_family call_family = {
    call_fields, sizeof call_fields / sizeof call_fields[0], "backend"};

size_t backend_failure_reason(int rc)
{
	switch (rc) {
	case SFS_ETRANSIENT:
		return 0;
	case SFS_EDENIED:
		return 1;
	case SFS_ENOTFOUND:
		return 2;
	case SFS_EEXPIRED:
		return 3;
	case SFS_EINVAL:
	case SFS_EPARSE:
	case SFS_ETOOBIG:
		return 4;
	case SFS_EBACKEND:
		return 5;
	case SFS_ECANCELED:
		return 6;
	default:
		return 7;
	}
}

void backend_calls_register(struct backend *be, struct stats *st)
{
	if (be)
		be->calls = stats_register(st, &call_family, be->name);
}

static int counted(struct backend *be, size_t op, uint64_t started, int rc)
{
	size_t outcome = rc < 0 ? 1 + backend_failure_reason(rc) : 0;
	size_t noutcomes = sizeof outcomes / sizeof outcomes[0] - 1;

	stats_inc_at(be->calls, CALL_REQUESTS, op * noutcomes + outcome);
	stats_observe(be->calls, CALL_DURATION, (int64_t)(timing_now_us() - started));
	return rc;
}

int backend_fetch(struct backend *be, const struct source_key *key,
                  struct fetch_result *out, struct backend_error *err)
{
	uint64_t t = timing_now_us();

	return counted(be, OP_READ, t, be->ops->fetch(be, key, out, err));
}

int backend_probe(struct backend *be, const struct source_key *key, char *version,
                  size_t versionlen, struct backend_error *err)
{
	uint64_t t = timing_now_us();

	return counted(be, OP_PROBE, t,
	               be->ops->probe(be, key, version, versionlen, err));
}

int backend_renew(struct backend *be, const char *lease_id, uint64_t increment_ms,
                  uint64_t *lease_ms, struct backend_error *err)
{
	uint64_t t = timing_now_us();

	return counted(be, OP_RENEW, t,
	               be->ops->renew(be, lease_id, increment_ms, lease_ms, err));
}

int backend_revoke(struct backend *be, const char *lease_id, struct backend_error *err)
{
	uint64_t t = timing_now_us();

	return counted(be, OP_REVOKE, t, be->ops->revoke(be, lease_id, err));
}

int backend_revoke_issued(struct backend *be, const char *revoke_id,
                          struct backend_error *err)
{
	uint64_t t = timing_now_us();

	return counted(be, OP_REVOKE, t, be->ops->revoke_issued(be, revoke_id, err));
}

void backend_single_try(bool on)
{
	http_thread_single_try(on);
}
