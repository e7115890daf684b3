/*
 * Guarded memory for plaintext. sodium_malloc is slow (a few mappings and an
 * mlock per call), so small blocks are carved out of a few sodium_malloc
 * arenas: each arena is cut into 256-byte units and a bitmap records which
 * are in use; an allocation takes the first run of free units that fits.
 * Free units are always zero (an arena is zeroed when created and every run
 * is wiped when released), so allocations come back zero-filled without
 * another pass. Blocks above SECMEM_ARENA_MAX_ALLOC, or any block once all
 * arenas are full, get a sodium_malloc of their own. One mutex guards the
 * arena table.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "readfile.h"
#include "secretfs/error.h"
#include "secretfs/secmem.h"

#define SECMEM_UNIT 256u
#define SECMEM_ARENA_SIZE (256u * 1024u)
#define SECMEM_ARENA_UNITS (SECMEM_ARENA_SIZE / SECMEM_UNIT)
#define SECMEM_ARENA_WORDS (SECMEM_ARENA_UNITS / 64u)
#define SECMEM_MAX_ARENAS 16u
#define SECMEM_ARENA_MAX_ALLOC (64u * 1024u)

struct secmem_arena {
	unsigned char *base;               /* sodium_malloc, SECMEM_ARENA_SIZE bytes */
	uint64_t used[SECMEM_ARENA_WORDS]; /* bit set = unit handed out */
	uint16_t run[SECMEM_ARENA_UNITS];  /* units of the run starting here, 0 if none */
	size_t units_used;
};

static pthread_mutex_t secmem_lock = PTHREAD_MUTEX_INITIALIZER;
static struct secmem_arena secmem_arenas[SECMEM_MAX_ARENAS];
static size_t secmem_narenas;

static size_t units_for(size_t len)
{
	if (len == 0)
		len = 1;
	return (len + SECMEM_UNIT - 1) / SECMEM_UNIT;
}

static int unit_is_used(const struct secmem_arena *a, size_t i)
{
	return (a->used[i / 64] >> (i % 64)) & 1u;
}

static void units_mark(struct secmem_arena *a, size_t start, size_t n, int used)
{
	for (size_t i = start; i < start + n; i++) {
		uint64_t bit = (uint64_t)1 << (i % 64);
		if (used)
			a->used[i / 64] |= bit;
		else
			a->used[i / 64] &= ~bit;
	}
}

/* First run of n free units in a; returns its index or -1. */
static long arena_find(const struct secmem_arena *a, size_t n)
{
	size_t run = 0, start = 0, i = 0;

	if (SECMEM_ARENA_UNITS - a->units_used < n)
		return -1;
	while (i < SECMEM_ARENA_UNITS) {
		uint64_t w = a->used[i / 64];
		if (i % 64 == 0 && w == UINT64_MAX) {
			run = 0;
			i += 64;
			continue;
		}
		if (i % 64 == 0 && w == 0) {
			if (run == 0)
				start = i;
			run += 64;
			if (run >= n)
				return (long)start;
			i += 64;
			continue;
		}
		if (unit_is_used(a, i)) {
			run = 0;
		} else {
			if (run == 0)
				start = i;
			if (++run >= n)
				return (long)start;
		}
		i++;
	}
	return -1;
}

static void *arena_take(struct secmem_arena *a, size_t n)
{
	long start = arena_find(a, n);

	if (start < 0)
		return NULL;
	units_mark(a, (size_t)start, n, 1);
	a->run[start] = (uint16_t)n;
	a->units_used += n;
	return a->base + (size_t)start * SECMEM_UNIT;
}

/* Called with secmem_lock held. */
static void *arenas_alloc(size_t len)
{
	size_t n = units_for(len);
	void *p = NULL;

	for (size_t i = 0; i < secmem_narenas && !p; i++)
		p = arena_take(&secmem_arenas[i], n);
	if (!p && secmem_narenas < SECMEM_MAX_ARENAS) {
		struct secmem_arena *a = &secmem_arenas[secmem_narenas];
		unsigned char *base = sodium_malloc(SECMEM_ARENA_SIZE);
		if (base) {
			/* sodium_malloc fills with 0xdb; free units must be zero. */
			sodium_memzero(base, SECMEM_ARENA_SIZE);
			memset(a, 0, sizeof(*a));
			a->base = base;
			secmem_narenas++;
			p = arena_take(a, n);
		}
	}
	return p;
}

/* Returns the arena holding p, or NULL. Called with secmem_lock held. */
static struct secmem_arena *arena_of(const void *p)
{
	uintptr_t u = (uintptr_t)p;

	for (size_t i = 0; i < secmem_narenas; i++) {
		uintptr_t b = (uintptr_t)secmem_arenas[i].base;
		if (u >= b && u < b + SECMEM_ARENA_SIZE)
			return &secmem_arenas[i];
	}
	return NULL;
}

