/*
 * AWS Signature Version 4 (see aws_sigv4.h). The canonical request is built
 * in a secbuf (guarded memory, wiped on release) because it carries the
 * session token; the string to sign holds only its hash. The signing key is
 * derived on the stack and wiped, as is the "AWS4" || secret key buffer and
 * every HMAC state.
 */
#include <sodium.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "aws_sigv4.h"
#include "secretfs/error.h"

#define SIGV4_ALGORITHM "AWS4-HMAC-SHA256"
#define SIGV4_TERMINATOR "aws4_request"
#define SIGV4_MAX_METHOD 16
#define SIGV4_HASH_HEX_SIZE (crypto_hash_sha256_BYTES * 2 + 1)

/* Where the parts of a canonical request that the signature reuses are. */
struct sigv4_canon {
	size_t signed_off; /* the SignedHeaders list, inside the canonical request */
	size_t signed_len;
	char date[AWS_SIGV4_DATE_SIZE]; /* from X-Amz-Date */
};

/* One query parameter: offsets of its encoded name and value in a scratch buffer. */
struct sigv4_param {
	size_t name, name_len;
	size_t value, value_len;
};

static bool is_unreserved(unsigned char ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
	       (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_' ||
	       ch == '~';
}

static bool is_ctl(unsigned char ch)
{
	return ch < 0x20 || ch == 0x7f;
}

/* RFC 7230 tchar: what a header name is made of. */
static bool is_tchar(unsigned char ch)
{
	return ch > 0x20 && ch < 0x7f && !strchr("\"(),/:;<=>?@[\\]{}", ch);
}

static char to_lower(char ch)
{
	return ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
}

static int hex_value(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	return -1;
}

/* The bytes at off in b; b may still be empty (data NULL) when len is 0. */
static const char *buf_at(const struct secbuf *b, size_t off)
{
	return b->data ? (const char *)b->data + off : "";
}

/* Byte-wise order, a prefix first. */
static int bytes_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
	size_t n = alen < blen ? alen : blen;
	int c = n ? memcmp(a, b, n) : 0;

	if (c != 0)
		return c;
	return alen < blen ? -1 : alen > blen;
}

/* ASCII case-insensitive order of header names. */
static int name_cmp(const char *a, const char *b)
{
	while (*a && to_lower(*a) == to_lower(*b)) {
		a++;
		b++;
	}
	return (unsigned char)to_lower(*a) - (unsigned char)to_lower(*b);
}

static int append_encoded_byte(struct secbuf *b, unsigned char ch)
{
	static const char hex[] = "0123456789ABCDEF";
	char esc[3] = {'%', hex[ch >> 4], hex[ch & 15]};

	if (is_unreserved(ch))
		return secbuf_append(b, &ch, 1);
	return secbuf_append(b, esc, sizeof esc);
}

static int append_encoded(struct secbuf *b, const char *p, size_t n)
{
	int rc = 0;

	for (size_t i = 0; i < n && rc == 0; i++)
		rc = append_encoded_byte(b, (unsigned char)p[i]);
	return rc;
}

/* Decodes %XX escapes in the n bytes at p and appends the result encoded. */
static int append_reencoded(struct secbuf *b, const char *p, size_t n)
{
	int rc = 0;

	for (size_t i = 0; i < n && rc == 0; i++) {
		unsigned char ch = (unsigned char)p[i];

		if (is_ctl(ch))
			return SFS_EINVAL;
		if (ch == '%') {
			int hi = i + 2 < n ? hex_value(p[i + 1]) : -1;
			int lo = i + 2 < n ? hex_value(p[i + 2]) : -1;

			if (hi < 0 || lo < 0)
				return SFS_EINVAL;
			ch = (unsigned char)(hi << 4 | lo);
			i += 2;
		}
		rc = append_encoded_byte(b, ch);
	}
	return rc;
}

/*
 * The canonical URI: segments encoded, empty and "." segments dropped, ".."
 * removing the segment before it (never above the root). A path ending in
 * '/', "." or ".." keeps a trailing slash, as in RFC 3986 section 5.2.4.
 */
