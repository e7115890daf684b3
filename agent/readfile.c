/*
 * Bounded whole-file reads (see readfile.h). The buffer starts at the size
 * fstat gives and doubles, up to one byte past the bound: reading that
 * byte is how a file larger than the bound is told from one exactly at it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "readfile.h"
#include "secretfs/error.h"

#define READFILE_FIRST_CAP 4096 /* when st_size says nothing */

const struct readfile_alloc readfile_heap = {malloc, free};

/* Moves buf's len bytes into a new block of cap bytes; NULL when out of
 * memory (buf is left as it was). */
static unsigned char *grow(const struct readfile_alloc *mem, unsigned char *buf,
                           size_t len, size_t cap)
{
	unsigned char *bigger = mem->alloc(cap);

	if (!bigger)
		return NULL;
	if (len)
		memcpy(bigger, buf, len);
	mem->free(buf);
	return bigger;
}

int readfile(const char *path, size_t max, unsigned flags,
             const struct readfile_alloc *mem, unsigned char **out, size_t *len)
{
	unsigned char *buf = NULL, *bigger;
	size_t cap, n = 0, limit = max + 1;
	struct stat st;
	int fd, rc = SFS_EIO, saved_errno = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return errno == ENOENT ? SFS_ENOTFOUND : SFS_EIO;
	if (fstat(fd, &st) < 0) {
		saved_errno = errno;
		goto out;
	}
	if ((flags & READFILE_REGULAR) && !S_ISREG(st.st_mode)) {
		saved_errno = EINVAL;
		goto out;
	}
	if (S_ISREG(st.st_mode) && (uint64_t)st.st_size > max) {
		rc = SFS_ETOOBIG;
		goto out;
	}
	cap = st.st_size > 0 ? (size_t)st.st_size + 1 : READFILE_FIRST_CAP;
	if (cap > limit)
		cap = limit;
	buf = mem->alloc(cap);
	if (!buf) {
		rc = SFS_ENOMEM;
		goto out;
	}
	for (;;) {
		ssize_t r;

		if (n == cap) {
			if (cap == limit) {
				rc = SFS_ETOOBIG;
				goto out;
			}
			cap = cap > limit / 2 ? limit : cap * 2;
			if (!(bigger = grow(mem, buf, n, cap))) {
				rc = SFS_ENOMEM;
				goto out;
			}
			buf = bigger;
		}
		r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			saved_errno = errno;
			goto out;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	buf[n] = '\0'; /* the end is only seen with room left: n < cap */
	*out = buf;
	*len = n;
	buf = NULL;
	rc = 0;
out:
	if (buf)
		mem->free(buf);
	close(fd);
	if (saved_errno)
		errno = saved_errno;
	return rc;
}
