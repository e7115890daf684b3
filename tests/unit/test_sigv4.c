/*
 * Unit tests for the AWS Signature Version 4 signer (aws_sigv4.c): every
 * applicable case of AWS's SigV4 test suite (tests/unit/aws4_testsuite,
 * path from SIGV4_TESTSUITE_DIR) byte for byte, a Secrets Manager request
 * against a signature computed independently (python3 hmac, and openssl
 * dgst -sha256 -mac HMAC for the key chain), and the refusals.
 */
#include <dirent.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "aws_sigv4.h"
#include "secretfs/error.h"
#include "secretfs/secmem.h"
#include "test.h"

#ifndef SIGV4_TESTSUITE_DIR
#error "SIGV4_TESTSUITE_DIR must name tests/unit/aws4_testsuite"
#endif

/* The suite's credentials and scope (its README). */
#define SUITE_AKID "AKIDEXAMPLE"
#define SUITE_SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define SUITE_REGION "us-east-1"
#define SUITE_SERVICE "service"

/* Cases in the suite that apply to header-signed requests; all must pass. */
#define SUITE_APPLICABLE 33

#define MAX_CASES 64
#define MAX_REQ_HEADERS 16

/* Cases whose expectations describe a signer other than this one. */
static const struct {
	const char *name, *why;
} suite_skips[] = {
    {"post-sts-token/post-sts-header-after",
     "expects the session token added after signing, unsigned; secretfs always signs "
     "it (the refusal is test_session_token_must_be_signed)"},
};

/* get-vanilla-with-session-token's .req leaves the token for the signer to add;
 * secretfs sends and signs the header the caller gives, so the test adds it.
 * The value is the suite's (it appears in the case's .creq). */
#define VANILLA_TOKEN_CASE "get-vanilla-with-session-token"
#define VANILLA_TOKEN "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267"

static void setup(void)
{
	if (secmem_init() != 0)
		abort();
}

/* Whole file, NUL-terminated; NULL if unreadable. */
static char *read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 &&
	    fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1)) &&
	    fread(buf, 1, (size_t)n, f) == (size_t)n) {
		buf[n] = '\0';
		*len = (size_t)n;
	} else {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	return buf;
}

/* The canonical request of r as a malloc'd string, or NULL with *rc set. */
static char *canonical(const struct aws_sigv4_request *r, size_t max, int *rc)
{
	struct secbuf b;
	char *s = NULL;

	secbuf_init(&b, max);
	*rc = aws_sigv4_canonical_request(r, &b);
	if (*rc == 0 && (s = malloc(b.len + 1))) {
		memcpy(s, b.data, b.len);
		s[b.len] = '\0';
	}
	secbuf_release(&b);
	return s;
}

/* ---- the AWS test suite -------------------------------------------------- */

/* An HTTP request as the suite writes it, parsed in place. */
struct suite_req {
	char *text;
	char *method, *target;
	struct http_header headers[MAX_REQ_HEADERS];
	size_t nheaders;
	const char *body;
	size_t body_len;
};

/*
 * "METHOD target HTTP/1.1" (the target may hold spaces), header lines
 * "Name:value" with continuation lines (leading space or tab) kept in the
 * value after a line break, then after a blank line the body. Returns 0 or -1.
 */
static int suite_parse(char *text, size_t len, struct suite_req *q)
{
	char *end = text + len, *p, *nl, *sp;
	char *value_end[MAX_REQ_HEADERS];

	memset(q, 0, sizeof *q);
	q->text = text;
	nl = memchr(text, '\n', len);
	if (!nl)
		return -1;
	*nl = '\0';
	sp = strchr(text, ' ');
	if (!sp || !strrchr(text, ' ') || strrchr(text, ' ') == sp)
		return -1;
	*sp = '\0';
	*strrchr(sp + 1, ' ') = '\0';
	q->method = text;
	q->target = sp + 1;
	q->body = "";
	for (p = nl + 1; p < end; p = nl + 1) {
		char *colon;

		nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl)
			nl = end;
		if (nl == p) {
			q->body = nl + 1;
			q->body_len = (size_t)(end - (nl + 1));
			break;
		}
		if (*p == ' ' || *p == '\t') {
			if (q->nheaders == 0)
				return -1;
			value_end[q->nheaders - 1] = nl;
			continue;
		}
		colon = memchr(p, ':', (size_t)(nl - p));
		if (!colon || q->nheaders == MAX_REQ_HEADERS)
			return -1;
		*colon = '\0';
		q->headers[q->nheaders].name = p;
		q->headers[q->nheaders].value = colon + 1;
		value_end[q->nheaders++] = nl;
	}
	for (size_t i = 0; i < q->nheaders; i++)
		*value_end[i] = '\0';
	return 0;
}