static int append_path(struct secbuf *b, const char *path, size_t len)
{
	size_t base = b->len, i = 0;
	bool dir = false, dotdot;
	int rc = 0;

	if (len == 0 || path[0] != '/')
		return SFS_EINVAL;
	for (size_t k = 0; k < len; k++)
		if (is_ctl((unsigned char)path[k]))
			return SFS_EINVAL;
	while (i < len && rc == 0) {
		const char *seg = path + i + 1;
		size_t n = 0;

		while (i + 1 + n < len && seg[n] != '/')
			n++;
		dotdot = n == 2 && seg[0] == '.' && seg[1] == '.';
		dir = n == 0 || (n == 1 && seg[0] == '.') || dotdot;
		if (dotdot) {
			while (b->len > base && b->data[b->len - 1] != '/')
				b->len--;
			if (b->len > base)
				b->len--;
		} else if (!dir) {
			rc = secbuf_append(b, "/", 1);
			if (rc == 0)
				rc = append_encoded(b, seg, n);
		}
		i += 1 + n;
	}
	if (rc == 0 && (b->len == base || dir))
		rc = secbuf_append(b, "/", 1);
	return rc;
}

static int param_cmp(const struct secbuf *s, const struct sigv4_param *a,
                     const struct sigv4_param *b)
{
	int c =
	    bytes_cmp(buf_at(s, a->name), a->name_len, buf_at(s, b->name), b->name_len);

	if (c != 0)
		return c;
	return bytes_cmp(buf_at(s, a->value), a->value_len, buf_at(s, b->value),
	                 b->value_len);
}

/* The canonical query: parameters re-encoded, sorted by name then value,
 * "name=value" joined with '&'; empty pieces ("a=1&&b=2") are dropped. */
static int append_query(struct secbuf *b, const char *q, size_t len)
{
	struct sigv4_param params[AWS_SIGV4_MAX_QUERY_PARAMS];
	struct secbuf scratch;
	size_t np = 0, start = 0;
	int rc = 0;

	secbuf_init(&scratch, AWS_SIGV4_MAX_CANONICAL);
	while (start < len && rc == 0) {
		const char *piece = q + start, *amp = memchr(piece, '&', len - start);
		size_t n = amp ? (size_t)(amp - piece) : len - start;
		const char *eq = memchr(piece, '=', n);
		size_t name_len = eq ? (size_t)(eq - piece) : n;
		struct sigv4_param *p;

		start += n + 1;
		if (n == 0)
			continue;
		if (np == AWS_SIGV4_MAX_QUERY_PARAMS) {
			rc = SFS_ETOOBIG;
			break;
		}
		p = &params[np];
		p->name = scratch.len;
		rc = append_reencoded(&scratch, piece, name_len);
		p->name_len = scratch.len - p->name;
		p->value = scratch.len;
		if (rc == 0 && eq)
			rc = append_reencoded(&scratch, eq + 1, n - name_len - 1);
		p->value_len = scratch.len - p->value;
		np++;
	}
	for (size_t i = 1; i < np && rc == 0; i++) {
		struct sigv4_param p = params[i];
		size_t j = i;

		for (; j > 0 && param_cmp(&scratch, &params[j - 1], &p) > 0; j--)
			params[j] = params[j - 1];
		params[j] = p;
	}
	for (size_t i = 0; i < np && rc == 0; i++) {
		if (i > 0)
			rc = secbuf_append(b, "&", 1);
		if (rc == 0)
			rc = secbuf_append(b, buf_at(&scratch, params[i].name),
			                   params[i].name_len);
		if (rc == 0)
			rc = secbuf_append(b, "=", 1);
		if (rc == 0)
			rc = secbuf_append(b, buf_at(&scratch, params[i].value),
			                   params[i].value_len);
	}
	secbuf_release(&scratch);
	return rc;
}

static int append_lower(struct secbuf *b, const char *s)
{
	int rc = 0;

	for (; *s && rc == 0; s++) {
		char ch = to_lower(*s);
		rc = secbuf_append(b, &ch, 1);
	}
	return rc;
}

/*
 * Appends a header value trimmed, each run of spaces, tabs and folded line
 * breaks (CRLF or LF followed by a space or tab) as one space. Any other
 * control character, or a line break that does not fold, is SFS_EINVAL.
 */
static int append_header_value(struct secbuf *b, const char *v)
{
	const unsigned char *p = (const unsigned char *)v;
	bool any = false, space = false;
	int rc = 0;

	for (; *p && rc == 0; p++) {
		if (p[0] == '\r' && p[1] == '\n')
			p++;
		if (p[0] == '\n' && p[1] != ' ' && p[1] != '\t')
			return SFS_EINVAL;
		if (*p == ' ' || *p == '\t' || *p == '\n') {
			space = any;
			continue;
		}
		if (is_ctl(*p))
			return SFS_EINVAL;
		if (space)
			rc = secbuf_append(b, " ", 1);
		if (rc == 0)
			rc = secbuf_append(b, p, 1);
		any = true;
		space = false;
	}
	return rc;
}

