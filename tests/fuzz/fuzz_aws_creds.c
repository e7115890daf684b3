/* The container-credentials and IMDS answers (aws_creds_from_json), and
 * the ISO 8601 times they carry. */
#include "aws.h"
#include "fuzz.h"
#include "secretfs/backend.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct backend_error err = {0};
	struct aws_creds c = {0};
	char *s = fuzz_strndup(data, size);
	time_t t;

	if (aws_creds_from_json((const char *)data, size, "fuzz", &c, &err) == 0 &&
	    (!c.access_key_id || !c.secret_access_key))
		abort();
	if (memchr(err.msg, '\0', sizeof err.msg) == NULL)
		abort();
	aws_creds_release(&c);
	aws_parse_time(s, &t);
	free(s);
	return 0;
}
