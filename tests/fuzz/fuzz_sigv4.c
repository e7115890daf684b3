/*
 * SigV4 canonicalisation of arbitrary bytes: NUL-separated method, path,
 * query, then header name/value pairs, then the body.
 */
#include "aws_sigv4.h"
#include "fuzz.h"

#define MAX_PARTS (3 + 2 * 8 + 1)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *parts[MAX_PARTS];
	struct http_header headers[8 + 1];
	struct aws_sigv4_request r = {0};
	struct secbuf out;
	char *buf, sts[AWS_SIGV4_STRING_TO_SIGN_SIZE];
	size_t n = fuzz_split(data, size, &buf, parts, MAX_PARTS), nh = 0;

	if (n < 3)
		goto out;
	r.method = parts[0];
	r.path = parts[1];
	r.query = parts[2][0] ? parts[2] : NULL;
	/* A date the signer accepts, unless the input brings its own. */
	headers[nh++] = (struct http_header){"X-Amz-Date", "20150830T123600Z", false};
	for (size_t i = 3; i + 1 < n && nh < 9; i += 2)
		headers[nh++] = (struct http_header){parts[i], parts[i + 1], false};
	r.headers = headers;
	r.nheaders = nh;
	if (n % 2 == 0) {
		r.body = parts[n - 1];
		r.body_len = strlen(parts[n - 1]);
	}
	secbuf_init(&out, AWS_SIGV4_MAX_CANONICAL);
	if (aws_sigv4_canonical_request(&r, &out) == 0 && out.len == 0)
		abort();
	secbuf_release(&out);
	aws_sigv4_string_to_sign(&r, "us-east-1", "service", sts, sizeof sts);
	{
		struct aws_sigv4_credentials c = {
		    "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", NULL};
		char auth[512];

		aws_sigv4_authorization(&c, "us-east-1", "service", &r, auth,
		                        sizeof auth);
	}
out:
	free(buf);
	return 0;
}
