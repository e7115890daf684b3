/*
 * Shared set-up of the libFuzzer targets (tests/fuzz/fuzz_*.c): libsodium
 * and the guarded arenas, the wiping jansson allocator, and logging off,
 * exactly as the daemon starts; and a splitter for inputs made of several
 * NUL-separated parts.
 */
#ifndef SECRETFS_FUZZ_H
#define SECRETFS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "secretfs/log.h"
#include "secretfs/secjson.h"
#include "secretfs/secmem.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	secjson_init();
	if (secmem_init() < 0)
		abort();
	log_setup((enum log_level)(LOG_LVL_ERROR + 1), false); /* silent */
	return 0;
}

/* A NUL-terminated copy of data (malloc'd; the fuzzer sees over-reads). */
static inline char *fuzz_strndup(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);

	if (!s)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

/*
 * Splits a copy of data at NUL bytes into at most max parts (what follows
 * the max-th part is ignored). Returns the number of parts; parts[i] point
 * into *buf, which the caller frees.
 */
static inline size_t fuzz_split(const uint8_t *data, size_t size, char **buf,
                                const char **parts, size_t max)
{
	size_t n = 0;
	char *s = fuzz_strndup(data, size), *p = s, *end = s + size;

	*buf = s;
	while (n < max) {
		parts[n++] = p;
		p += strlen(p);
		if (p >= end)
			break;
		p++;
	}
	return n;
}

#endif
