/*
 * The wiping allocator (see wipealloc.h).
 */
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "secretfs/wipealloc.h"

union wipe_hdr {
	size_t size;
	max_align_t align;
};

void *wipe_malloc(size_t n)
{
	union wipe_hdr *h;

	if (n > SIZE_MAX - sizeof *h)
		return NULL;
	h = malloc(sizeof *h + n);
	if (!h)
		return NULL;
	h->size = n;
	return h + 1;
}

void wipe_free(void *p)
{
	union wipe_hdr *h;

	if (!p)
		return;
	h = (union wipe_hdr *)p - 1;
	sodium_memzero(h, sizeof *h + h->size);
	free(h);
}

void *wipe_realloc(void *p, size_t n)
{
	size_t old;
	void *q;

	if (!p)
		return wipe_malloc(n);
	old = ((union wipe_hdr *)p - 1)->size;
	q = wipe_malloc(n);
	if (!q)
		return NULL;
	memcpy(q, p, old < n ? old : n);
	wipe_free(p);
	return q;
}

void *wipe_calloc(size_t nmemb, size_t size)
{
	void *p;

	if (size && nmemb > SIZE_MAX / size)
		return NULL;
	p = wipe_malloc(nmemb * size);
	if (p)
		memset(p, 0, nmemb * size);
	return p;
}

char *wipe_strdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = wipe_malloc(n);

	if (p)
		memcpy(p, s, n);
	return p;
}
