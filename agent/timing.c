/*
 * The clock and the timing rules of the scheduler (see timing.h). Pure arithmetic on a
 * caller-supplied uniform number, so tests pin every boundary.
 */
#include <sodium.h>
#include <time.h>

#include "secretfs/timing.h"

uint64_t timing_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t timing_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

int64_t timing_unix_s_of(uint64_t mono_ms)
{
	struct timespec wall;
	uint64_t now = timing_now_ms();
	int64_t ms;

	if (mono_ms == 0 || mono_ms == UINT64_MAX)
		return 0;
	clock_gettime(CLOCK_REALTIME, &wall);
	ms = (int64_t)wall.tv_sec * 1000 + wall.tv_nsec / 1000000;
	ms += mono_ms >= now ? (int64_t)(mono_ms - now) : -(int64_t)(now - mono_ms);
	return ms / 1000;
}

double timing_random(void)
{
	return (double)randombytes_uniform(1u << 30) / (double)(1u << 30);
}

/* base * 2^attempt, at most cap. */
static uint64_t backoff_ceiling(unsigned attempt, uint64_t base, uint64_t cap)
{
	uint64_t ceiling = base;

	for (unsigned i = 0; i < attempt && ceiling < cap; i++)
		ceiling *= 2;
	return ceiling < cap ? ceiling : cap;
}

/* delay, or the server's Retry-After if longer (up to its bound). */
static uint64_t at_least_retry_after(uint64_t delay, uint64_t retry_after)
{
	if (retry_after > TIMING_RETRY_AFTER_MAX_MS)
		retry_after = TIMING_RETRY_AFTER_MAX_MS;
	return delay < retry_after ? retry_after : delay;
}

uint64_t timing_backoff(unsigned attempt, uint64_t base, uint64_t cap,
                        uint64_t retry_after, double u)
{
	uint64_t delay = (uint64_t)((double)backoff_ceiling(attempt, base, cap) * u);

	return at_least_retry_after(delay, retry_after);
}

uint64_t timing_backoff_steady(unsigned attempt, uint64_t base, uint64_t cap,
                               uint64_t retry_after, double u)
{
	uint64_t delay;

	if (backoff_ceiling(attempt, base, cap) < cap)
		return timing_backoff(attempt, base, cap, retry_after, u);
	delay = cap * 3 / 4 + (uint64_t)((double)(cap / 2) * u);
	return at_least_retry_after(delay, retry_after);
}

uint64_t timing_first_refresh(uint64_t interval, double u)
{
	return interval / 2 + (uint64_t)((double)(interval - interval / 2) * u);
}

uint64_t timing_grace(uint64_t lease, double u)
{
	return (uint64_t)((double)lease * (0.10 + 0.10 * u));
}

uint64_t timing_renew_after(uint64_t remaining, double u)
{
	return remaining * 2 / 3 + timing_grace(remaining, u) / 3;
}

uint64_t timing_replace_after(uint64_t life, double u)
{
	return (uint64_t)((double)life * (0.85 + 0.05 * u));
}
