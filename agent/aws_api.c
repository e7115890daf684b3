/*
 * The AWS Secrets Manager Agent's local API (see aws_api.h).
 *
 * A request for a secret is answered from the sealed cache
 * (aws_api_cache.c) when it holds the answer, else by a GetSecretValue
 * through the config's AWS backend (its credential chain and SigV4), with
 * the reply's GetSecretValue JSON shape as the agent answers it, which is
 * then kept sealed. Unlike the agent, whose plaintext cache is refreshed
 * only when a read finds an entry past its TTL, a thread of ours probes
 * every answer older than "ttl" with DescribeSecret and reads it again only
 * when its stage moved; a failed refresh keeps the last answer. The body is built in
 * guarded memory (secbuf) and handed to libmicrohttpd with a free callback
 * that wipes it once sent; the parsed reply lives in wiping-allocator
 * memory. Nothing of a value is logged: requests log the secret id and
 * the outcome.
 *
 * SSRF protection as the agent's: every request but /ping must carry the
 * token in one of ssrf_headers, compared in constant time with the value
 * taken (sealed, envstash.h) from the first set of ssrf_env_variables; a
 * file:// value names a file read at each request. A request with
 * X-Forwarded-For is refused, and the listener is loopback-only unless
 * allow_non_loopback is set.
 *
 * Answers as the agent's source (aws-secretsmanager-agent: server.rs,
 * parse.rs, cache_manager.rs, utils.rs) gives them: its own refusals in
 * plain text and in its order (connection limit, X-Forwarded-For, token,
 * method, path, parameters), no Content-Type, the service's errors relayed
 * with their status, and the raw URI parsed as its url crate does.
 *
 * Bounds: past max_connections (the agent's 800) a connection's requests
 * answer 429 as the agent's, up to AWS_API_CONN_MARGIN more connections
 * (then libmicrohttpd refuses them); 10 s idle, 16 KiB of request line and
 * headers, no body read, AWS_API_MAX_BODY bytes of answer.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "aws.h"
#include "aws_api.h"
#include "sandbox.h"
#include "aws_api_cache.h"
#include "confval.h"
#include "envstash.h"
#include "httpd.h"
#include "secretfs/backend.h"
#include "secretfs/error.h"
#include "secretfs/log.h"
#include "secretfs/secjson.h"
#include "secretfs/secmem.h"
#include "secretfs/stats.h"
#include "secretfs/timing.h"

#define AWS_API_DEFAULT_LISTEN "127.0.0.1:2773"
#define AWS_API_DEFAULT_MAX_CONN 800
#define AWS_API_CONN_TIMEOUT_S 10
#define AWS_API_CONN_MEMORY (16 * 1024)
#define AWS_API_MAX_BODY (512u * 1024) /* 64 KiB secret, JSON-escaped up to 6x */
#define AWS_API_MAX_TOKEN 4096
#define AWS_API_MAX_LIST 16
#define AWS_API_DEFAULT_TTL_MS (300u * 1000) /* the agent's ttlSeconds */
#define AWS_API_DEFAULT_CACHE 1000           /* the agent's cache_size */
#define AWS_API_MAX_CACHE 1000               /* the agent's bounds, as its */
#define AWS_API_MAX_CONN 1000                /* config checks them */
#define AWS_API_MAX_TTL_MS (3600u * 1000)
/* Connections above max_connections are answered 429 as the agent does,
 * up to this many more (and /ping gets 2 of them, as the agent's); past
 * that libmicrohttpd refuses them. */
#define AWS_API_CONN_MARGIN 8
#define AWS_API_REFRESH_BATCH 64 /* stale entries refreshed per pass */

static const char *const api_keys[] = {"listen",
                                       "allow_non_loopback",
                                       "on_demand",
                                       "max_connections",
                                       "backend",
                                       "path_prefix",
                                       "ssrf_headers",
                                       "ssrf_env_variables",
                                       "ttl",
                                       "cache_size",
                                       NULL};
static const char *const default_headers[] = {"X-Aws-Parameters-Secrets-Token",
                                              "X-Vault-Token", NULL};
static const char *const default_env[] = {"AWS_TOKEN", "AWS_SESSION_TOKEN",
                                          "AWS_CONTAINER_AUTHORIZATION_TOKEN", NULL};

/* --- metrics ---------------------------------------------------------------- */

static const char *const api_paths[] = {"get", "v1", "ping", "other", NULL};
static const char *const api_results[] = {
    "ok",     "unauthorized", "forwarded", "not_allowed", "not_found",
    "denied", "bad_request",  "error",     "limited",     NULL};
enum { P_GET, P_V1, P_PING, P_OTHER };
enum {
	AR_OK,
	AR_UNAUTH,
	AR_FORWARDED,
	AR_NOT_ALLOWED,
	AR_NOT_FOUND,
	AR_DENIED,
	AR_BAD,
	AR_ERROR,
	AR_LIMIT,
	AR_N
};
static const struct stats_dim api_dims[] = {
    {"path", api_paths}, {"result", api_results}, {NULL, NULL}};
static const struct stats_field api_fields[] = {
    {STATS_COUNTER, "secretfs_aws_api_requests_total",
     "Requests to the AWS agent API, by path and result", api_dims, NULL, 0, 0},
};
static const struct stats_family api_family = {api_fields, 1, NULL};

static const char *const cache_events[] = {
    "hit", "miss", "probe_current", "reread", "evicted", "refresh_failed", NULL};