/* Canonical headers, a blank line, and the signed header list (recorded in cn). */
static int append_headers(struct secbuf *b, const struct http_header *h, size_t n,
                          struct sigv4_canon *cn)
{
	size_t order[AWS_SIGV4_MAX_HEADERS];
	int rc = 0;

	if (n > AWS_SIGV4_MAX_HEADERS)
		return SFS_ETOOBIG;
	for (size_t i = 0; i < n; i++) {
		if (!h[i].name || !h[i].value || !h[i].name[0])
			return SFS_EINVAL;
		for (const char *s = h[i].name; *s; s++)
			if (!is_tchar((unsigned char)*s))
				return SFS_EINVAL;
	}
	/* Stable, so repeated headers keep the order they were given in. */
	for (size_t i = 0; i < n; i++) {
		size_t j = i;

		for (; j > 0 && name_cmp(h[order[j - 1]].name, h[i].name) > 0; j--)
			order[j] = order[j - 1];
		order[j] = i;
	}
	for (size_t i = 0; i < n && rc == 0; i++) {
		bool first =
		    i == 0 || name_cmp(h[order[i - 1]].name, h[order[i]].name) != 0;
		bool last =
		    i + 1 == n || name_cmp(h[order[i]].name, h[order[i + 1]].name) != 0;

		if (first)
			rc = append_lower(b, h[order[i]].name);
		if (rc == 0)
			rc = secbuf_append(b, first ? ":" : ",", 1);
		if (rc == 0)
			rc = append_header_value(b, h[order[i]].value);
		if (rc == 0 && last)
			rc = secbuf_append(b, "\n", 1);
	}
	if (rc == 0)
		rc = secbuf_append(b, "\n", 1);
	cn->signed_off = b->len;
	for (size_t i = 0; i < n && rc == 0; i++) {
		if (i > 0 && name_cmp(h[order[i - 1]].name, h[order[i]].name) == 0)
			continue;
		if (i > 0)
			rc = secbuf_append(b, ";", 1);
		if (rc == 0)
			rc = append_lower(b, h[order[i]].name);
	}
	cn->signed_len = b->len - cn->signed_off;
	return rc;
}

/* The value of the one header named name (any case), or NULL when there is
 * none or more than one. */
static const char *header_value(const struct aws_sigv4_request *r, const char *name,
                                size_t *count)
{
	const char *v = NULL;

	*count = 0;
	for (size_t i = 0; i < r->nheaders; i++) {
		if (r->headers[i].name && name_cmp(r->headers[i].name, name) == 0) {
			v = r->headers[i].value;
			(*count)++;
		}
	}
	return *count == 1 ? v : NULL;
}

/* Length of v without the spaces and tabs around it; *start is where it begins. */
static size_t trimmed(const char *v, const char **start)
{
	size_t n;

	while (*v == ' ' || *v == '\t')
		v++;
	n = strlen(v);
	while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
		n--;
	*start = v;
	return n;
}

/* Copies the X-Amz-Date value (YYYYMMDDTHHMMSSZ) into date. */
static int request_date(const struct aws_sigv4_request *r, char date[AWS_SIGV4_DATE_SIZE])
{
	size_t count;
	const char *v = header_value(r, "x-amz-date", &count), *s;

	if (!v || trimmed(v, &s) != AWS_SIGV4_DATE_SIZE - 1 || s[8] != 'T' ||
	    s[15] != 'Z')
		return SFS_EINVAL;
	for (size_t i = 0; i < 15; i++)
		if (i != 8 && (s[i] < '0' || s[i] > '9'))
			return SFS_EINVAL;
	memcpy(date, s, AWS_SIGV4_DATE_SIZE - 1);
	date[AWS_SIGV4_DATE_SIZE - 1] = '\0';
	return 0;
}

static int check_method(const char *m)
{
	size_t n = m ? strnlen(m, SIGV4_MAX_METHOD + 1) : 0;

	if (n == 0 || n > SIGV4_MAX_METHOD)
		return SFS_EINVAL;
	for (size_t i = 0; i < n; i++)
		if (m[i] < 'A' || m[i] > 'Z')
			return SFS_EINVAL;
	return 0;
}

/* A region or service name: [a-z0-9-], 1 to AWS_SIGV4_MAX_SCOPE_PART bytes. */
static int check_scope_part(const char *s)
{
	size_t n = s ? strnlen(s, AWS_SIGV4_MAX_SCOPE_PART + 1) : 0;

	if (n > AWS_SIGV4_MAX_SCOPE_PART)
		return SFS_ETOOBIG;
	if (n == 0)
		return SFS_EINVAL;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
		      s[i] == '-'))
			return SFS_EINVAL;
	return 0;
}

