/*
 * FNV-1a, 64 bits: the hash of the daemon's lookup tables (sources by
 * identity, metric sets by label) and of the file backend's stat version.
 * Not for anything an attacker chooses to collide on for gain: a collision
 * only costs a comparison.
 */
#ifndef SECRETFS_HASH_H
#define SECRETFS_HASH_H

#include <stddef.h>
#include <stdint.h>

#define SFS_FNV_BASIS 1469598103934665603ull

/* FNV-1a over len bytes at p, continuing from h (SFS_FNV_BASIS to start). */
static inline uint64_t sfs_fnv1a(uint64_t h, const void *p, size_t len)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < len; i++) {
		h ^= b[i];
		h *= 1099511628211ull;
	}
	return h;
}

#endif