enum { CE_HIT, CE_MISS, CE_CURRENT, CE_REREAD, CE_EVICTED, CE_FAILED };
static const struct stats_dim cache_dims[] = {{"event", cache_events}, {NULL, NULL}};
static const struct stats_field cache_fields[] = {
    {STATS_COUNTER, "secretfs_aws_api_cache_events_total",
     "Sealed answer cache of the AWS agent API: hits, misses, background "
     "probes that found the answer current, re-reads, evictions, failed refreshes",
     cache_dims, NULL, 0, 0},
};
static const struct stats_family cache_family = {cache_fields, 1, NULL};

struct aws_api {
	const struct aws_api_config *conf;
	const struct config *cfg;
	struct backend *be;
	struct envstash *es;
	const char *token_var; /* the ssrf_env_variables entry that was set */
	const struct httpd_api *mhd;
	struct MHD_Daemon *d;
	int fd;
	bool unlink_path;
	struct stats_set *stats;
	struct stats_set *cache_stats;

	/* The sealed answers (NULL: ttl 0) and the thread that refreshes
	 * them; stop and wake guarded by lock. */
	struct apicache *cache;
	pthread_t refresher;
	bool refresher_started, stop;
	pthread_mutex_t lock;
	pthread_cond_t wake;

	unsigned long open; /* connections (the listener's thread only) */
};

/* --- config ------------------------------------------------------------------ */

static int parse_list(struct confval *cv, const json_t *v, const char *kp,
                      const char *const *dflt, char ***out)
{
	size_t n = 0;

	if (v && (!json_is_array(v) || json_array_size(v) == 0 ||
	          json_array_size(v) > AWS_API_MAX_LIST)) {
		confval_problem(cv, kp, "must be a list of 1 to %d names",
		                AWS_API_MAX_LIST);
		return -1;
	}
	n = v ? json_array_size(v) : 0;
	if (!v)
		while (dflt[n])
			n++;
	*out = calloc(n + 1, sizeof **out);
	if (!*out)
		return SFS_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const json_t *e = v ? json_array_get(v, i) : NULL;
		const char *s = v ? json_string_value(e) : dflt[i];
		if (!s || !*s || strlen(s) > 128 || strpbrk(s, ":\r\n =")) {
			char ekp[CONFVAL_KP_MAX];
			snprintf(ekp, sizeof ekp, "%s[%zu]", kp, i);
			confval_problem(cv, ekp,
			                "must be a name (a header or variable name)");
			return -1;
		}
		if (!((*out)[i] = strdup(s)))
			return SFS_ENOMEM;
	}
	return 0;
}

static bool is_loopback(const struct config_telemetry *a)
{
	unsigned char buf[sizeof(struct in6_addr)];

	if (a->family == AF_UNIX)
		return true;
	if (inet_pton(a->family, a->host, buf) != 1)
		return false;
	if (a->family == AF_INET)
		return buf[0] == 127;
	return IN6_IS_ADDR_LOOPBACK((struct in6_addr *)buf);
}

int aws_api_config_parse(const json_t *obj, const char *kp, const struct config *cfg,
                         struct diag *d, struct aws_api_config **out)
{
	struct confval cv = {.d = d};
	struct aws_api_config *c;
	char ckp[CONFVAL_KP_MAX];
	const char *listen = AWS_API_DEFAULT_LISTEN, *why;
	const json_t *v;
	size_t naws = 0;