static const char *suite_header(const struct suite_req *q, const char *name)
{
	for (size_t i = 0; i < q->nheaders; i++)
		if (strcasecmp(q->headers[i].name, name) == 0)
			return q->headers[i].value;
	return NULL;
}

static char *case_file(const char *dir, const char *name, const char *ext, size_t *len)
{
	const char *base = strrchr(name, '/') ? strrchr(name, '/') + 1 : name;
	char path[1024];

	if ((size_t)snprintf(path, sizeof path, "%s/%s/%s.%s", dir, name, base, ext) >=
	    sizeof path)
		return NULL;
	return read_all(path, len);
}

/* Collects every directory below dir/rel that holds <its name>.req. */
static void suite_find(const char *dir, const char *rel, char **names, size_t *n)
{
	char path[1024];
	struct dirent *e;
	DIR *d;

	snprintf(path, sizeof path, "%s%s%s", dir, *rel ? "/" : "", rel);
	if (!(d = opendir(path)))
		return;
	while ((e = readdir(d))) {
		char sub[512], file[1200];
		struct stat st;

		if (e->d_name[0] == '.' ||
		    (size_t)snprintf(sub, sizeof sub, "%s%s%s", rel, *rel ? "/" : "",
		                     e->d_name) >= sizeof sub)
			continue;
		snprintf(file, sizeof file, "%s/%s", dir, sub);
		if (stat(file, &st) != 0 || !S_ISDIR(st.st_mode))
			continue;
		snprintf(file, sizeof file, "%s/%s/%s.req", dir, sub, e->d_name);
		if (stat(file, &st) == 0 && *n < MAX_CASES)
			names[(*n)++] = strdup(sub);
		suite_find(dir, sub, names, n);
	}
	closedir(d);
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool same(const char *what, const char *name, const char *got, const char *want,
                 int rc)
{
	if (rc == 0 && got && strcmp(got, want) == 0)
		return true;
	fprintf(stderr, "  %s: %s differs (rc %d)\n--- got\n%s\n--- want\n%s\n", name,
	        what, rc, got ? got : "(none)", want);
	return false;
}

/* Signs one case and compares the three results; true when all match. */
static bool suite_run(const char *dir, const char *name)
{
	size_t len, creq_len, sts_len, authz_len;
	char *text = case_file(dir, name, "req", &len);
	char *want_creq = case_file(dir, name, "creq", &creq_len);
	char *want_sts = case_file(dir, name, "sts", &sts_len);
	char *want_authz = case_file(dir, name, "authz", &authz_len);
	struct aws_sigv4_credentials cred = {SUITE_AKID, SUITE_SECRET, NULL};
	char sts[AWS_SIGV4_STRING_TO_SIGN_SIZE], authz[512], *creq = NULL;
	struct aws_sigv4_request r;
	struct suite_req q;
	bool ok = false;
	int rc;

	if (!text || !want_creq || !want_sts || !want_authz ||
	    suite_parse(text, len, &q) != 0) {
		fprintf(stderr, "  %s: unreadable case\n", name);
		goto out;
	}
	cred.session_token = suite_header(&q, "X-Amz-Security-Token");
	if (strcmp(name, VANILLA_TOKEN_CASE) == 0 && !cred.session_token) {
		q.headers[q.nheaders++] =
		    (struct http_header){"X-Amz-Security-Token", VANILLA_TOKEN, true};
		cred.session_token = VANILLA_TOKEN;
	}
	r = (struct aws_sigv4_request){q.method,   q.target, NULL,      q.headers,
	                               q.nheaders, q.body,   q.body_len};

	creq = canonical(&r, AWS_SIGV4_MAX_CANONICAL, &rc);
	ok = same("canonical request", name, creq, want_creq, rc);
	rc = aws_sigv4_string_to_sign(&r, SUITE_REGION, SUITE_SERVICE, sts, sizeof sts);
	ok = same("string to sign", name, sts, want_sts, rc) && ok;
	rc = aws_sigv4_authorization(&cred, SUITE_REGION, SUITE_SERVICE, &r, authz,
	                             sizeof authz);
	ok = same("authorization", name, authz, want_authz, rc) && ok;
out:
	free(creq);
	free(text);
	free(want_creq);
	free(want_sts);
	free(want_authz);
	return ok;
}

static const char *suite_skip_reason(const char *name)
{
	for (size_t i = 0; i < sizeof suite_skips / sizeof suite_skips[0]; i++)
		if (strcmp(name, suite_skips[i].name) == 0)
			return suite_skips[i].why;
	return NULL;
}

TEST(test_aws_suite_vectors_match_byte_for_byte)
{
	char *names[MAX_CASES];
	size_t n = 0, passed = 0, failed = 0, skipped = 0;

	setup();
	suite_find(SIGV4_TESTSUITE_DIR, "", names, &n);
	qsort(names, n, sizeof names[0], cmp_names);
	for (size_t i = 0; i < n; i++) {
		const char *why = suite_skip_reason(names[i]);

		if (why) {
			printf("  skip %s: %s\n", names[i], why);
			skipped++;
		} else if (suite_run(SIGV4_TESTSUITE_DIR, names[i])) {
			passed++;
		} else {
			printf("  FAIL %s\n", names[i]);
			failed++;
		}
		free(names[i]);
	}
	printf("  aws4_testsuite: %zu passed, %zu failed, %zu skipped\n", passed, failed,
	       skipped);
	CHECK_EQ_INT(failed, 0);
	CHECK(passed >= SUITE_APPLICABLE);
	CHECK_EQ_INT(skipped, sizeof suite_skips / sizeof suite_skips[0]);
}

/* ---- a Secrets Manager request ------------------------------------------- */

#define SM_TOKEN "FwoGZXIvYXdzEXAMPLE//////////wEaDEXAMPLEtoken+session/value=="
#define SM_BODY "{\"SecretId\":\"prod/db/password\"}"
/* Computed apart from this code: python3 hmac/hashlib over the canonical
 * request written out by hand, and the same signing key and signature from
 * `openssl dgst -sha256 -mac HMAC -macopt hexkey:...` step by step. */
#define SM_SIGNATURE "df607443ce4aa88a8fd31240467b2bc275775e9a9817b597eeea240e09dc0050"

static const struct http_header sm_headers[] = {
    {"Host", "secretsmanager.us-east-1.amazonaws.com", false},
    {"X-Amz-Date", "20240115T093000Z", false},
    {"X-Amz-Target", "secretsmanager.GetSecretValue", false},
    {"Content-Type", "application/x-amz-json-1.1", false},
    {"X-Amz-Security-Token", SM_TOKEN, true},
};

static const struct aws_sigv4_credentials sm_cred = {SUITE_AKID, SUITE_SECRET, SM_TOKEN};

static struct aws_sigv4_request sm_request(void)
{
	return (struct aws_sigv4_request){"POST",
	                                  "/",
	                                  NULL,
	                                  sm_headers,
	                                  sizeof sm_headers / sizeof sm_headers[0],
	                                  SM_BODY,
	                                  strlen(SM_BODY)};
}

TEST(test_secrets_manager_request_signature)
{
	struct aws_sigv4_request r = sm_request();
	char authz[512];

	setup();
	CHECK_EQ_INT(aws_sigv4_authorization(&sm_cred, "us-east-1", "secretsmanager", &r,
	                                     authz, sizeof authz),
	             0);
	CHECK_STR_EQ(authz, "AWS4-HMAC-SHA256 "
	                    "Credential=AKIDEXAMPLE/20240115/us-east-1/secretsmanager/"
	                    "aws4_request, SignedHeaders=content-type;host;x-amz-date;"
	                    "x-amz-security-token;x-amz-target, Signature=" SM_SIGNATURE);
}

TEST(test_secrets_manager_authorization_structure)
{
	static const char prefix[] = "AWS4-HMAC-SHA256 Credential=";
	struct aws_sigv4_request r = sm_request();
	char authz[512], akid[64], scope[128], signed_headers[256], sig[80];
	const char *cred, *sh, *sg;

	setup();
	CHECK_EQ_INT(aws_sigv4_authorization(&sm_cred, "us-east-1", "secretsmanager", &r,
	                                     authz, sizeof authz),
	             0);
	CHECK(strncmp(authz, prefix, strlen(prefix)) == 0);
	cred = authz + strlen(prefix);
	sh = strstr(authz, ", SignedHeaders=");
	sg = strstr(authz, ", Signature=");
	CHECK(sh && sg && sh < sg);
	if (!sh || !sg)
		return;
	snprintf(akid, sizeof akid, "%.*s", (int)(strchr(cred, '/') - cred), cred);
	snprintf(scope, sizeof scope, "%.*s", (int)(sh - strchr(cred, '/') - 1),
	         strchr(cred, '/') + 1);
	snprintf(signed_headers, sizeof signed_headers, "%.*s",
	         (int)(sg - sh - strlen(", SignedHeaders=")),
	         sh + strlen(", SignedHeaders="));
	snprintf(sig, sizeof sig, "%s", sg + strlen(", Signature="));
	CHECK_STR_EQ(akid, "AKIDEXAMPLE");
	CHECK_STR_EQ(scope, "20240115/us-east-1/secretsmanager/aws4_request");
	CHECK_STR_EQ(signed_headers,
	             "content-type;host;x-amz-date;x-amz-security-token;x-amz-target");
	CHECK_EQ_INT(strlen(sig), 64);
	CHECK_EQ_INT(strspn(sig, "0123456789abcdef"), 64);
}

TEST(test_secrets_manager_canonical_request_signs_token_and_body)
{
	struct aws_sigv4_request r = sm_request();
	char *creq;
	int rc;

	setup();
	creq = canonical(&r, AWS_SIGV4_MAX_CANONICAL, &rc);
	CHECK_EQ_INT(rc, 0);
	CHECK_STR_EQ(creq,
	             "POST\n/\n\n"
	             "content-type:application/x-amz-json-1.1\n"
	             "host:secretsmanager.us-east-1.amazonaws.com\n"
	             "x-amz-date:20240115T093000Z\n"
	             "x-amz-security-token:" SM_TOKEN "\n"
	             "x-amz-target:secretsmanager.GetSecretValue\n\n"
	             "content-type;host;x-amz-date;x-amz-security-token;x-amz-target\n"
	             "45b31a307b92b59a4171e1fa74dad60572b13eb8a24c50670d8a208d70f08434");
	free(creq);
}

/* ---- refusals ------------------------------------------------------------ */

static const struct http_header plain_headers[] = {
    {"Host", "example.amazonaws.com", false},
    {"X-Amz-Date", "20150830T123600Z", false},
};

static int sign_with(const struct aws_sigv4_credentials *c, const struct http_header *h,
                     size_t n, char *out, size_t outlen)
{
	struct aws_sigv4_request r = {"POST", "/", NULL, h, n, NULL, 0};

	return aws_sigv4_authorization(c, "us-east-1", "service", &r, out, outlen);
}

TEST(test_session_token_must_be_signed)
{
	static const struct http_header other_token[] = {
	    {"Host", "example.amazonaws.com", false},
	    {"X-Amz-Date", "20150830T123600Z", false},
	    {"X-Amz-Security-Token", "another", true},
	};
	struct aws_sigv4_credentials with = {SUITE_AKID, SUITE_SECRET, "token"};
	struct aws_sigv4_credentials without = {SUITE_AKID, SUITE_SECRET, NULL};
	char out[512];

	setup();
	/* A token the headers do not carry would be sent unsigned, or not at all. */
	CHECK_EQ_INT(sign_with(&with, plain_headers, 2, out, sizeof out), SFS_EINVAL);
	CHECK_STR_EQ(out, "");
	CHECK_EQ_INT(sign_with(&with, other_token, 3, out, sizeof out), SFS_EINVAL);
	CHECK_EQ_INT(sign_with(&without, other_token, 3, out, sizeof out), SFS_EINVAL);
	CHECK_EQ_INT(sign_with(&without, plain_headers, 2, out, sizeof out), 0);
}

TEST(test_small_output_buffer_is_refused_not_truncated)
{
	struct aws_sigv4_credentials cred = {SUITE_AKID, SUITE_SECRET, NULL};
	struct aws_sigv4_request r = {"POST", "/", NULL, plain_headers, 2, NULL, 0};
	char out[512], small[512];
	size_t len;

	setup();
	CHECK_EQ_INT(sign_with(&cred, plain_headers, 2, out, sizeof out), 0);
	len = strlen(out);
	CHECK_EQ_INT(sign_with(&cred, plain_headers, 2, small, len + 1), 0);
	CHECK_STR_EQ(small, out);
	memset(small, 'x', sizeof small);
	CHECK_EQ_INT(sign_with(&cred, plain_headers, 2, small, len), SFS_ETOOBIG);
	CHECK_STR_EQ(small, "");
	CHECK_EQ_INT(aws_sigv4_string_to_sign(&r, "us-east-1", "service", small, 40),
	             SFS_ETOOBIG);
	CHECK_STR_EQ(small, "");
}

TEST(test_overlong_keys_and_scope_are_refused)
{
	char secret[AWS_SIGV4_MAX_KEY + 2], region[AWS_SIGV4_MAX_SCOPE_PART + 2],
	    out[1024];
	struct aws_sigv4_credentials cred = {SUITE_AKID, secret, NULL};
	struct aws_sigv4_request r = {"POST", "/", NULL, plain_headers, 2, NULL, 0};

	setup();
	memset(secret, 'k', sizeof secret - 1);
	secret[AWS_SIGV4_MAX_KEY] = '\0';
	CHECK_EQ_INT(
	    aws_sigv4_authorization(&cred, "us-east-1", "service", &r, out, sizeof out),
	    0);
	secret[AWS_SIGV4_MAX_KEY] = 'k';
	secret[AWS_SIGV4_MAX_KEY + 1] = '\0';
	CHECK_EQ_INT(
	    aws_sigv4_authorization(&cred, "us-east-1", "service", &r, out, sizeof out),
	    SFS_ETOOBIG);
	cred = (struct aws_sigv4_credentials){secret, SUITE_SECRET, NULL};
	memset(secret, 'A', sizeof secret - 1);
	CHECK_EQ_INT(
	    aws_sigv4_authorization(&cred, "us-east-1", "service", &r, out, sizeof out),
	    SFS_ETOOBIG);
	cred = (struct aws_sigv4_credentials){"AKID/x", SUITE_SECRET, NULL};
	CHECK_EQ_INT(
	    aws_sigv4_authorization(&cred, "us-east-1", "service", &r, out, sizeof out),
	    SFS_EINVAL);
	cred = (struct aws_sigv4_credentials){SUITE_AKID, SUITE_SECRET, NULL};
	memset(region, 'r', sizeof region - 1);
	region[sizeof region - 1] = '\0';
	CHECK_EQ_INT(
	    aws_sigv4_authorization(&cred, region, "service", &r, out, sizeof out),
	    SFS_ETOOBIG);
	CHECK_EQ_INT(
	    aws_sigv4_authorization(&cred, "us/east", "service", &r, out, sizeof out),
	    SFS_EINVAL);
}

TEST(test_canonical_request_past_its_cap_is_refused)
{
	static char big[AWS_SIGV4_MAX_CANONICAL];
	struct http_header h[] = {
	    {"Host", "example.amazonaws.com", false},
	    {"X-Amz-Date", "20150830T123600Z", false},
	    {"X-Big", big, false},
	};
	struct aws_sigv4_request r = {"GET", "/", NULL, h, 3, NULL, 0};
	struct aws_sigv4_credentials cred = {SUITE_AKID, SUITE_SECRET, NULL};
	char out[512];
	int rc;

	setup();
	CHECK(canonical(&r, 64, &rc) == NULL);
	CHECK_EQ_INT(rc, SFS_ETOOBIG);
	memset(big, 'v', sizeof big - 1);
	CHECK_EQ_INT(
	    aws_sigv4_authorization(&cred, "us-east-1", "service", &r, out, sizeof out),
	    SFS_ETOOBIG);
}

TEST(test_too_many_headers_or_parameters_are_refused)
{
	struct http_header h[AWS_SIGV4_MAX_HEADERS + 1];
	char query[8 * (AWS_SIGV4_MAX_QUERY_PARAMS + 1)] = "";
	size_t used = 0;
	struct aws_sigv4_request r = {"GET", "/", NULL, h, 2, NULL, 0};
	char *creq;
	int rc;

	setup();
	h[0] = (struct http_header){"X-Amz-Date", "20150830T123600Z", false};
	for (size_t i = 1; i < sizeof h / sizeof h[0]; i++)
		h[i] = (struct http_header){"X-H", "v", false};
	r.nheaders = AWS_SIGV4_MAX_HEADERS + 1;
	CHECK(canonical(&r, AWS_SIGV4_MAX_CANONICAL, &rc) == NULL);
	CHECK_EQ_INT(rc, SFS_ETOOBIG);
	r.nheaders = 1;
	for (size_t i = 0; i < AWS_SIGV4_MAX_QUERY_PARAMS; i++)
		used += (size_t)snprintf(query + used, sizeof query - used, "a=1&");
	r.query = query;
	creq = canonical(&r, AWS_SIGV4_MAX_CANONICAL, &rc);
	CHECK_EQ_INT(rc, 0);
	free(creq);
	snprintf(query + used, sizeof query - used, "a=1");
	CHECK(canonical(&r, AWS_SIGV4_MAX_CANONICAL, &rc) == NULL);
	CHECK_EQ_INT(rc, SFS_ETOOBIG);
}

TEST(test_malformed_requests_are_refused)
{
	static const struct {
		const char *method, *path, *query, *name, *value;
	} bad[] = {
	    {"POST", "/", NULL, "X-Other", "1"}, /* no X-Amz-Date */
	    {"POST", "/", NULL, "X-Amz-Date", "2015-08-30"},
	    {"post", "/", NULL, "X-Other", "1"},
	    {"POST", "no-slash", NULL, "X-Other", "1"},
	    {"POST", "/?a=1", "b=2", "X-Other", "1"}, /* two queries */
	    {"POST", "/", "a=%G1", "X-Other", "1"},   /* bad escape */
	    {"POST", "/", "a=%4", "X-Other", "1"},    /* short escape */
	    {"POST", "/a\nb", NULL, "X-Other", "1"},  /* control character */
	    {"POST", "/", NULL, "Bad Name", "1"},
	    {"POST", "/", NULL, "Bad:Name", "1"},
	    {"POST", "/", NULL, "X-Other", "a\nInjected: 1"}, /* line break not folded */
	    {"POST", "/", NULL, "X-Other", "a\rb"},
	    {"POST", "/", NULL, "X-Other", "a\x01"},
	};

	setup();
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct http_header h[3] = {{"Host", "example.amazonaws.com", false}};
		struct aws_sigv4_request r = {
		    bad[i].method, bad[i].path, bad[i].query, h, 1, NULL, 0};
		int rc;

		if (i != 0 && strcmp(bad[i].name, "X-Amz-Date") != 0)
			h[r.nheaders++] =
			    (struct http_header){"X-Amz-Date", "20150830T123600Z", false};
		h[r.nheaders++] = (struct http_header){bad[i].name, bad[i].value, false};

		CHECK(canonical(&r, AWS_SIGV4_MAX_CANONICAL, &rc) == NULL);
		if (rc != SFS_EINVAL)
			fprintf(stderr, "  case %zu\n", i);
		CHECK_EQ_INT(rc, SFS_EINVAL);
	}
}

