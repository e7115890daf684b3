/*
 * Whole-file reads with a hard bound, into memory from an allocator the
 * caller names: guarded memory for secrets (secmem_read_file), the heap
 * for plain text (the config). The one read loop of the daemon.
 */
#ifndef SECRETFS_READFILE_H
#define SECRETFS_READFILE_H

#include <stddef.h>

/* Where the content goes. Blocks are never resized in place: growth takes
 * a new block, copies and frees the old one (so a wiping free wipes it). */
struct readfile_alloc {
	void *(*alloc)(size_t len);
	void (*free)(void *p);
};

/* malloc and free. */
extern const struct readfile_alloc readfile_heap;

/* Refuse anything but a regular file (SFS_EIO). */
#define READFILE_REGULAR 1u

/*
 * Reads the file at path to its end, never more than max (< SIZE_MAX) bytes, into a
 * block from mem holding its *len bytes and a NUL; st_size is only a hint
 * (pipes and /proc files say 0). flags: 0 or READFILE_REGULAR. Returns 0,
 * SFS_ENOTFOUND (no such file), SFS_ETOOBIG (more than max bytes), SFS_EIO
 * (errno says why) or SFS_ENOMEM; *out and *len are set only on success.
 * Free the block with mem->free(*out).
 */
int readfile(const char *path, size_t max, unsigned flags,
             const struct readfile_alloc *mem, unsigned char **out, size_t *len);

#endif
