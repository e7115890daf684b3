/*
 * Guarded memory for plaintext: allocations come from a few sodium_malloc
 * arenas (mlocked, guard pages, excluded from core dumps) and are wiped on
 * free. Used for rendered content and open-file snapshots only.
 * Thread-safe.
 */
#ifndef SECRETFS_SECMEM_H
#define SECRETFS_SECMEM_H

#include <stddef.h>

/* Initialises libsodium and the arenas. Returns 0 or a negative SFS_ code. */
int secmem_init(void);

/* Zero-filled guarded block of len bytes (len 0 gives a valid 1-byte block);
 * NULL when out of memory. */
void *secmem_alloc(size_t len);

/* Wipes and releases a whole block from secmem_alloc (each block knows its
 * own size). Freeing anything else aborts. NULL-safe. */
void secmem_free(void *p);

/*
 * Zeroes the stack below the caller (32 KiB): rendering, hashing and
 * sealing leave fragments of plaintext in the frames they used. Call after
 * each unit of work that handled plaintext, from a shallow frame.
 */
void secmem_wipe_stack(void);

/*
 * Reads a whole regular file of at most max bytes into a guarded block
 * holding its *len bytes of content and a NUL. Returns 0, SFS_ENOTFOUND,
 * SFS_ETOOBIG, SFS_EIO or SFS_ENOMEM. Free the block with secmem_free(*out).
 */
int secmem_read_file(const char *path, size_t max, unsigned char **out, size_t *len);

/* A growable byte buffer in guarded memory with a hard cap given at init. */
struct secbuf {
	unsigned char *data; /* owned; secmem */
	size_t len;
	size_t cap;
	size_t max; /* hard cap on len */
};

/* Empty buffer that may grow up to max bytes; no allocation. */
void secbuf_init(struct secbuf *b, size_t max);

/* Appends n bytes; returns 0, SFS_ETOOBIG past the cap, or SFS_ENOMEM. */
int secbuf_append(struct secbuf *b, const void *p, size_t n);

/* Appends a NUL-terminated string. */
int secbuf_puts(struct secbuf *b, const char *s);

/* Wipes and frees the contents; the buffer is empty (reusable) afterwards. */
void secbuf_release(struct secbuf *b);

/* For tests: bytes of arena units currently handed out (direct allocations
 * larger than the arena limit are not counted). */
size_t secmem_arena_bytes_in_use(void);

#endif
