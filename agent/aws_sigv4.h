/*
 * AWS Signature Version 4 for header-signed requests to services other than
 * S3 (Secrets Manager, STS): the canonical request, the string to sign and
 * the Authorization header value, with HMAC-SHA256 and SHA-256 from
 * libsodium. The signer sees exactly the headers that are sent (the same
 * http_header array goes to http_do), so what is signed is what is sent.
 *
 * Canonicalisation follows AWS's published rules and test suite: each path
 * segment is percent-encoded (unreserved characters kept; a '%' already in
 * the path is encoded again, as AWS requires for every service but S3) after
 * "." and ".." segments and repeated slashes are removed; query parameters
 * are decoded, re-encoded and sorted by name, then value; header names are
 * lowercased and sorted, values trimmed with inner runs of white space (and
 * folded line breaks) made one space, and repeated headers joined with ','
 * in the order given; the payload hash is the hex SHA-256 of the body.
 *
 * Nothing here logs. Buffers that held the secret key, derived keys or the
 * canonical request (which holds the session token) are wiped. Inputs past
 * the bounds below are refused with SFS_ETOOBIG, never truncated.
 * libsodium must be initialised (secmem_init) before use.
 */
#ifndef SECRETFS_AWS_SIGV4_H
#define SECRETFS_AWS_SIGV4_H

#include <stddef.h>
#include <time.h>

#include "secretfs/http.h"
#include "secretfs/secmem.h"

#define AWS_SIGV4_DATE_SIZE 17            /* "20150830T123600Z" and a NUL */
#define AWS_SIGV4_MAX_HEADERS 64          /* headers signed per request */
#define AWS_SIGV4_MAX_QUERY_PARAMS 64     /* query parameters per request */
#define AWS_SIGV4_MAX_KEY 128             /* bytes of access key id or secret key */
#define AWS_SIGV4_MAX_SCOPE_PART 64       /* bytes of a region or service name */
#define AWS_SIGV4_MAX_CANONICAL 65536     /* bytes of a canonical request */
#define AWS_SIGV4_STRING_TO_SIGN_SIZE 256 /* enough for any string to sign, and a NUL */

struct aws_sigv4_credentials {
	const char *access_key_id;     /* [A-Za-z0-9]+ */
	const char *secret_access_key; /* never copied but into wiped buffers */
	const char *session_token;     /* NULL when none */
};

struct aws_sigv4_request {
	const char *method; /* "POST" */
	/* The path as sent (percent-encoded), starting with '/'. It may end in
	 * "?query" when query is NULL. */
	const char *path;
	const char *query; /* the query as sent, without '?'; NULL: see path */
	/* Every header that is sent and signed, names in any case: at least
	 * Host and X-Amz-Date, and X-Amz-Security-Token when the credentials
	 * carry a session token. The secret flag is not used here. */
	const struct http_header *headers;
	size_t nheaders;
	const void *body; /* may be NULL when body_len is 0 */
	size_t body_len;
};

/*
 * Appends the canonical request of r to out, which must be empty; its max
 * bounds the result. On failure out is left empty. Returns 0, SFS_EINVAL
 * (no or malformed X-Amz-Date, a bad method, path, query escape, header
 * name or value), SFS_ETOOBIG (past out's max or a bound above) or
 * SFS_ENOMEM. The caller releases out with secbuf_release, which wipes it.
 */
int aws_sigv4_canonical_request(const struct aws_sigv4_request *r, struct secbuf *out);

/*
 * Writes the NUL-terminated string to sign of r for region and service
 * ([a-z0-9-], at most AWS_SIGV4_MAX_SCOPE_PART bytes) into out. Returns 0,
 * the errors of aws_sigv4_canonical_request, or SFS_ETOOBIG when outlen is
 * too small (out is then "").
 */
int aws_sigv4_string_to_sign(const struct aws_sigv4_request *r, const char *region,
                             const char *service, char *out, size_t outlen);

/*
 * Writes the NUL-terminated value of the Authorization header for r signed
 * with c for region and service into out:
 *   AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/secretsmanager/aws4_request,
 *   SignedHeaders=host;x-amz-date, Signature=<64 hex digits>
 * The date comes from r's X-Amz-Date header. The session token must be
 * signed: SFS_EINVAL when c has a token and r has no X-Amz-Security-Token
 * header holding exactly it, or r has one and c no token. Returns 0, those
 * of aws_sigv4_string_to_sign, SFS_EINVAL for malformed credentials, or
 * SFS_ETOOBIG for an over-long key or when outlen is too small (out is
 * then "").
 */
int aws_sigv4_authorization(const struct aws_sigv4_credentials *c, const char *region,
                            const char *service, const struct aws_sigv4_request *r,
                            char *out, size_t outlen);

/* Writes t as an X-Amz-Date value (UTC, "YYYYMMDDTHHMMSSZ"). Returns 0, or
 * SFS_EINVAL when t is not a time of the years 0 to 9999. */
int aws_sigv4_amz_date(time_t t, char out[AWS_SIGV4_DATE_SIZE]);

#endif
