/* Bounded whole-file reads (readfile.h) and secmem_read_file on top. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "readfile.h"
#include "secretfs/error.h"
#include "secretfs/secmem.h"
#include "test.h"

static char *temp_with(size_t len, char fill)
{
	char *path = strdup("/tmp/test_readfile_XXXXXX");
	int fd = path ? mkstemp(path) : -1;
	char *text = malloc(len + 1);

	if (fd < 0 || !text)
		abort();
	memset(text, fill, len);
	if (write(fd, text, len) != (ssize_t)len)
		abort();
	close(fd);
	free(text);
	return path;
}

TEST(test_reads_a_file_exactly_at_the_bound_with_a_nul)
{
	char *path = temp_with(10000, 'x');
	unsigned char *buf = NULL;
	size_t len = 0;

	CHECK_EQ_INT(readfile(path, 10000, 0, &readfile_heap, &buf, &len), 0);
	CHECK_EQ_INT(len, 10000);
	CHECK(buf && buf[9999] == 'x' && buf[10000] == '\0');
	free(buf);
	unlink(path);
	free(path);
}

TEST(test_a_file_one_byte_over_the_bound_is_refused)
{
	char *path = temp_with(10001, 'x');
	unsigned char *buf = NULL;
	size_t len = 0;

	CHECK_EQ_INT(readfile(path, 10000, 0, &readfile_heap, &buf, &len), SFS_ETOOBIG);
	CHECK(buf == NULL);
	unlink(path);
	free(path);
}

TEST(test_a_pipe_is_read_to_its_end_and_bounded)
{
	unsigned char *buf = NULL;
	size_t len = 0;
	char path[64];
	int fds[2];

	/* More than the first guess (st_size is 0), less than a pipe's buffer. */
	CHECK_EQ_INT(pipe(fds), 0);
	for (int i = 0; i < 5000; i++)
		CHECK_EQ_INT(write(fds[1], "y", 1), 1);
	close(fds[1]);
	snprintf(path, sizeof path, "/proc/self/fd/%d", fds[0]);
	CHECK_EQ_INT(readfile(path, 5000, 0, &readfile_heap, &buf, &len), 0);
	CHECK_EQ_INT(len, 5000);
	free(buf);
	close(fds[0]);

	buf = NULL;
	CHECK_EQ_INT(pipe(fds), 0);
	for (int i = 0; i < 5000; i++)
		CHECK_EQ_INT(write(fds[1], "y", 1), 1);
	close(fds[1]);
	snprintf(path, sizeof path, "/proc/self/fd/%d", fds[0]);
	CHECK_EQ_INT(readfile(path, 4999, 0, &readfile_heap, &buf, &len), SFS_ETOOBIG);
	CHECK(buf == NULL);
	close(fds[0]);
}

TEST(test_errors_keep_errno)
{
	unsigned char *buf = NULL;
	size_t len = 0;

	CHECK_EQ_INT(readfile("/nonexistent/x", 10, 0, &readfile_heap, &buf, &len),
	             SFS_ENOTFOUND);
	CHECK_EQ_INT(errno, ENOENT);
	CHECK_EQ_INT(readfile("/tmp", 10, 0, &readfile_heap, &buf, &len), SFS_EIO);
	CHECK_EQ_INT(errno, EISDIR);
	CHECK_EQ_INT(readfile("/tmp", 10, READFILE_REGULAR, &readfile_heap, &buf, &len),
	             SFS_EIO);
	CHECK(buf == NULL);
}

TEST(test_secmem_read_file_reads_regular_files_into_guarded_memory)
{
	char *path = temp_with(300, 's');
	unsigned char *buf = NULL;
	size_t len = 0;

	CHECK_EQ_INT(secmem_init(), 0);
	CHECK_EQ_INT(secmem_read_file(path, 300, &buf, &len), 0);
	CHECK_EQ_INT(len, 300);
	CHECK(buf && buf[299] == 's' && buf[300] == '\0');
	secmem_free(buf);
	CHECK_EQ_INT(secmem_read_file(path, 299, &buf, &len), SFS_ETOOBIG);
	CHECK_EQ_INT(secmem_read_file("/dev/null", 10, &buf, &len), SFS_EIO);
	CHECK_EQ_INT(secmem_arena_bytes_in_use(), 0);
	unlink(path);
	free(path);
}

TEST_MAIN(test_reads_a_file_exactly_at_the_bound_with_a_nul,
          test_a_file_one_byte_over_the_bound_is_refused,
          test_a_pipe_is_read_to_its_end_and_bounded, test_errors_keep_errno,
          test_secmem_read_file_reads_regular_files_into_guarded_memory)