/* ---- canonical forms beyond the suite ------------------------------------ */

static void check_uri(const char *path, const char *query, const char *want)
{
	struct http_header h[] = {{"X-Amz-Date", "20150830T123600Z", false}};
	struct aws_sigv4_request r = {"GET", path, query, h, 1, NULL, 0};
	char *creq;
	int rc;

	creq = canonical(&r, AWS_SIGV4_MAX_CANONICAL, &rc);
	CHECK_EQ_INT(rc, 0);
	if (creq)
		*strstr(creq, "\nx-amz-date") = '\0';
	CHECK_STR_EQ(creq ? creq + strlen("GET\n") : NULL, want);
	free(creq);
}

TEST(test_paths_are_normalised_then_encoded_again)
{
	setup();
	check_uri("/a/b/../c/./d//", NULL, "/a/c/d/\n");
	check_uri("/../..", NULL, "/\n");
	check_uri("/a/b/..", NULL, "/a/\n");
	check_uri("/a/.", NULL, "/a/\n");
	check_uri("/a%2Fb", NULL, "/a%252Fb\n");
	check_uri("/secret name+1", NULL, "/secret%20name%2B1\n");
}

TEST(test_queries_are_decoded_encoded_and_sorted)
{
	setup();
	check_uri("/?b=2&a=3&a=1", NULL, "/\na=1&a=3&b=2");
	check_uri("/", "b=2&a=3&a=1", "/\na=1&a=3&b=2");
	check_uri("/", "flag&&x=a%2fb&y=a b&z=", "/\nflag=&x=a%2Fb&y=a%20b&z=");
	check_uri("/", "", "/\n");
}

