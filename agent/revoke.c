/*
 * The revocation queue (see revoke.h): an unordered list under its own
 * lock, short enough (one entry per replaced lease within its grace) that
 * each run walks it whole. The network calls happen outside the lock.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "revoke.h"
#include "source.h"
#include "secretfs/error.h"
#include "secretfs/http.h"
#include "secretfs/log.h"
#include "secretfs/stats.h"
#include "secretfs/timing.h"

struct revocation {
	struct backend *be;
	struct stats_set *stats;             /* of the source the lease came from */
	char lease_id[BACKEND_LEASE_ID_MAX]; /* or revoke_id, when issued */
	bool issued;                         /* an issued value, not a lease */
	char *label;
	uint64_t due;
	struct revocation *next;
};

struct revoke {
	pthread_mutex_t lock; /* guards list */
	struct revocation *list;
	uint64_t shutdown_timeout_ms;
	uint64_t deadline; /* after revoke_begin_shutdown; UINT64_MAX before */
};

/* The log fields (log.h) naming a revocation (see SOURCE_FIELDS). */
#define REVOCATION_FIELDS(r, ev)                                                         \
	(&(struct log_fields){.event = (ev),                                             \
	                      .source = (r)->label,                                      \
	                      .backend = (r)->be->name,                                  \
	                      .lease = (r)->lease_id})

int revoke_new(uint64_t shutdown_timeout_ms, struct revoke **out)
{
	struct revoke *rq = calloc(1, sizeof *rq);

	if (!rq)
		return SFS_ENOMEM;
	pthread_mutex_init(&rq->lock, NULL);
	rq->shutdown_timeout_ms = shutdown_timeout_ms;
	rq->deadline = UINT64_MAX;
	*out = rq;
	return 0;
}

static int queue(struct revoke *rq, struct backend *be, const char *label,
                 const char *lease_id, bool issued, struct stats_set *stats, uint64_t due)
{
	struct revocation *r = calloc(1, sizeof *r);

	if (!r || !(r->label = strdup(label))) {
		free(r);
		log_error("source %s: out of memory; %s %s will not be revoked", label,
		          issued ? "issued" : "lease", lease_id);
		return SFS_ENOMEM;
	}
	r->issued = issued;
	r->be = be;
	r->stats = stats;
	snprintf(r->lease_id, sizeof r->lease_id, "%s", lease_id);
	r->due = due;
	pthread_mutex_lock(&rq->lock);
	r->next = rq->list;
	rq->list = r;
	pthread_mutex_unlock(&rq->lock);
	return 0;
}

int revoke_add(struct revoke *rq, struct backend *be, const char *label,
               const char *lease_id, struct stats_set *stats, uint64_t due)
{
	return queue(rq, be, label, lease_id, false, stats, due);
}

int revoke_add_issued(struct revoke *rq, struct backend *be, const char *label,
                      const char *revoke_id, struct stats_set *stats, uint64_t due)
{
	return queue(rq, be, label, revoke_id, true, stats, due);
}

static void revoke_one(struct revoke *rq, struct revocation *r)
{
	struct backend_error err = {0};
	bool stopping = rq->deadline != UINT64_MAX;
	int rc;

	if (stopping && timing_now_ms() >= rq->deadline) {
		backend_error_set(&err,
		                  "the shutdown budget (shutdown_timeout, %llu ms) "
		                  "was spent",
		                  (unsigned long long)rq->shutdown_timeout_ms);
		rc = SFS_ECANCELED;
	} else {
		rc = r->issued ? backend_revoke_issued(r->be, r->lease_id, &err)
		               : backend_revoke(r->be, r->lease_id, &err);
	}
	if (rc < 0) {
		stats_inc(r->stats, SRC_REVOKE_FAILURES);
		log_event(LOG_LVL_WARN, REVOCATION_FIELDS(r, "lease.revoke_failed"),
		          stopping ? "source %s: %s %s not revoked: %s%s%s"
		                   : "source %s: cannot revoke %s %s: %s%s%s",
		          r->label, r->issued ? "issued" : "lease", r->lease_id,
		          sfs_strerror(rc), err.msg[0] ? ": " : "", err.msg);
	} else {
		stats_inc(r->stats, SRC_REVOCATIONS);
		log_event(LOG_LVL_INFO, REVOCATION_FIELDS(r, "lease.revoked"),
		          "source %s: revoked %s %s", r->label,
		          r->issued ? "issued" : "lease", r->lease_id);
	}
}

static void revocation_free(struct revocation *r)
{
	free(r->label);
	free(r);
}

uint64_t revoke_run(struct revoke *rq, uint64_t now, bool all)
{
	struct revocation **pp, *due = NULL;
	uint64_t next = UINT64_MAX;
	size_t left = 0;

	pthread_mutex_lock(&rq->lock);
	pp = &rq->list;
	while (*pp) {
		struct revocation *r = *pp;
		if (all || r->due <= now) {
			*pp = r->next;
			r->next = due;
			due = r;
			continue;
		}
		if (r->due < next)
			next = r->due;
		pp = &r->next;
	}
	pthread_mutex_unlock(&rq->lock);
	for (struct revocation *q = due; q; q = q->next)
		left++;
	for (; due; left--) {
		struct revocation *r = due;

		/* At shutdown each gets its share of what is left of the
		 * budget, so one hung revoke cannot starve the others. */
		now = timing_now_ms();
		if (rq->deadline != UINT64_MAX && now < rq->deadline)
			http_allow_until(now + (rq->deadline - now) / left);
		due = r->next;
		revoke_one(rq, r);
		revocation_free(r);
	}
	return next;
}

void revoke_set_shutdown_timeout(struct revoke *rq, uint64_t shutdown_timeout_ms)
{
	pthread_mutex_lock(&rq->lock);
	rq->shutdown_timeout_ms = shutdown_timeout_ms;
	pthread_mutex_unlock(&rq->lock);
}

void revoke_begin_shutdown(struct revoke *rq, uint64_t now)
{
	rq->deadline = now + rq->shutdown_timeout_ms;
}

void revoke_free(struct revoke *rq)
{
	if (!rq)
		return;
	while (rq->list) {
		struct revocation *r = rq->list;
		rq->list = r->next;
		revocation_free(r);
	}
	pthread_mutex_destroy(&rq->lock);
	free(rq);
}