	*out = NULL;
	if (!json_is_object(obj)) {
		diag_add(d, kp, "must be an object: {\"listen\": \"127.0.0.1:2773\"}");
		return SFS_EINVAL;
	}
	if (!(c = calloc(1, sizeof *c)))
		return SFS_ENOMEM;
	confval_check_keys(&cv, obj, kp, api_keys, NULL);
	diag_keypath(ckp, sizeof ckp, kp, "listen");
	if ((v = json_object_get(obj, "listen")) && !json_is_string(v))
		confval_problem(&cv, ckp, "must be a string such as \"127.0.0.1:2773\"");
	else if (v)
		listen = json_string_value(v);
	if ((why = httpd_parse_listen(listen, &c->addr)))
		confval_problem(&cv, ckp, "%s", why);
	else if (!(c->addr.listen = strdup(listen)))
		cv.oom = true;
	c->max_connections = AWS_API_DEFAULT_MAX_CONN;
	const struct {
		const char *key;
		bool *flag;
	} flags[] = {{"allow_non_loopback", &c->allow_non_loopback},
	             {"on_demand", &c->on_demand}};
	for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
		diag_keypath(ckp, sizeof ckp, kp, flags[i].key);
		if ((v = json_object_get(obj, flags[i].key)) && !json_is_boolean(v))
			confval_problem(&cv, ckp, "must be true or false");
		*flags[i].flag = json_is_true(v);
	}
	if (!why && !c->allow_non_loopback && !is_loopback(&c->addr))
		confval_problem(
		    &cv, diag_keypath(ckp, sizeof ckp, kp, "listen"),
		    "not a loopback address: the agent API serves secrets to "
		    "anyone who can connect; set \"allow_non_loopback\": true "
		    "to mean it");
	diag_keypath(ckp, sizeof ckp, kp, "max_connections");
	if ((v = json_object_get(obj, "max_connections"))) {
		if (!json_is_integer(v) || json_integer_value(v) < 1 ||
		    json_integer_value(v) > AWS_API_MAX_CONN)
			confval_problem(&cv, ckp, "must be a number from 1 to %d",
			                AWS_API_MAX_CONN);
		else
			c->max_connections = (unsigned)json_integer_value(v);
	}
	c->ttl_ms = AWS_API_DEFAULT_TTL_MS;
	c->cache_size = AWS_API_DEFAULT_CACHE;
	diag_keypath(ckp, sizeof ckp, kp, "ttl");
	if ((v = json_object_get(obj, "ttl")) &&
	    confval_duration(&cv, v, ckp, &c->ttl_ms) == 0 &&
	    ((c->ttl_ms > 0 && c->ttl_ms < 1000) || c->ttl_ms > AWS_API_MAX_TTL_MS))
		confval_problem(&cv, ckp, "must be 0 (no cache) or from 1s to 1h");
	diag_keypath(ckp, sizeof ckp, kp, "cache_size");
	if ((v = json_object_get(obj, "cache_size"))) {
		if (!json_is_integer(v) || json_integer_value(v) < 1 ||
		    json_integer_value(v) > AWS_API_MAX_CACHE)
			confval_problem(&cv, ckp, "must be a number from 1 to %d",
			                AWS_API_MAX_CACHE);
		else
			c->cache_size = (unsigned)json_integer_value(v);
	}
	diag_keypath(ckp, sizeof ckp, kp, "path_prefix");
	v = json_object_get(obj, "path_prefix");
	if (v && (!json_is_string(v) || json_string_value(v)[0] != '/' ||
	          strlen(json_string_value(v)) > 64))
		confval_problem(&cv, ckp,
		                "must be a path starting with / such as \"/v1/\"");
	else if (!(c->path_prefix = strdup(v ? json_string_value(v) : "/v1/")))
		cv.oom = true;
	if (parse_list(&cv, json_object_get(obj, "ssrf_headers"),
	               diag_keypath(ckp, sizeof ckp, kp, "ssrf_headers"), default_headers,
	               &c->ssrf_headers) == SFS_ENOMEM ||
	    parse_list(&cv, json_object_get(obj, "ssrf_env_variables"),
	               diag_keypath(ckp, sizeof ckp, kp, "ssrf_env_variables"),
	               default_env, &c->ssrf_env_variables) == SFS_ENOMEM)
		cv.oom = true;
	diag_keypath(ckp, sizeof ckp, kp, "backend");
	v = json_object_get(obj, "backend");
	for (size_t i = 0; i < cfg->nbackends; i++)
		if (strcmp(cfg->backends[i].type, "aws") == 0) {
			naws++;
			if (!v && !(c->backend = strdup(cfg->backends[i].name)))
				cv.oom = true;
		}
	if (v) {
		const struct config_backend *b =
		    json_is_string(v) ? config_backend_find(cfg, json_string_value(v))
		                      : NULL;
		if (!b || strcmp(b->type, "aws") != 0)
			confval_problem(&cv, ckp, "must name a backend of type aws");
		else if (!(c->backend = strdup(b->name)))
			cv.oom = true;
	} else if (naws != 1) {
		confval_problem(&cv, ckp,
		                naws ? "several aws backends: name the one to call"
		                     : "needs a backend of type aws in \"backends\"");
	}
	if (cv.oom || cv.errors) {
		aws_api_config_free(c);
		return cv.oom ? SFS_ENOMEM : SFS_EINVAL;
	}
	*out = c;
	return 0;
}

static void free_list(char **l)
{
	for (size_t i = 0; l && l[i]; i++)
		free(l[i]);
	free(l);
}

void aws_api_config_free(struct aws_api_config *c)
{
	if (!c)
		return;
	free(c->addr.listen);
	free(c->backend);
	free(c->path_prefix);
	free_list(c->ssrf_headers);
	free_list(c->ssrf_env_variables);
	free(c);
}

/* --- answers ----------------------------------------------------------------- */

static void wipe_free(void *p)
{
	secmem_free(p);
}

/* Queues body (guarded memory, taken: wiped and freed once sent). Like the
 * agent's, an answer has no Content-Type; ours adds Cache-Control. */
static enum MHD_Result send_body(struct aws_api *api, struct MHD_Connection *c,
                                 unsigned status, struct secbuf *body)
{
	struct MHD_Response *r;
	enum MHD_Result ok;

	if (!body->data && secbuf_puts(body, "") < 0)
		return MHD_NO;
	r = api->mhd->create_response_from_buffer_with_free_callback(
	    body->len, body->data, wipe_free);
	if (!r) {
		secbuf_release(body);
		return MHD_NO;
	}
	body->data = NULL; /* the response owns it now */
	api->mhd->add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	ok = api->mhd->queue_response(c, status, r);
	api->mhd->destroy_response(r);
	return ok;
}

/* An answer of the agent's own (a refusal, a bad request): plain text. */
static enum MHD_Result send_text(struct aws_api *api, struct MHD_Connection *c,
                                 unsigned status, const char *text)
{
	struct secbuf b;

	secbuf_init(&b, AWS_API_MAX_BODY);
	if (secbuf_puts(&b, text) < 0) {
		secbuf_release(&b);
		return MHD_NO;
	}
	return send_body(api, c, status, &b);
}