/*
 * Initialises libsodium; arenas are created on first use. Safe to call more
 * than once. Returns 0 or SFS_EIO.
 */
int secmem_init(void)
{
	if (sodium_init() < 0)
		return SFS_EIO;
	return 0;
}

/*
 * Zero-filled guarded block of len bytes (len 0 gives a 1-byte block), from
 * an arena when small enough and one has room, else from sodium_malloc.
 * NULL when out of memory. secmem_init() must have succeeded.
 */
void *secmem_alloc(size_t len)
{
	void *p = NULL;
	size_t want = len ? len : 1;

	if (want <= SECMEM_ARENA_MAX_ALLOC) {
		pthread_mutex_lock(&secmem_lock);
		p = arenas_alloc(want);
		pthread_mutex_unlock(&secmem_lock);
	}
	if (!p) {
		p = sodium_malloc(want);
		if (p)
			sodium_memzero(p, want);
	}
	return p;
}

/*
 * Wipes and releases p. Both kinds of block know their own size (an arena
 * records each run it hands out, sodium_free knows its mapping), so the
 * whole block is wiped and released. Freeing a pointer that is not the start of a
 * live arena run (a double or wild free) is a memory-safety bug and aborts.
 * NULL-safe.
 */
void secmem_free(void *p)
{
	struct secmem_arena *a;
	int bad = 0;

	if (!p)
		return;
	pthread_mutex_lock(&secmem_lock);
	a = arena_of(p);
	if (a) {
		size_t off = (size_t)((unsigned char *)p - a->base);
		size_t start = off / SECMEM_UNIT;
		size_t n = a->run[start];
		if (off % SECMEM_UNIT != 0 || n == 0) {
			bad = 1;
		} else {
			sodium_memzero(a->base + start * SECMEM_UNIT, n * SECMEM_UNIT);
			units_mark(a, start, n, 0);
			a->run[start] = 0;
			a->units_used -= n;
		}
	}
	pthread_mutex_unlock(&secmem_lock);
	if (bad) {
		fprintf(stderr, "secmem_free: %p is not a live block\n", p);
		abort();
	}
	if (!a)
		sodium_free(p); /* wipes before unmapping */
}

/* Bytes of arena units currently handed out; for tests. */
size_t secmem_arena_bytes_in_use(void)
{
	size_t units = 0;

	pthread_mutex_lock(&secmem_lock);
	for (size_t i = 0; i < secmem_narenas; i++)
		units += secmem_arenas[i].units_used;
	pthread_mutex_unlock(&secmem_lock);
	return units * SECMEM_UNIT;
}

/* Empty buffer that may grow up to max bytes; no allocation. */
void secbuf_init(struct secbuf *b, size_t max)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	b->max = max;
}

/*
 * Appends n bytes of p. Growth allocates a larger secmem block, copies, and
 * wipes and frees the old one. Returns 0, SFS_ETOOBIG when len would pass
 * max (the buffer is left unchanged), or SFS_ENOMEM.
 */
int secbuf_append(struct secbuf *b, const void *p, size_t n)
{
	size_t need, cap;
	unsigned char *data;

	if (n == 0)
		return 0;
	if (b->len > b->max || n > b->max - b->len)
		return SFS_ETOOBIG;
	need = b->len + n;
	if (need > b->cap) {
		cap = b->cap ? b->cap : SECMEM_UNIT;
		while (cap < need && cap <= SIZE_MAX / 2)
			cap *= 2;
		if (cap < need || cap > b->max)
			cap = b->max;
		data = secmem_alloc(cap);
		if (!data)
			return SFS_ENOMEM;
		if (b->len)
			memcpy(data, b->data, b->len);
		secmem_free(b->data);
		b->data = data;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

/* Appends the bytes of the NUL-terminated string s (not the NUL). */
int secbuf_puts(struct secbuf *b, const char *s)
{
	return secbuf_append(b, s, strlen(s));
}

/* Wipes and frees the contents; the buffer keeps its max and may be reused. */
void secbuf_release(struct secbuf *b)
{
	secmem_free(b->data);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

static const struct readfile_alloc secmem_readfile = {secmem_alloc, secmem_free};

int secmem_read_file(const char *path, size_t max, unsigned char **out, size_t *len)
{
	return readfile(path, max, READFILE_REGULAR, &secmem_readfile, out, len);
}

__attribute__((noinline)) void secmem_wipe_stack(void)
{
	unsigned char area[32 * 1024];

	sodium_memzero(area, sizeof area);
	/* Keep the compiler from assuming the area is unused. */
	__asm__ __volatile__("" : : "r"(area) : "memory");
}