/* Builds the canonical request of r into out (empty), or leaves out empty. */
static int canonical_build(const struct aws_sigv4_request *r, struct secbuf *out,
                           struct sigv4_canon *cn)
{
	unsigned char hash[crypto_hash_sha256_BYTES];
	char hex[SIGV4_HASH_HEX_SIZE];
	const char *query, *mark;
	size_t path_len;
	int rc;

	/* Nothing is held yet, and out is the caller's until it is known empty. */
	if (!r || !r->path || (r->nheaders && !r->headers) || (r->body_len && !r->body) ||
	    out->len != 0)
		return SFS_EINVAL;
	mark = strchr(r->path, '?');
	if (mark && r->query)
		return SFS_EINVAL;
	path_len = mark ? (size_t)(mark - r->path) : strlen(r->path);
	query = mark ? mark + 1 : r->query;
	rc = check_method(r->method);
	if (rc == 0)
		rc = request_date(r, cn->date);
	if (rc == 0)
		rc = secbuf_puts(out, r->method);
	if (rc == 0)
		rc = secbuf_append(out, "\n", 1);
	if (rc == 0)
		rc = append_path(out, r->path, path_len);
	if (rc == 0)
		rc = secbuf_append(out, "\n", 1);
	if (rc == 0 && query)
		rc = append_query(out, query, strlen(query));
	if (rc == 0)
		rc = secbuf_append(out, "\n", 1);
	if (rc == 0)
		rc = append_headers(out, r->headers, r->nheaders, cn);
	if (rc == 0)
		rc = secbuf_append(out, "\n", 1);
	if (rc != 0)
		goto out;
	crypto_hash_sha256(hash, r->body_len ? r->body : (const void *)"", r->body_len);
	sodium_bin2hex(hex, sizeof hex, hash, sizeof hash);
	rc = secbuf_append(out, hex, sizeof hex - 1);
out:
	if (rc != 0)
		secbuf_release(out);
	return rc;
}

static int string_to_sign_build(const struct secbuf *creq, const struct sigv4_canon *cn,
                                const char *region, const char *service, char *out,
                                size_t outlen)
{
	unsigned char hash[crypto_hash_sha256_BYTES];
	char hex[SIGV4_HASH_HEX_SIZE];
	int n;

	crypto_hash_sha256(hash, creq->data, creq->len);
	sodium_bin2hex(hex, sizeof hex, hash, sizeof hash);
	n = snprintf(out, outlen,
	             SIGV4_ALGORITHM "\n%s\n%.8s/%s/%s/" SIGV4_TERMINATOR "\n%s",
	             cn->date, cn->date, region, service, hex);
	if (n < 0 || (size_t)n >= outlen) {
		out[0] = '\0';
		return SFS_ETOOBIG;
	}
	return 0;
}

/* out = HMAC-SHA256(key, msg); out may be key. */
static void hmac_sha256(unsigned char out[crypto_auth_hmacsha256_BYTES],
                        const unsigned char *key, size_t keylen, const char *msg,
                        size_t len)
{
	crypto_auth_hmacsha256_state st;

	crypto_auth_hmacsha256_init(&st, key, keylen);
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)msg, len);
	crypto_auth_hmacsha256_final(&st, out);
	sodium_memzero(&st, sizeof st);
}

/* Signs sts with the key derived from the secret (checked by the caller) for
 * the date, region and service; writes the hex signature. */
static void sign(const char *secret, const struct sigv4_canon *cn, const char *region,
                 const char *service, const char *sts, char sig[SIGV4_HASH_HEX_SIZE])
{
	unsigned char k[4 + AWS_SIGV4_MAX_KEY];
	unsigned char key[crypto_auth_hmacsha256_BYTES];
	size_t n = strlen(secret);

	memcpy(k, "AWS4", 4);
	memcpy(k + 4, secret, n);
	hmac_sha256(key, k, 4 + n, cn->date, 8);
	sodium_memzero(k, sizeof k);
	hmac_sha256(key, key, sizeof key, region, strlen(region));
	hmac_sha256(key, key, sizeof key, service, strlen(service));
	hmac_sha256(key, key, sizeof key, SIGV4_TERMINATOR, strlen(SIGV4_TERMINATOR));
	hmac_sha256(key, key, sizeof key, sts, strlen(sts));
	sodium_bin2hex(sig, SIGV4_HASH_HEX_SIZE, key, sizeof key);
	sodium_memzero(key, sizeof key);
}

