/* Durations as strings ("1h30m") and as numbers of seconds. */
#include <math.h>

#include "fuzz.h"
#include "secretfs/duration.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fuzz_strndup(data, size);
	uint64_t ms = 0;
	double sec;

	if (!duration_from_string(s, &ms) && ms >= 10ull * 365 * 24 * 3600 * 1000)
		abort(); /* the bound is ten years */
	if (size == sizeof sec) {
		memcpy(&sec, data, sizeof sec);
		if (!duration_from_seconds(sec, &ms) && (sec < 0 || !isfinite(sec)))
			abort();
	}
	free(s);
	return 0;
}