/* An error of Secrets Manager relayed as the agent does (its
 * err_response): {"__type":"T", "message":"M"} with that space, or
 * {"__type":"InternalFailure"} when there is no message. Ours escapes T
 * and M as JSON strings (the agent pastes them raw). */
static enum MHD_Result send_error(struct aws_api *api, struct MHD_Connection *c,
                                  unsigned status, const char *type, const char *message)
{
	json_t *t = json_string(type), *m = json_string(message ? message : "");
	char *ts = t ? json_dumps(t, JSON_ENCODE_ANY) : NULL;
	char *ms = m ? json_dumps(m, JSON_ENCODE_ANY) : NULL;
	struct secbuf b;
	int rc = SFS_ENOMEM;

	secbuf_init(&b, AWS_API_MAX_BODY);
	if (!message || !*message || strcmp(type, "InternalFailure") == 0)
		rc = secbuf_puts(&b, "{\"__type\":\"InternalFailure\"}");
	else if (ts && ms && (rc = secbuf_puts(&b, "{\"__type\":")) == 0 &&
	         (rc = secbuf_puts(&b, ts)) == 0 &&
	         (rc = secbuf_puts(&b, ", \"message\":")) == 0 &&
	         (rc = secbuf_puts(&b, ms)) == 0)
		rc = secbuf_puts(&b, "}");
	secjson_free_buf(ts);
	secjson_free_buf(ms);
	json_decref(t);
	json_decref(m);
	if (rc < 0) {
		secbuf_release(&b);
		return MHD_NO;
	}
	return send_body(api, c, status, &b);
}

/* --- the token ----------------------------------------------------------------- */

/* libmicrohttpd parses headers in place in the connection's buffer,
 * which it frees unwiped: wipe the token headers there once read (no
 * later lookup wants them). */
static void wipe_token_headers(struct aws_api *api, struct MHD_Connection *c)
{
	for (size_t i = 0; api->conf->ssrf_headers[i]; i++) {
		const char *got = api->mhd->lookup_connection_value(
		    c, MHD_HEADER_KIND, api->conf->ssrf_headers[i]);
		if (got)
			sodium_memzero((char *)got, strlen(got));
	}
}

static bool is_space(unsigned char ch)
{
	return ch == ' ' || (ch >= '\t' && ch <= '\r');
}

/* Whether the request carries the expected token in one of the headers
 * (wiped from the request buffer either way). */
static bool token_ok(struct aws_api *api, struct MHD_Connection *c)
{
	char *want = NULL;
	unsigned char *file = NULL;
	const unsigned char *w;
	size_t wlen;
	bool ok = false;

	if (envstash_get(api->es, api->token_var, &want) < 0) {
		wipe_token_headers(api, c);
		return false;
	}
	w = (const unsigned char *)want;
	wlen = strlen(want);
	if (strncmp(want, "file://", 7) == 0) {
		if (secmem_read_file(want + 7, AWS_API_MAX_TOKEN, &file, &wlen) < 0) {
			wipe_token_headers(api, c);
			goto out;
		}
		/* Trimmed at both ends, as the agent's. */
		w = file;
		while (wlen && is_space(w[wlen - 1]))
			wlen--;
		while (wlen && is_space(*w)) {
			w++;
			wlen--;
		}
	}
	for (size_t i = 0; wlen && api->conf->ssrf_headers[i] && !ok; i++) {
		const char *got = api->mhd->lookup_connection_value(
		    c, MHD_HEADER_KIND, api->conf->ssrf_headers[i]);
		ok = got && strlen(got) == wlen && sodium_memcmp(got, w, wlen) == 0;
	}
	wipe_token_headers(api, c);
out:
	secmem_free(file);
	secmem_free(want);
	return ok;
}

/* --- the request ---------------------------------------------------------------- */

/* A request's parameters, parsed from its raw URI as the agent parses it
 * (the url crate): the path form's id is the path after the prefix as
 * sent (not percent-decoded); query values are form-decoded ('+' is a
 * space, %XX a byte); the last of repeated parameters wins. */
struct api_query {
	char *secret_id, *version_id, *version_stage;
	bool refresh_now;
	char problem[160]; /* the agent's 400 answer, when not "" */
};

static void query_free(struct api_query *q)
{
	free(q->secret_id);
	free(q->version_id);
	free(q->version_stage);
}

static int hexval(char ch)
{
	return ch >= '0' && ch <= '9'   ? ch - '0'
	       : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
	       : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
	                                : -1;
}

/* The form-decoded copy of s[0..n), or NULL (out of memory). A %00 stays
 * as it is (no C string can hold the byte, and no secret has it). */
static char *form_decode(const char *s, size_t n)
{
	char *out = malloc(n + 1), *o = out;

	for (size_t i = 0; out && i < n; i++) {
		int hi = s[i] == '%' && i + 2 < n ? hexval(s[i + 1]) : -1;
		int lo = hi >= 0 ? hexval(s[i + 2]) : -1;

		if (s[i] == '+') {
			*o++ = ' ';
		} else if (lo >= 0 && (hi | lo) != 0) {
			*o++ = (char)(hi * 16 + lo);
			i += 2;
		} else {
			*o++ = s[i];
		}
	}
	if (out)
		*o = '\0';
	return out;
}

/* Parses the query q (after '?', NULL: none) into qr; with_id: the query
 * form, where secretId is a parameter. Returns 0, or SFS_ENOMEM. */
