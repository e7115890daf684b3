/*
 * Durations as the config writes them: a non-negative number of seconds
 * (JSON number) or a string of one or more <number><unit> groups, unit one
 * of ms, s, m, h, d ("90s", "5m", "1h30m", "250ms", "1.5s"); below ten
 * years. Used by the config parser and by backends for their own keys.
 */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "secretfs/duration.h"
#include "secretfs/error.h"

#define DURATION_MAX_MS (10ull * 365 * 24 * 3600 * 1000) /* exclusive */

static const struct {
	const char *name;
	uint64_t ms;
} duration_units[] = {
    {"ms", 1}, {"s", 1000}, {"m", 60 * 1000}, {"h", 3600 * 1000}, {"d", 86400 * 1000},
};

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

const char *duration_from_string(const char *s, uint64_t *out)
{
	uint64_t total = 0;
	const char *c = s;

	if (!*s)
		return "empty";
	if (*s == '-')
		return "must not be negative";
	while (*c) {
		uint64_t whole = 0, frac = 0, scale = 1, unit = 0;
		const char *group = c, *u;
		size_t ulen;

		if (!is_digit(*c))
			return "expected a number";
		for (; is_digit(*c); c++) {
			whole = whole * 10 + (uint64_t)(*c - '0');
			if (whole >= DURATION_MAX_MS)
				return "too large (the limit is 10 years)";
		}
		if (*c == '.') {
			c++;
			if (!is_digit(*c))
				return "expected digits after \".\"";
			for (; is_digit(*c); c++) {
				if (scale == 1000000000)
					return "too many decimal places";
				frac = frac * 10 + (uint64_t)(*c - '0');
				scale *= 10;
			}
		}
		for (u = c; *c && !is_digit(*c) && *c != '.'; c++)
			;
		ulen = (size_t)(c - u);
		if (ulen == 0) {
			/* A bare number means seconds, but only on its own. */
			if (group != s || *c)
				return "missing unit";
			unit = 1000;
		}
		for (size_t i = 0;
		     ulen && i < sizeof duration_units / sizeof duration_units[0]; i++)
			if (strlen(duration_units[i].name) == ulen &&
			    memcmp(duration_units[i].name, u, ulen) == 0)
				unit = duration_units[i].ms;
		if (unit == 0)
			return "unknown unit (use ms, s, m, h or d)";
		if (whole > DURATION_MAX_MS / unit)
			return "too large (the limit is 10 years)";
		/* frac < 10^9 and unit <= 86400000: the product fits. */
		total += whole * unit + frac * unit / scale;
		if (total >= DURATION_MAX_MS)
			return "too large (the limit is 10 years)";
	}
	*out = total;
	return NULL;
}

const char *duration_from_seconds(double sec, uint64_t *out)
{
	if (!isfinite(sec))
		return "must be a finite number";
	if (sec < 0)
		return "must not be negative";
	if (sec * 1000.0 + 0.5 >= (double)DURATION_MAX_MS)
		return "too large (the limit is 10 years)";
	*out = (uint64_t)(sec * 1000.0 + 0.5);
	return NULL;
}

int duration_parse_str(const char *s, uint64_t *ms)
{
	uint64_t v;

	if (!s || duration_from_string(s, &v))
		return SFS_EINVAL;
	*ms = v;
	return 0;
}

int duration_parse(const json_t *v, uint64_t *ms)
{
	uint64_t r;

	if (json_is_string(v))
		return duration_parse_str(json_string_value(v), ms);
	if (!json_is_number(v) || duration_from_seconds(json_number_value(v), &r))
		return SFS_EINVAL;
	*ms = r;
	return 0;
}
