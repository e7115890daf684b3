/*
 * Liveness of the scheduler loop, for /healthz (telemetry.c). The loop
 * stamps a heartbeat each turn, just before it sleeps; once watching is on
 * (telemetry configured) it never sleeps longer than HEALTH_MAX_SLEEP_MS,
 * so a heartbeat older than the liveness timeout means the loop is stuck
 * in some call, not asleep. The state is process-wide, like a signal
 * flag: one scheduler per process, lock-free atomics.
 */
#ifndef SECRETFS_HEALTH_H
#define SECRETFS_HEALTH_H

#include <stdbool.h>
#include <stdint.h>

#define HEALTH_MAX_SLEEP_MS 5000

/* Turns watching on (the loop wakes at least every HEALTH_MAX_SLEEP_MS)
 * or off (sleeps are left as they are). */
void health_watch(bool on);

/* Called by the scheduler loop just before it sleeps for timeout_ms (-1:
 * until woken): stamps the heartbeat and returns the timeout to use. */
int health_sched_beat(int timeout_ms);

/* Milliseconds since the last heartbeat, or UINT64_MAX before the first. */
uint64_t health_sched_age_ms(void);

#endif