static int parse_query(const char *q, bool with_id, struct api_query *qr)
{
	while (q && *q && !qr->problem[0]) {
		size_t n = strcspn(q, "&");
		const char *eq = memchr(q, '=', n);
		size_t klen = eq ? (size_t)(eq - q) : n;
		char *k = n ? form_decode(q, klen) : NULL;
		char *v =
		    n && k ? (eq ? form_decode(eq + 1, n - klen - 1) : strdup("")) : NULL;
		char **slot = NULL;

		if (n && (!k || !v)) {
			free(k);
			free(v);
			return SFS_ENOMEM;
		}
		if (!n) {
			/* empty pair: skipped */
		} else if (with_id && strcmp(k, "secretId") == 0) {
			slot = &qr->secret_id;
		} else if (strcmp(k, "versionId") == 0) {
			slot = &qr->version_id;
		} else if (strcmp(k, "versionStage") == 0) {
			slot = &qr->version_stage;
		} else if (strcmp(k, "refreshNow") == 0) {
			if (!strcasecmp(v, "true") || !strcmp(v, "1"))
				qr->refresh_now = true;
			else if (!strcasecmp(v, "false") || !strcmp(v, "0"))
				qr->refresh_now = false;
			else
				snprintf(qr->problem, sizeof qr->problem,
				         "invalid refreshNow value");
		} else {
			snprintf(qr->problem, sizeof qr->problem,
			         "unknown parameter: %.100s", k);
		}
		if (slot) {
			free(*slot);
			*slot = v;
			v = NULL;
		}
		free(k);
		free(v);
		q += n;
		if (*q == '&')
			q++;
	}
	return 0;
}

/* --- secrets ------------------------------------------------------------------- */

/* Whether a secret of the config names id through the API's backend. */
static bool allowed(const struct aws_api *api, const char *id)
{
	if (api->conf->on_demand)
		return true;
	for (size_t i = 0; i < api->cfg->nsecrets; i++)
		if (strcmp(api->cfg->secrets[i].backend, api->conf->backend) == 0 &&
		    api->cfg->secrets[i].path &&
		    strcmp(api->cfg->secrets[i].path, id) == 0)
			return true;
	return false;
}

/* CreatedDate as the agent writes it (serde_with's TimestampSecondsWithFrac
 * <String> of the SDK's time): a string of the epoch seconds with the
 * fewest fraction digits that give the time back, "1569534789.046". */
static json_t *created_date(const json_t *v)
{
	char buf[64];
	double d = json_number_value(v);

	if (json_is_integer(v)) {
		snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return json_string(buf);
	}
	if (!json_is_real(v))
		return json_null();
	for (int digits = 0; digits <= 17; digits++) {
		snprintf(buf, sizeof buf, "%.*f", digits, d);
		if (strtod(buf, NULL) == d)
			break;
	}
	return json_string(buf);
}

/* The GetSecretValue answer as the agent serializes it (its
 * GetSecretValueOutputDef): ARN, Name, VersionId (null when absent),
 * SecretString, SecretBinary, VersionStages (left out when absent),
 * CreatedDate (a string, or null), in that order, into b (guarded,
 * empty). Returns 0 or SFS_ code (b released). */
static int build_answer(const json_t *reply, struct secbuf *b)
{
	static const struct {
		const char *key;
		bool always;
	} keys[] = {{"ARN", true},           {"Name", true},
	            {"VersionId", true},     {"SecretString", false},
	            {"SecretBinary", false}, {"VersionStages", false}};
	json_t *out = json_object();
	char *text;
	int rc = SFS_ENOMEM;

	for (size_t i = 0; out && i < sizeof keys / sizeof keys[0]; i++) {
		json_t *v = json_object_get(reply, keys[i].key);
		if (json_is_null(v))
			v = NULL;
		if ((v || keys[i].always) &&
		    json_object_set(out, keys[i].key, v ? v : json_null()) < 0)
			goto out;
	}
	if (!out ||
	    json_object_set_new(out, "CreatedDate",
	                        created_date(json_object_get(reply, "CreatedDate"))) < 0)
		goto out;
	if ((text = json_dumps(out, JSON_COMPACT))) {
		rc = secbuf_puts(b, text);
		secjson_free_buf(text);
	}
out:
	json_decref(out);
	if (rc < 0)
		secbuf_release(b);
	return rc;
}

/* Reads the answer of k from Secrets Manager into b (guarded, empty) and
 * keeps it sealed in the cache. Returns 0 or the backend's SFS_ code, with
 * err (and svc, may be NULL, for the service's error) filled. */
static int read_answer(struct aws_api *api, const struct apicache_key *k,
                       struct secbuf *b, struct aws_service_error *svc,
                       struct backend_error *err)
{
	json_t *reply = NULL;
	size_t evicted = 0;
	const char *version;
	int rc;

	rc = aws_get_secret_value(api->be, k->id, *k->version_id ? k->version_id : NULL,
	                          *k->stage ? k->stage : NULL, &reply, svc, err);
	if (rc < 0)
		return rc;
	version = json_string_value(json_object_get(reply, "VersionId"));
	rc = build_answer(reply, b);
	if (rc < 0) {
		json_decref(reply);
		backend_error_set(err, "%s: cannot build the answer", k->id);
		return rc;
	}
	/* version lives in reply: it goes last. */
	if (api->cache && apicache_put(api->cache, k, version ? version : "", b->data,
	                               b->len, timing_now_ms(), &evicted) < 0)
		log_warn("aws_api: %s: cannot keep the answer (out of memory)", k->id);
	json_decref(reply);
	for (size_t i = 0; i < evicted; i++)
		stats_inc_at(api->cache_stats, 0, CE_EVICTED);
	return 0;
}

