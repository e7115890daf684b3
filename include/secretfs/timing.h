/*
 * The clock everyone uses, and the timing rules of the scheduler as pure
 * functions of their inputs and a uniform random number, so they can be
 * tested exactly. All times are in milliseconds.
 */
#ifndef SECRETFS_TIMING_H
#define SECRETFS_TIMING_H

#include <stdint.h>

/* Monotonic clock (CLOCK_MONOTONIC) in milliseconds: every due time,
 * deadline and timeout in secretfs is on this clock. */
uint64_t timing_now_ms(void);

/* The same clock in microseconds, for durations (metrics). */
uint64_t timing_now_us(void);

/* The wall-clock time (Unix seconds, for metrics) at which the monotonic
 * clock reads mono_ms; 0 for 0 or UINT64_MAX (never). */
int64_t timing_unix_s_of(uint64_t mono_ms);

/* The longest Retry-After honoured: a server (or a proxy in front of it)
 * asking for hours would stop a source's refreshes, and a lease's renewal,
 * for that long. */
#define TIMING_RETRY_AFTER_MAX_MS (5u * 60 * 1000)

/* Uniform random number in [0, 1) from libsodium. */
double timing_random(void);

/*
 * Capped exponential backoff with full jitter: a delay uniform in
 * [0, min(cap, base * 2^attempt)] (attempt counts from 0), never below
 * retry_after (a server's Retry-After, honoured up to
 * TIMING_RETRY_AFTER_MAX_MS), never above cap unless retry_after says so.
 * u in [0, 1).
 */
uint64_t timing_backoff(unsigned attempt, uint64_t base, uint64_t cap,
                        uint64_t retry_after, double u);

/*
 * The backoff of a source that keeps failing: timing_backoff while
 * base * 2^attempt is below cap; from there on a delay uniform in
 * [3/4 cap, 5/4 cap] (mean cap, so a failing source retries as often as a
 * healthy one probes), never below retry_after. Full jitter at the cap
 * would put a fleet's next attempts, counted from any instant such as a
 * backend's recovery, at a density falling from 2/cap to 0 over one cap:
 * twice the mean rate right after the recovery. With the narrow band the
 * next attempts spread evenly over the interval (bench/fleet).
 */
uint64_t timing_backoff_steady(unsigned attempt, uint64_t base, uint64_t cap,
                               uint64_t retry_after, double u);

/*
 * First check of a static secret: a random phase in [interval/2, interval)
 * so a fleet started together spreads its probes.
 */
uint64_t timing_first_refresh(uint64_t interval, double u);

/*
 * Renewal of a renewable lease (the Vault lifetime-watcher rule): with R the
 * remaining TTL and a grace G = R * (0.10 + 0.10 u), renew after
 * 2/3 R + G/3, i.e. at 70-73% of the remaining time.
 */
uint64_t timing_renew_after(uint64_t remaining, double u);

/* Grace used above, exposed for the "cannot extend far enough" test:
 * a renewal that leaves at most 4 G of lease means max TTL is near. */
uint64_t timing_grace(uint64_t lease, double u);

/*
 * Replacement of a lease that cannot be renewed (non-renewable, or at max
 * TTL): fetch a new one at 85-90% of its life. life is the lease duration
 * measured from when it was issued (or last renewed).
 */
uint64_t timing_replace_after(uint64_t life, double u);

#endif
