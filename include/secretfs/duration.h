/*
 * Duration parsing (duration.c): a non-negative number of seconds, or a
 * string of <number><unit> groups with units ms, s, m, h, d ("90s", "5m",
 * "1h30m", "250ms"). Everything is in milliseconds and below ten years.
 */
#ifndef SECRETFS_DURATION_H
#define SECRETFS_DURATION_H

#include <stdint.h>
#include <jansson.h>

/* Parses a duration string. Returns NULL and sets *ms, or a static reason
 * ("missing unit", "too large (the limit is 10 years)", ...) and leaves
 * *ms alone. */
const char *duration_from_string(const char *s, uint64_t *ms);

/* A number of seconds. Returns NULL and sets *ms, or a static reason. */
const char *duration_from_seconds(double sec, uint64_t *ms);

/* A config value: a JSON string (duration_from_string) or number of
 * seconds. Returns 0 and sets *ms, or SFS_EINVAL (*ms untouched). */
int duration_parse(const json_t *v, uint64_t *ms);

/* duration_from_string as 0 / SFS_EINVAL; NULL is SFS_EINVAL. */
int duration_parse_str(const char *s, uint64_t *ms);

#endif