/* The keys' shapes, and the session token signed exactly when there is one. */
static int check_credentials(const struct aws_sigv4_credentials *c,
                             const struct aws_sigv4_request *r)
{
	size_t akid =
	    c->access_key_id ? strnlen(c->access_key_id, AWS_SIGV4_MAX_KEY + 1) : 0;
	size_t secret = c->secret_access_key
	                    ? strnlen(c->secret_access_key, AWS_SIGV4_MAX_KEY + 1)
	                    : 0;
	size_t count, n;
	const char *v = header_value(r, "x-amz-security-token", &count), *s;

	if (akid > AWS_SIGV4_MAX_KEY || secret > AWS_SIGV4_MAX_KEY)
		return SFS_ETOOBIG;
	if (akid == 0 || secret == 0)
		return SFS_EINVAL;
	for (size_t i = 0; i < akid; i++) {
		char ch = c->access_key_id[i];
		if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
		      (ch >= '0' && ch <= '9')))
			return SFS_EINVAL;
	}
	if (!c->session_token)
		return count == 0 ? 0 : SFS_EINVAL;
	if (!v)
		return SFS_EINVAL;
	n = trimmed(v, &s);
	return n == strlen(c->session_token) && memcmp(s, c->session_token, n) == 0
	           ? 0
	           : SFS_EINVAL;
}

/* Checks region and service, and builds the canonical request of r into creq
 * (empty) and its string to sign into sts. */
static int prepare(const struct aws_sigv4_request *r, const char *region,
                   const char *service, struct secbuf *creq, struct sigv4_canon *cn,
                   char *sts, size_t stslen)
{
	int rc = check_scope_part(region);

	if (rc == 0)
		rc = check_scope_part(service);
	if (rc == 0)
		rc = canonical_build(r, creq, cn);
	if (rc == 0)
		rc = string_to_sign_build(creq, cn, region, service, sts, stslen);
	return rc;
}

int aws_sigv4_canonical_request(const struct aws_sigv4_request *r, struct secbuf *out)
{
	struct sigv4_canon cn;

	return canonical_build(r, out, &cn);
}

int aws_sigv4_string_to_sign(const struct aws_sigv4_request *r, const char *region,
                             const char *service, char *out, size_t outlen)
{
	struct secbuf creq;
	struct sigv4_canon cn;
	int rc;

	if (!out || outlen == 0)
		return SFS_EINVAL;
	out[0] = '\0';
	secbuf_init(&creq, AWS_SIGV4_MAX_CANONICAL);
	rc = prepare(r, region, service, &creq, &cn, out, outlen);
	secbuf_release(&creq);
	return rc;
}

int aws_sigv4_authorization(const struct aws_sigv4_credentials *c, const char *region,
                            const char *service, const struct aws_sigv4_request *r,
                            char *out, size_t outlen)
{
	char sts[AWS_SIGV4_STRING_TO_SIGN_SIZE];
	char sig[SIGV4_HASH_HEX_SIZE];
	struct secbuf creq;
	struct sigv4_canon cn;
	int rc, n;

	if (!out || outlen == 0 || !c)
		return SFS_EINVAL;
	out[0] = '\0';
	secbuf_init(&creq, AWS_SIGV4_MAX_CANONICAL);
	rc = prepare(r, region, service, &creq, &cn, sts, sizeof sts);
	if (rc == 0)
		rc = check_credentials(c, r);
	if (rc != 0)
		goto out;
	sign(c->secret_access_key, &cn, region, service, sts, sig);
	n = snprintf(out, outlen,
	             SIGV4_ALGORITHM " Credential=%s/%.8s/%s/%s/" SIGV4_TERMINATOR
	                             ", SignedHeaders=%.*s, Signature=%s",
	             c->access_key_id, cn.date, region, service, (int)cn.signed_len,
	             buf_at(&creq, cn.signed_off), sig);
	if (n < 0 || (size_t)n >= outlen) {
		out[0] = '\0';
		rc = SFS_ETOOBIG;
	}
out:
	secbuf_release(&creq);
	return rc;
}

int aws_sigv4_amz_date(time_t t, char out[AWS_SIGV4_DATE_SIZE])
{
	struct tm tm;
	int n;

	out[0] = '\0';
	if (!gmtime_r(&t, &tm) || tm.tm_year < -1900 || tm.tm_year > 9999 - 1900)
		return SFS_EINVAL;
	n = snprintf(out, AWS_SIGV4_DATE_SIZE, "%04d%02d%02dT%02d%02d%02dZ",
	             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
	             tm.tm_sec);
	if (n != AWS_SIGV4_DATE_SIZE - 1) {
		out[0] = '\0';
		return SFS_EINVAL;
	}
	return 0;
}