/* Answers a failed read as the agent does: the service's own error
 * (status, __type and message) when it answered one, 504/502 for a
 * timeout / connection failure, else 500 InternalFailure. */
static enum MHD_Result relay_error(struct aws_api *api, struct MHD_Connection *c, int rc,
                                   const struct aws_service_error *svc,
                                   const struct backend_error *err)
{
	if (svc->status >= 400 && svc->status <= 599 && svc->type[0])
		return send_error(api, c, (unsigned)svc->status, svc->type, svc->message);
	if (rc == SFS_ETRANSIENT && !svc->status &&
	    !strstr(err->msg, ": no credentials from ")) {
		if (strstr(err->msg, "no complete answer within") ||
		    strstr(err->msg, "Timeout was reached"))
			return send_error(api, c, 504, "TimeoutError", "Timeout");
		return send_error(api, c, 502, "ConnectionError", "Read Error");
	}
	return send_error(api, c, 500, "InternalFailure", NULL);
}

static enum MHD_Result get_secret(struct aws_api *api, struct MHD_Connection *c, int path,
                                  const struct api_query *q)
{
	const char *id = q->secret_id;
	struct apicache_key k = {id, q->version_id ? q->version_id : "",
	                         q->version_stage ? q->version_stage : ""};
	struct backend_error err = {0};
	struct aws_service_error svc = {0};
	struct secbuf b;
	int rc;

	if (strlen(id) > 2048 || strlen(k.version_id) > 256 || strlen(k.stage) > 256) {
		stats_inc_at(api->stats, 0, (size_t)path * AR_N + AR_BAD);
		return send_error(api, c, 400, "InvalidParameterException",
		                  "The parameter SecretId, VersionId or VersionStage is "
		                  "too long.");
	}
	if (!allowed(api, id)) {
		stats_inc_at(api->stats, 0, (size_t)path * AR_N + AR_NOT_ALLOWED);
		log_info("aws_api: %s is not a secret of the config (on_demand is off)",
		         id);
		return send_error(api, c, 400, "ResourceNotFoundException",
		                  "Secrets Manager can't find the specified secret.");
	}
	secbuf_init(&b, AWS_API_MAX_BODY);
	rc = api->cache && !q->refresh_now ? apicache_get(api->cache, &k, &b)
	                                   : SFS_ENOTFOUND;
	if (api->cache && !q->refresh_now)
		stats_inc_at(api->cache_stats, 0, rc == 0 ? CE_HIT : CE_MISS);
	if (rc < 0) {
		secbuf_release(&b);
		secbuf_init(&b, AWS_API_MAX_BODY);
		rc = read_answer(api, &k, &b, &svc, &err);
	}
	if (rc == 0) {
		stats_inc_at(api->stats, 0, (size_t)path * AR_N + AR_OK);
		return send_body(api, c, 200, &b);
	}
	log_warn("aws_api: %s", err.msg);
	stats_inc_at(api->stats, 0,
	             (size_t)path * AR_N + (rc == SFS_ENOTFOUND ? AR_NOT_FOUND
	                                    : rc == SFS_EDENIED ? AR_DENIED
	                                                        : AR_ERROR));
	return relay_error(api, c, rc, &svc, &err);
}

/* --- background refresh -------------------------------------------------------- */

/* Refreshes one stale entry: a DescribeSecret probe of its stage (a
 * versionId-pinned answer's content never changes), a full read only
 * when the version moved. On failure the last good answer stays and is
 * tried again after another ttl. */
static void refresh_one(struct aws_api *api, const struct apicache_stale *e)
{
	struct apicache_key k = {e->id, e->version_id, e->stage};
	json_t *extra = json_object();
	struct backend_error err = {0};
	char version[BACKEND_VERSION_MAX];
	struct secbuf b;
	int rc = SFS_ENOMEM;

	if (extra && *e->version_id)
		rc = json_object_set_new(extra, "version_id", json_string(e->version_id));
	else if (extra && *e->stage)
		rc = json_object_set_new(extra, "version_stage", json_string(e->stage));
	else if (extra)
		rc = 0;
	if (rc == 0)
		rc = backend_probe(api->be, &(struct source_key){e->id, extra}, version,
		                   sizeof version, &err);
	json_decref(extra);
	if (rc == 0 && strcmp(version, e->version) == 0) {
		apicache_touch(api->cache, &k, timing_now_ms());
		stats_inc_at(api->cache_stats, 0, CE_CURRENT);
		return;
	}
	if (rc == 0) {
		secbuf_init(&b, AWS_API_MAX_BODY);
		rc = read_answer(api, &k, &b, NULL, &err);
		secbuf_release(&b);
		if (rc == 0) {
			stats_inc_at(api->cache_stats, 0, CE_REREAD);
			log_event(LOG_LVL_INFO,
			          &(struct log_fields){.event = "aws_api.refreshed",
			                               .backend = api->conf->backend},
			          "aws_api: %s moved to version %s", e->id, version);
			return;
		}
	}
	stats_inc_at(api->cache_stats, 0, CE_FAILED);
	log_warn("aws_api: refreshing %s failed (the last answer stays): %s", e->id,
	         err.msg[0] ? err.msg : sfs_strerror(rc));
	apicache_touch(api->cache, &k, timing_now_ms());
}

