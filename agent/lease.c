/*
 * The renew-or-replace policy (see lease.h), on top of the timing rules
 * of timing.c.
 */
#include "secretfs/lease.h"
#include "secretfs/timing.h"

enum lease_step lease_next(const struct lease_terms *t, uint64_t now, uint64_t left,
                           double u, uint64_t *due)
{
	uint64_t end = now + left, at;

	if (t->renewable && !t->capped && left > 4 * timing_grace(t->life_ms, 0.0)) {
		*due = now + timing_renew_after(left, u);
		return LEASE_RENEW;
	}
	/* A lease issued "in the future" (clock values from another source)
	 * counts its life from now. */
	at = (t->issued <= now ? t->issued : now);
	at += timing_replace_after(end - at, u);
	*due = at > now ? at : now;
	return LEASE_REPLACE;
}
