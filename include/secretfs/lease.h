/*
 * The one renew-or-replace policy for everything that expires: dynamic
 * leases (the scheduler's sources) and auth tokens (the Vault backend).
 * Pure arithmetic on the clock values given and a uniform random number,
 * so the rule is tested on its own (tests/unit/test_lease.c).
 *
 * The rule (Vault's lifetime watcher, DESIGN.md "Timing rules"): while a
 * renewal still buys enough time, renew at ~2/3 of what is left (70-73 %).
 * When it cannot (not renewable, the last renewal was capped by a max TTL,
 * or what is left is within 4 graces of the end), the end is known: get a
 * replacement at 85-90 % of the whole life, counted from when it was
 * issued, and never later than now allows.
 */
#ifndef SECRETFS_LEASE_H
#define SECRETFS_LEASE_H

#include <stdbool.h>
#include <stdint.h>

struct lease_terms {
	uint64_t issued;  /* when it was granted (monotonic ms) */
	uint64_t life_ms; /* its duration as first granted: sets the grace */
	bool renewable;   /* the holder can renew it */
	bool capped;      /* it cannot be extended far enough: a renewal granted
	                     less than asked, or something it depends on ends first */
};

enum lease_step {
	LEASE_RENEW,   /* renew at due */
	LEASE_REPLACE, /* fetch (or log in for) a replacement at due */
};

/*
 * The next step for a lease with left ms to live from now; writes its time
 * (monotonic ms) to *due. u is uniform in [0, 1) (timing_random()).
 */
enum lease_step lease_next(const struct lease_terms *t, uint64_t now, uint64_t left,
                           double u, uint64_t *due);

#endif