static void *refresher_main(void *arg)
{
	struct aws_api *api = arg;
	struct apicache_stale stale[AWS_API_REFRESH_BATCH];
	sigset_t all;

	/* Signals are for the main thread and the FUSE loop. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	pthread_mutex_lock(&api->lock);
	while (!api->stop) {
		struct timespec until;
		uint64_t now = timing_now_ms();
		size_t n;

		pthread_mutex_unlock(&api->lock);
		sandbox_thread_enter();
		n = now > api->conf->ttl_ms
		        ? apicache_stale(api->cache, now - api->conf->ttl_ms, stale,
		                         AWS_API_REFRESH_BATCH)
		        : 0;
		for (size_t i = 0; i < n; i++)
			refresh_one(api, &stale[i]);
		apicache_stale_free(stale, n);
		/* Replies passed through this stack; nothing of them stays
		 * below it while the thread waits. */
		secmem_wipe_stack();
		pthread_mutex_lock(&api->lock);
		if (n == AWS_API_REFRESH_BATCH || api->stop)
			continue; /* more are due */
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 1;
		pthread_cond_timedwait(&api->wake, &api->lock, &until);
	}
	pthread_mutex_unlock(&api->lock);
	return NULL;
}

/* A request: its raw URI (the agent parses that, not libmicrohttpd's
 * decoded path), kept from on_uri to on_completed, and whether the
 * handler saw its headers. The answer is queued at the handler's second
 * call: libmicrohttpd 0.9.75 closes a connection whose answer was queued
 * at the first, and the agent keeps connections alive. */
struct api_req {
	bool seen;
	char uri[];
};

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
	struct api_req *r = malloc(sizeof *r + strlen(uri) + 1);

	(void)cls;
	(void)c;
	if (r) {
		r->seen = false;
		memcpy(r->uri, uri, strlen(uri) + 1);
	}
	return r;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
	(void)cls;
	(void)c;
	(void)toe;
	free(*req_cls);
	*req_cls = NULL;
}

/* Counts the open connections; each keeps the count at its accept, its
 * rank, as the agent's connection task keeps the count it was spawned
 * with. Connections leave no IP hop, as the agent's (TTL 1). */
static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
	struct aws_api *api = cls;

	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *ci =
		    api->mhd->get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
		int one = 1;

		if (ci && api->conf->addr.family == AF_INET)
			setsockopt(ci->connect_fd, IPPROTO_IP, IP_TTL, &one, sizeof one);
		else if (ci && api->conf->addr.family == AF_INET6)
			setsockopt(ci->connect_fd, IPPROTO_IPV6, IPV6_UNICAST_HOPS, &one,
			           sizeof one);
		*socket_context = (void *)(uintptr_t)++api->open;
	} else if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
		api->open--;
	}
}

/* The checks in the agent's order: the connection limit (429), the SSRF
 * token and X-Forwarded-For (400, 403; not for /ping), the method (405),
 * then the path (404). */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **req_cls)
{
	struct aws_api *api = cls;
	struct api_req *req = *req_cls;
	const char *prefix = api->conf->path_prefix, *raw, *query;
	const union MHD_ConnectionInfo *ci =
	    api->mhd->get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	uintptr_t rank = ci ? (uintptr_t)ci->socket_context : 0;
	char *rpath;
	struct api_query q = {0};
	enum MHD_Result ok;
	bool open_path;
	int path;

	sandbox_thread_enter();
	(void)url;
	(void)version;
	(void)upload_data;
	(void)upload_data_size;
	if (!req)
		return MHD_NO; /* out of memory copying the URI */
	if (!req->seen) {
		req->seen = true;
		return MHD_YES;
	}
	raw = req->uri;
	if (!(rpath = strndup(raw, strcspn(raw, "?"))))
		return MHD_NO;
	query = strchr(raw, '?') ? strchr(raw, '?') + 1 : NULL;
	path = strcmp(rpath, "/ping") == 0                   ? P_PING
	       : strcmp(rpath, "/secretsmanager/get") == 0   ? P_GET
	       : strncmp(rpath, prefix, strlen(prefix)) == 0 ? P_V1
	                                                     : P_OTHER;
	/* /start_serving is the agent's Lambda mode's: open, then not found. */
	open_path = path == P_PING || strcmp(rpath, "/start_serving") == 0;
	if (rank > api->conf->max_connections + (open_path ? 2 : 0)) {
		stats_inc_at(api->stats, 0, (size_t)path * AR_N + AR_LIMIT);
		ok = send_text(api, c, 429, "Connection limit exceeded");
		goto out;
	}
	if (!open_path &&
	    api->mhd->lookup_connection_value(c, MHD_HEADER_KIND, "X-Forwarded-For")) {
		wipe_token_headers(api, c);
		stats_inc_at(api->stats, 0, (size_t)path * AR_N + AR_FORWARDED);
		log_warn("aws_api: refused a request with X-Forwarded-For");
		ok = send_text(api, c, 400, "Forwarded");
		goto out;
	}
	if (!open_path && !token_ok(api, c)) {
		stats_inc_at(api->stats, 0, (size_t)path * AR_N + AR_UNAUTH);
		ok = send_text(api, c, 403, "Bad Token");
		goto out;
	}
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0) {
		stats_inc_at(api->stats, 0, (size_t)path * AR_N + AR_BAD);
		ok = send_text(api, c, 405, "Not allowed");
		goto out;
	}
	if (path == P_PING) {
		stats_inc_at(api->stats, 0, (size_t)path * AR_N + AR_OK);
		ok = send_text(api, c, 200, "healthy");
		goto out;
	}
	if (path == P_OTHER) {
		stats_inc_at(api->stats, 0, (size_t)path * AR_N + AR_NOT_FOUND);
		ok = send_text(api, c, 404, "Not found");
		goto out;
	}
	if (path == P_V1 && rpath[strlen(prefix)] &&
	    !(q.secret_id = strdup(rpath + strlen(prefix)))) {
		ok = MHD_NO;
		goto out;
	}
	if (parse_query(query, path == P_GET, &q) < 0) {
		ok = MHD_NO;
		goto out;
	}
	if (!q.problem[0] && (!q.secret_id || !*q.secret_id))
		snprintf(q.problem, sizeof q.problem,
		         path == P_GET ? "missing parameter secretId"
		                       : "missing secret ID");
	if (q.problem[0]) {
		stats_inc_at(api->stats, 0, (size_t)path * AR_N + AR_BAD);
		ok = send_text(api, c, 400, q.problem);
		goto out;
	}
	ok = get_secret(api, c, path, &q);