TEST(test_header_values_are_trimmed_and_folded)
{
	struct http_header h[] = {
	    {"X-Amz-Date", " 20150830T123600Z\t", false},
	    {"x-multi", "  a\t\tb\r\n   c  ", false},
	    {"X-MULTI", "", false},
	};
	struct aws_sigv4_request r = {"GET", "/", NULL, h, 3, NULL, 0};
	char *creq;
	int rc;

	setup();
	creq = canonical(&r, AWS_SIGV4_MAX_CANONICAL, &rc);
	CHECK_EQ_INT(rc, 0);
	CHECK_STR_CONTAINS(creq, "\nx-amz-date:20150830T123600Z\nx-multi:a b c,\n\n"
	                         "x-amz-date;x-multi\n");
	free(creq);
}

TEST(test_amz_date_is_utc_and_bounded)
{
	char d[AWS_SIGV4_DATE_SIZE];

	CHECK_EQ_INT(aws_sigv4_amz_date(1440938160, d), 0);
	CHECK_STR_EQ(d, "20150830T123600Z");
	CHECK_EQ_INT(aws_sigv4_amz_date(0, d), 0);
	CHECK_STR_EQ(d, "19700101T000000Z");
	/* 10000-01-01T00:00:00Z does not fit the format. */
	CHECK_EQ_INT(aws_sigv4_amz_date((time_t)253402300800LL, d), SFS_EINVAL);
	CHECK_STR_EQ(d, "");
}

TEST_MAIN(test_aws_suite_vectors_match_byte_for_byte,
          test_secrets_manager_request_signature,
          test_secrets_manager_authorization_structure,
          test_secrets_manager_canonical_request_signs_token_and_body,
          test_session_token_must_be_signed,
          test_small_output_buffer_is_refused_not_truncated,
          test_overlong_keys_and_scope_are_refused,
          test_canonical_request_past_its_cap_is_refused,
          test_too_many_headers_or_parameters_are_refused,
          test_malformed_requests_are_refused,
          test_paths_are_normalised_then_encoded_again,
          test_queries_are_decoded_encoded_and_sorted,
          test_header_values_are_trimmed_and_folded, test_amz_date_is_utc_and_bounded)
