/* The AWS shared config and credentials files (aws_ini_get), in both
 * styles, for the keys the credential chain reads. The input is handed
 * over as a memfd, since the parser reads files. */
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "aws.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const keys[] = {
	    "aws_access_key_id", "aws_secret_access_key",   "aws_session_token", "region",
	    "role_arn",          "web_identity_token_file", "credential_process"};
	static const char *const profiles[] = {"default", "payments"};
	char path[64];
	int fd = memfd_create("fuzz-ini", MFD_CLOEXEC);

	if (fd < 0)
		abort();
	if (size && write(fd, data, size) != (ssize_t)size)
		abort();
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	for (size_t p = 0; p < 2; p++)
		for (int style = 0; style < 2; style++)
			for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
				char *v = NULL;

				if (aws_ini_get(path, profiles[p], style, keys[k], &v) ==
				    0)
					secmem_free(v);
			}
	close(fd);
	return 0;
}