out:
	query_free(&q);
	free(rpath);
	return ok;
}

/* --- lifecycle ----------------------------------------------------------------- */

int aws_api_new(const struct config *cfg, struct backend **backends, struct envstash *es,
                struct store *st, struct stats *stats, struct aws_api **out)
{
	const struct aws_api_config *conf = cfg->aws_api;
	struct aws_api *api = calloc(1, sizeof *api);
	char *probe = NULL;

	if (!api)
		return SFS_ENOMEM;
	api->conf = conf;
	api->cfg = cfg;
	api->es = es;
	api->fd = -1;
	for (size_t i = 0; i < cfg->nbackends; i++)
		if (strcmp(cfg->backends[i].name, conf->backend) == 0)
			api->be = backends[i];
	for (size_t i = 0; conf->ssrf_env_variables[i] && !api->token_var; i++) {
		if (envstash_take(es, conf->ssrf_env_variables[i]) < 0)
			goto fail;
		if (envstash_get(es, conf->ssrf_env_variables[i], &probe) == 0)
			api->token_var = conf->ssrf_env_variables[i];
		secmem_free(probe);
		probe = NULL;
	}
	if (!api->token_var) {
		log_error("aws_api: no SSRF token: none of ssrf_env_variables is set "
		          "(the agent's default: AWS_TOKEN, AWS_SESSION_TOKEN, "
		          "AWS_CONTAINER_AUTHORIZATION_TOKEN)");
		goto fail;
	}
	api->fd = httpd_bind(&conf->addr, &api->unlink_path);
	if (api->fd < 0 || listen(api->fd, (int)conf->max_connections) < 0) {
		log_error("aws_api: cannot listen on %s: %s", conf->addr.listen,
		          errno == EADDRINUSE ? "address already in use"
		                              : strerror(errno));
		goto fail;
	}
	if (!(api->mhd = httpd_load("aws_api")))
		goto fail;
	api->stats = stats_register(stats, &api_family, NULL);
	pthread_mutex_init(&api->lock, NULL);
	pthread_cond_init(&api->wake, NULL);
	if (conf->ttl_ms) {
		api->cache_stats = stats_register(stats, &cache_family, NULL);
		if (apicache_new(st, conf->cache_size, &api->cache) < 0)
			goto fail;
		if (pthread_create(&api->refresher, NULL, refresher_main, api) != 0) {
			log_error("aws_api: cannot start the refresher thread");
			goto fail;
		}
		api->refresher_started = true;
	}
	api->d =
	    httpd_start(api->fd,
	                &(struct httpd_bounds){.max_connections = conf->max_connections +
	                                                          2 + AWS_API_CONN_MARGIN,
	                                       .idle_timeout_s = AWS_API_CONN_TIMEOUT_S,
	                                       .request_memory = AWS_API_CONN_MEMORY,
	                                       .on_connection = on_connection,
	                                       .on_uri = on_uri,
	                                       .on_completed = on_completed},
	                on_request, api);
	if (!api->d) {
		log_error("aws_api: cannot start the listener on %s", conf->addr.listen);
		goto fail;
	}
	api->fd = -1; /* libmicrohttpd closes it */
	log_event(LOG_LVL_INFO, &(struct log_fields){.event = "aws_api.listening"},
	          "aws_api: serving the AWS Secrets Manager Agent API on %s%s",
	          conf->addr.listen, conf->on_demand ? " (on demand)" : "");
	*out = api;
	return 0;
fail:
	aws_api_free(api);
	return SFS_EIO;
}

void aws_api_free(struct aws_api *api)
{
	if (!api)
		return;
	if (api->d)
		api->mhd->stop_daemon(api->d);
	if (api->refresher_started) {
		pthread_mutex_lock(&api->lock);
		api->stop = true;
		pthread_cond_signal(&api->wake);
		pthread_mutex_unlock(&api->lock);
		pthread_join(api->refresher, NULL);
	}
	apicache_free(api->cache);
	if (api->fd >= 0)
		close(api->fd);
	if (api->unlink_path)
		unlink(api->conf->addr.path);
	free(api);
}
