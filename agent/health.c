/*
 * The scheduler's heartbeat (see health.h): two atomics.
 */
#include <stdatomic.h>

#include "secretfs/health.h"
#include "secretfs/timing.h"

static _Atomic bool watching;
static _Atomic uint64_t last_beat; /* monotonic ms; 0 before the first */

void health_watch(bool on)
{
	atomic_store(&watching, on);
}

int health_sched_beat(int timeout_ms)
{
	atomic_store(&last_beat, timing_now_ms());
	if (atomic_load(&watching) &&
	    (timeout_ms < 0 || timeout_ms > HEALTH_MAX_SLEEP_MS))
		return HEALTH_MAX_SLEEP_MS;
	return timeout_ms;
}

uint64_t health_sched_age_ms(void)
{
	uint64_t beat = atomic_load(&last_beat), now = timing_now_ms();

	if (beat == 0)
		return UINT64_MAX;
	return now > beat ? now - beat : 0;
}
