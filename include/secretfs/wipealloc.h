/*
 * A heap allocator whose blocks are zeroed when freed: each block carries
 * its size in a header (padded to keep malloc's alignment). Installed into
 * the libraries that hold secrets in their own buffers: jansson (parsed
 * replies) and libcurl (request headers with tokens, response buffers).
 */
#ifndef SECRETFS_WIPEALLOC_H
#define SECRETFS_WIPEALLOC_H

#include <stddef.h>

/* malloc(3) alike; NULL on failure. */
void *wipe_malloc(size_t n);

/* Zeroes the whole block, then frees it. NULL-safe. Only for blocks from
 * this allocator. */
void wipe_free(void *p);

/* realloc(3) alike: the old block is wiped after the copy. */
void *wipe_realloc(void *p, size_t n);

void *wipe_calloc(size_t nmemb, size_t size);
char *wipe_strdup(const char *s);

#endif
