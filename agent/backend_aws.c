/*
 * The "aws" backend: AWS Secrets Manager (or anything speaking its JSON 1.1
 * API) over HTTPS, requests signed with SigV4 (aws_sigv4.c).
 *
 * - Credentials come from the first configured source of the SDKs' chain
 *   (aws_creds.c): environment, web identity, shared files, container,
 *   IMDSv2. They are kept sealed in the store between requests. Temporary
 *   ones are refreshed by maintain() 15 minutes before they expire (half
 *   their life when that is shorter), and a request finding them within 10
 *   minutes of expiry refreshes them first. ExpiredTokenException refreshes
 *   them at once and retries the request once.
 * - fetch() is GetSecretValue (SecretString: a JSON object becomes fields,
 *   anything else the raw text; SecretBinary: the raw bytes), pinned by
 *   version_id or version_stage when configured. probe() is DescribeSecret:
 *   the version holding the wanted stage (AWSCURRENT by default), so a full
 *   read happens only when a rotation moved the stage.
 * - Errors are classified by "__type" and reported with the operation and
 *   the secret's name, never a value or a credential.
 */
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aws.h"
#include "aws_sigv4.h"
#include "credcache.h"
#include "secretfs/error.h"
#include "secretfs/log.h"
#include "secretfs/secjson.h"
#include "secretfs/secmem.h"
#include "secretfs/timing.h"

/* Registered in backend.c. */
extern const struct backend_ops backend_aws_ops;

#define AWS_MAX_CLIENTS 8             /* concurrent requests per backend */
#define AWS_REFRESH_AHEAD_S (15 * 60) /* maintain() refreshes this early */
#define AWS_REFRESH_HARD_S (10 * 60)  /* requests refresh first past this */
#define AWS_RETRY_BASE_MS 5000
#define AWS_RETRY_CAP_MS (5 * 60 * 1000)

struct aws {
	struct backend base;
	struct aws_env env;
	char *endpoint;              /* scheme://authority, no trailing slash */
	char *host;                  /* authority, as sent in Host */
	char *path;                  /* request path, "/" unless the endpoint has one */
	struct http_options sm_http; /* strings borrowed from the config */
	struct http_pool pool;
	const struct aws_cred_source *source;

	/* "akid\nsecret\ntoken", sealed. Its refresh lock is held for a
	 * whole fetch from the source, so concurrent requests fetch once, and
	 * guards cred_client; its lock guards creds_obtained and
	 * creds_expiration; after a failed fetch, none is tried before its
	 * retry time and callers get the last error meanwhile. */
	struct credcache creds;
	struct http_client *cred_client;
	time_t creds_obtained;
	time_t creds_expiration; /* 0: long-term */

	/* Guards probe_denied. */
	pthread_mutex_t lock;
	bool probe_denied; /* DescribeSecret refused: probe with GetSecretValue */
	struct backend_proxy sm_proxy, sts_proxy; /* never for metadata endpoints */
};

/* ---- credentials ---------------------------------------------------------- */

/* When credentials obtained at got and expiring at exp should be replaced:
 * soft by maintain(), hard before any request. */
static time_t refresh_time(time_t got, time_t exp, bool hard)
{
	time_t life = exp - got;

	if (life >= 2 * AWS_REFRESH_AHEAD_S)
		return exp - (hard ? AWS_REFRESH_HARD_S : AWS_REFRESH_AHEAD_S);
	return got + (hard ? life * 2 / 3 : life / 2);
}

/* Stores fetched credentials; lock held. */
static int creds_store(struct aws *a, const struct aws_creds *c)
{
	size_t cap = c->cap + 2;
	char *packed = secmem_alloc(cap);
	int rc;

	if (!packed)
		return SFS_ENOMEM;
	snprintf(packed, cap, "%s\n%s\n%s", c->access_key_id, c->secret_access_key,
	         c->session_token ? c->session_token : "");
	rc = credcache_put_locked(&a->creds, packed, strlen(packed));
	secmem_free(packed);
	if (rc == 0) {
		a->creds_obtained = time(NULL);
		a->creds_expiration = c->expiration;
	}
	return rc;
}

/*
 * Fetches credentials from the source unless another thread did so since
 * the caller saw generation seen, or a fetch failed recently (then the
 * caller gets that failure until retry_at: a source that is down is not
 * asked again by every request).
 */
static int creds_refresh(struct aws *a, uint64_t seen, struct backend_error *err)
{
	struct aws_creds c = {0};
	uint64_t delay;
	int rc;

	rc = credcache_refresh_begin(&a->creds, seen, true, timing_now_ms(), err);
	if (rc <= 0)
		return rc;
	rc = a->source->fetch(&a->env, a->cred_client, &c, err);
	if (rc == 0 && c.expiration && c.expiration <= time(NULL) + 1) {
		backend_error_set(
		    err, "%s gave credentials that expire in %lld s (clock skew?)",
		    a->source->name, (long long)(c.expiration - time(NULL)));
		rc = SFS_ETRANSIENT;
	}
	credcache_lock(&a->creds);
	if (rc == 0)
		rc = creds_store(a, &c);
	if (rc < 0) {
		delay = credcache_failed_locked(&a->creds, timing_now_ms(), 0, err->msg);
		log_warn("backend %s: credentials from %s: %s (next try in %llu ms)",
		         a->base.name, a->source->name, err->msg,
		         (unsigned long long)delay);
	}
	credcache_unlock(&a->creds);
	if (rc == 0 && c.expiration)
		log_info("backend %s: credentials from %s, temporary, expire in %lld s",
		         a->base.name, a->source->name,
		         (long long)(c.expiration - time(NULL)));
	else if (rc == 0)
		log_info("backend %s: credentials from %s", a->base.name,
		         a->source->name);
	credcache_refresh_end(&a->creds);
	aws_creds_release(&c);
	return rc;
}

/* Current credentials into out (guarded), refreshing first when there are
 * none or they are close to expiry; *gen says which ones they are. */
static int creds_get(struct aws *a, struct aws_creds *out, uint64_t *gen,
                     struct backend_error *err)
{
	char *packed = NULL, *secret, *token;
	bool stale;
	int rc;

	credcache_lock(&a->creds);
	stale =
	    !credcache_has_locked(&a->creds) ||
	    (a->creds_expiration &&
	     time(NULL) >= refresh_time(a->creds_obtained, a->creds_expiration, true));
	*gen = credcache_gen_locked(&a->creds);
	credcache_unlock(&a->creds);
	if (stale && (rc = creds_refresh(a, *gen, err)) < 0) {
		/* Still usable for a while: carry on with them. */
		credcache_lock(&a->creds);
		stale = !credcache_has_locked(&a->creds) ||
		        (a->creds_expiration && time(NULL) + 60 >= a->creds_expiration);
		credcache_unlock(&a->creds);
		if (stale)
			return rc == SFS_ENOMEM ? rc : SFS_ETRANSIENT;
	}
	rc = credcache_get(&a->creds, &packed, gen);
	if (rc < 0) {
		backend_error_set(err, "no AWS credentials: %s", sfs_strerror(rc));
		return rc == SFS_ENOTFOUND ? SFS_ETRANSIENT : rc;
	}
	secret = strchr(packed, '\n');
	token = secret ? strchr(secret + 1, '\n') : NULL;
	if (!token) {
		secmem_free(packed);
		return SFS_ECRYPTO;
	}
	*secret++ = '\0';
	*token++ = '\0';
	rc = aws_creds_set(out, packed, secret, *token ? token : NULL, 0);
	secmem_free(packed);
	return rc;
}

int aws_backend_creds(struct backend *be, struct aws_creds *out,
                      struct backend_error *err)
{
	struct aws *a = (struct aws *)be;
	uint64_t gen;

	return creds_get(a, out, &gen, err);
}

const char *aws_backend_region(const struct backend *be)
{
	return ((const struct aws *)be)->env.region;
}

/* When maintain() should run next for the credentials held; lock held. */
static uint64_t maintain_next(struct aws *a, uint64_t now)
{
	time_t wall = time(NULL), due;

	if (a->creds.retry_at > now)
		return a->creds.retry_at;
	if (!credcache_has_locked(&a->creds))
		return now + 1000; /* none yet: the first request fetches them */
	if (!a->creds_expiration)
		return UINT64_MAX; /* long-term: never */
	due = refresh_time(a->creds_obtained, a->creds_expiration, false);
	return wall < due ? now + (uint64_t)(due - wall) * 1000 : now;
}

static uint64_t aws_maintain(struct backend *be, uint64_t now)
{
	struct aws *a = (struct aws *)be;
	struct backend_error err = {0};
	uint64_t gen, next;

	credcache_lock(&a->creds);
	next = maintain_next(a, now);
	gen = credcache_gen_locked(&a->creds);
	credcache_unlock(&a->creds);
	if (next > now)
		return next;
	creds_refresh(a, gen, &err);
	credcache_lock(&a->creds);
	next = maintain_next(a, now);
	credcache_unlock(&a->creds);
	/* A source handing out the same short-lived keys again is asked at
	 * most once a second. */
	return next > now ? next : now + 1000;
}

/* ---- requests ---------------------------------------------------------------- */

/* Reads "__type" (without a "namespace#" prefix; "" when none) and the
 * message of an error reply, both borrowed from it. */
static void aws_error_fields(const json_t *reply, const char **type, const char **message)
{
	const char *t = json_string_value(json_object_get(reply, "__type"));
	const char *hash = t ? strrchr(t, '#') : NULL;

	*type = hash ? hash + 1 : t ? t : "";
	*message = json_string_value(json_object_get(reply, "message"));
	if (!*message)
		*message = json_string_value(json_object_get(reply, "Message"));
}

static int error_code(const char *type, long status)
{
	static const struct {
		const char *type;
		int rc;
	} map[] = {
	    {"ResourceNotFoundException", SFS_ENOTFOUND},
	    {"AccessDeniedException", SFS_EDENIED},
	    {"UnrecognizedClientException", SFS_EDENIED},
	    {"InvalidSignatureException", SFS_EDENIED},
	    {"IncompleteSignature", SFS_EDENIED},
	    {"DecryptionFailure", SFS_EDENIED},
	    {"ExpiredTokenException", SFS_ETRANSIENT},
	    {"ThrottlingException", SFS_ETRANSIENT},
	    {"TooManyRequestsException", SFS_ETRANSIENT},
	    {"RequestLimitExceeded", SFS_ETRANSIENT},
	    {"InternalServiceError", SFS_ETRANSIENT},
	    {"ServiceUnavailable", SFS_ETRANSIENT},
	};

	for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
		if (strcmp(map[i].type, type) == 0)
			return map[i].rc;
	if (status == 429 || status >= 500)
		return SFS_ETRANSIENT;
	return status == 403 ? SFS_EDENIED : SFS_EBACKEND;
}

/* One signed request with the credentials given. */
static int aws_send(struct aws *a, const struct aws_creds *c, const char *op,
                    const char *body, struct http_response *resp,
                    struct backend_error *why)
{
	char target[96], date[AWS_SIGV4_DATE_SIZE], auth[512];
	struct http_header h[6] = {
	    {"Host", a->host, false},
	    {"Content-Type", "application/x-amz-json-1.1", false},
	    {"X-Amz-Date", date, false},
	    {"X-Amz-Target", target, false},
	};
	struct aws_sigv4_credentials sc = {c->access_key_id, c->secret_access_key,
	                                   c->session_token};
	struct aws_sigv4_request sr = {.method = "POST",
	                               .path = a->path,
	                               .headers = h,
	                               .body = body,
	                               .body_len = strlen(body)};
	struct http_request req = {.method = "POST",
	                           .headers = h,
	                           .body = body,
	                           .body_len = strlen(body),
	                           .idempotent = true};
	struct http_client *client;
	size_t nh = 4;
	char *url = NULL;
	int rc;

	backend_error_set(why, "cannot build the request");
	snprintf(target, sizeof target, "secretsmanager.%s", op);
	if (aws_sigv4_amz_date(time(NULL), date) < 0)
		return SFS_EINVAL;
	if (c->session_token)
		h[nh++] =
		    (struct http_header){"X-Amz-Security-Token", c->session_token, true};
	sr.nheaders = nh;
	rc = aws_sigv4_authorization(&sc, a->env.region, "secretsmanager", &sr, auth,
	                             sizeof auth);
	if (rc < 0) {
		backend_error_set(why, "cannot sign the request: %s", sfs_strerror(rc));
		return rc;
	}
	h[nh++] = (struct http_header){"Authorization", auth, true};
	req.nheaders = nh;
	if (asprintf(&url, "%s%s", a->endpoint, a->path) < 0) {
		sodium_memzero(auth, sizeof auth);
		return SFS_ENOMEM;
	}
	req.url = url;
	client = http_pool_acquire(&a->pool, why);
	if (!client) {
		rc = SFS_ETRANSIENT;
	} else {
		rc = http_do(client, &req, resp, why);
		http_pool_release(&a->pool, client);
	}
	sodium_memzero(auth, sizeof auth);
	free(url);
	return rc;
}

/*
 * Calls operation op with the JSON request body. On success *out is the
 * parsed reply. err names the operation and the secret (what), and the
 * error's type and message; svc (may be NULL) gets the service's error
 * answer whole.
 */
static int aws_call(struct aws *a, const char *op, const char *what, const json_t *body,
                    json_t **out, struct aws_service_error *svc,
                    struct backend_error *err)
{
	struct http_response resp = {0};
	char *text = json_dumps(body, JSON_COMPACT);
	struct backend_error why = {0};
	const char *type, *message;
	json_t *reply = NULL;
	json_error_t jerr;
	int rc = SFS_ENOMEM;

	*out = NULL;
	for (int attempt = 0; text && attempt < 2; attempt++) {
		struct aws_creds c = {0};
		uint64_t gen;

		rc = creds_get(a, &c, &gen, err);
		if (rc < 0) {
			why = *err;
			backend_error_set(err, "%s %s: no credentials from %s: %s", op,
			                  what, a->source->name, why.msg);
			break;
		}
		http_response_release(&resp);
		if (svc)
			*svc = (struct aws_service_error){0};
		rc = aws_send(a, &c, op, text, &resp, &why);
		aws_creds_release(&c);
		if (rc < 0) {
			backend_error_set(err, "%s %s: %s", op, what, why.msg);
			rc = rc == SFS_ETOOBIG || rc == SFS_ENOMEM ? rc : SFS_ETRANSIENT;
			break;
		}
		err->retry_after_ms = resp.retry_after_ms;
		json_decref(reply);
		reply = resp.body.len ? json_loadb((const char *)resp.body.data,
		                                   resp.body.len, JSON_ALLOW_NUL, &jerr)
		                      : NULL;
		if (resp.status == 200) {
			rc = json_is_object(reply) ? 0 : SFS_EPARSE;
			if (rc == 0) {
				*out = reply;
				reply = NULL;
			} else {
				backend_error_set(err,
				                  "%s %s: HTTP 200 with a malformed body",
				                  op, what);
			}
			break;
		}
		aws_error_fields(reply, &type, &message);
		if (svc) {
			svc->status = resp.status;
			snprintf(svc->type, sizeof svc->type, "%s", type);
			snprintf(svc->message, sizeof svc->message, "%s",
			         message ? message : "");
		}
		backend_error_set(err, "%s %s: HTTP %ld %s: %.120s", op, what,
		                  resp.status, type[0] ? type : "(no __type)",
		                  message ? message : "");
		rc = error_code(type, resp.status);
		if (attempt > 0 || (strcmp(type, "ExpiredTokenException") != 0 &&
		                    strcmp(type, "UnrecognizedClientException") != 0 &&
		                    strcmp(type, "InvalidClientTokenId") != 0))
			break;
		/* The credentials died early (revoked session, clock drift) or
		 * were replaced at their source (a rewritten credentials file):
		 * get them again now and try once more. */
		log_warn("backend %s: %s; getting credentials again", a->base.name, type);
		if (creds_refresh(a, gen, err) < 0)
			break;
	}
	json_decref(reply);
	secjson_free_buf(text);
	http_response_release(&resp);
	return rc;
}

static json_t *request_body(const struct source_key *key)
{
	json_t *body = json_pack("{s:s}", "SecretId", key->path);
	const json_t *id = json_object_get(key->extra, "version_id");
	const json_t *stage = json_object_get(key->extra, "version_stage");

	if (body && id)
		json_object_set(body, "VersionId", (json_t *)id);
	if (body && stage)
		json_object_set(body, "VersionStage", (json_t *)stage);
	return body;
}

int aws_secret_value_from_reply(const json_t *reply, json_t **out, char *version,
                                size_t versionlen, struct backend_error *err,
                                const char *what)
{
	const json_t *s = json_object_get(reply, "SecretString");
	const json_t *b = json_object_get(reply, "SecretBinary");
	const json_t *id = json_object_get(reply, "VersionId");
	json_error_t jerr;

	if (id && (!json_is_string(id) ||
	           strlen(json_string_value(id)) != json_string_length(id))) {
		backend_error_set(err, "GetSecretValue %s: VersionId is not a string",
		                  what);
		return SFS_EPARSE;
	}
	/* A version cut to fit would compare equal to another one. */
	if (id && json_string_length(id) >= versionlen) {
		backend_error_set(err,
		                  "GetSecretValue %s: VersionId is longer than %zu bytes",
		                  what, versionlen - 1);
		return SFS_EPARSE;
	}
	snprintf(version, versionlen, "%s", id ? json_string_value(id) : "");
	if (json_is_string(s)) {
		json_t *obj = json_loadb(json_string_value(s), json_string_length(s),
		                         JSON_ALLOW_NUL, &jerr);
		if (json_is_object(obj)) {
			*out = obj;
			return 0;
		}
		json_decref(obj);
		*out = json_stringn_nocheck(json_string_value(s), json_string_length(s));
		return *out ? 0 : SFS_ENOMEM;
	}
	if (json_is_string(b)) {
		size_t cap = json_string_length(b) + 1, len = 0;
		unsigned char *bin = secmem_alloc(cap);
		int rc = 0;
		if (!bin)
			return SFS_ENOMEM;
		if (sodium_base642bin(bin, cap, json_string_value(b),
		                      json_string_length(b), "\r\n", &len, NULL,
		                      sodium_base64_VARIANT_ORIGINAL) != 0) {
			backend_error_set(
			    err, "GetSecretValue %s: SecretBinary is not base64", what);
			rc = SFS_EPARSE;
		} else {
			*out = json_stringn_nocheck((const char *)bin, len);
			rc = *out ? 0 : SFS_ENOMEM;
		}
		secmem_free(bin);
		return rc;
	}
	backend_error_set(err, "GetSecretValue %s: neither SecretString nor SecretBinary",
	                  what);
	return SFS_EPARSE;
}

static int aws_fetch(struct backend *be, const struct source_key *key,
                     struct fetch_result *out, struct backend_error *err)
{
	struct aws *a = (struct aws *)be;
	json_t *body = request_body(key), *reply = NULL;
	int rc;

	if (!body)
		return SFS_ENOMEM;
	rc = aws_call(a, "GetSecretValue", key->path, body, &reply, NULL, err);
	json_decref(body);
	if (rc < 0)
		return rc;
	rc = aws_secret_value_from_reply(reply, &out->value, out->version,
	                                 sizeof out->version, err, key->path);
	json_decref(reply);
	return rc;
}

/* The probe of a role allowed GetSecretValue but not DescribeSecret: the
 * version of a full read (costlier, but rotations still arrive). */
static int probe_by_reading(struct aws *a, const struct source_key *key, char *version,
                            size_t versionlen, struct backend_error *err)
{
	struct fetch_result r = {0};
	int rc = aws_fetch(&a->base, key, &r, err);

	if (rc == 0 && strlen(r.version) >= versionlen) {
		backend_error_set(err,
		                  "GetSecretValue %s: VersionId is longer than %zu bytes",
		                  key->path, versionlen - 1);
		rc = SFS_EPARSE;
	} else if (rc == 0) {
		memcpy(version, r.version, strlen(r.version) + 1);
	}
	fetch_result_release(&r);
	return rc;
}

int aws_version_from_describe(const json_t *reply, const char *stage, char *version,
                              size_t versionlen, struct backend_error *err,
                              const char *what)
{
	const char *id;
	json_t *stages;
	int rc = SFS_ENOTFOUND;

	json_object_foreach((json_t *)json_object_get(reply, "VersionIdsToStages"), id,
	                    stages)
	{
		size_t i;
		json_t *st;
		json_array_foreach(stages, i,
		                   st) if (json_is_string(st) &&
		                           strcmp(json_string_value(st), stage) == 0)
		{
			if (strlen(id) >= versionlen) {
				backend_error_set(err,
				                  "DescribeSecret %s: a VersionId is "
				                  "longer than %zu bytes",
				                  what, versionlen - 1);
				return SFS_EPARSE;
			}
			snprintf(version, versionlen, "%s", id);
			rc = 0;
		}
	}
	if (rc < 0)
		backend_error_set(err, "DescribeSecret %s: no version has stage %s", what,
		                  stage);
	if (rc == 0 && json_object_get(reply, "DeletedDate") &&
	    !json_is_null(json_object_get(reply, "DeletedDate"))) {
		backend_error_set(
		    err, "DescribeSecret %s: the secret is scheduled for deletion", what);
		rc = SFS_EBACKEND;
	}
	return rc;
}

static int aws_probe(struct backend *be, const struct source_key *key, char *version,
                     size_t versionlen, struct backend_error *err)
{
	struct aws *a = (struct aws *)be;
	const char *pinned = json_string_value(json_object_get(key->extra, "version_id"));
	const char *stage =
	    json_string_value(json_object_get(key->extra, "version_stage"));
	json_t *body, *reply = NULL;
	bool denied;
	int rc;

	if (pinned) {
		/* A version's content never changes. The config check bounds
		 * version_id as a version id is bounded. */
		if (strlen(pinned) >= versionlen) {
			backend_error_set(err, "%s: version_id is longer than %zu bytes",
			                  key->path, versionlen - 1);
			return SFS_EINVAL;
		}
		memcpy(version, pinned, strlen(pinned) + 1);
		return 0;
	}
	if (!stage)
		stage = "AWSCURRENT";
	pthread_mutex_lock(&a->lock);
	denied = a->probe_denied;
	pthread_mutex_unlock(&a->lock);
	if (denied)
		return probe_by_reading(a, key, version, versionlen, err);
	body = json_pack("{s:s}", "SecretId", key->path);
	if (!body)
		return SFS_ENOMEM;
	rc = aws_call(a, "DescribeSecret", key->path, body, &reply, NULL, err);
	json_decref(body);
	if (rc == SFS_EDENIED) {
		pthread_mutex_lock(&a->lock);
		denied = a->probe_denied;
		a->probe_denied = true;
		pthread_mutex_unlock(&a->lock);
		if (!denied)
			log_warn(
			    "backend %s: %s; checking for new versions with "
			    "GetSecretValue instead (grant secretsmanager:DescribeSecret "
			    "for cheaper probes)",
			    a->base.name, err->msg);
		return probe_by_reading(a, key, version, versionlen, err);
	}
	if (rc < 0)
		return rc;
	rc = aws_version_from_describe(reply, stage, version, versionlen, err, key->path);
	json_decref(reply);
	return rc;
}

/* ---- configuration ------------------------------------------------------ */

static bool is_url(const char *s)
{
	return s && (strncmp(s, "https://", 8) == 0 || strncmp(s, "http://", 7) == 0) &&
	       strstr(s, "://")[3] != '\0';
}

/* The backend's config object, parsed (strings and objects borrowed from
 * it; NULL when absent). */
struct aws_conf {
	const char *region;
	const char *endpoint;
	const char *sts_endpoint;
	const char *profile;
	const char *proxy;
	const json_t *tls_conf; /* the "tls" object, parsed into tls */
	struct backend_tls tls;
	uint64_t timeout_ms; /* 0: http.c's default */
	bool proxy_from_environment;
};

static const struct backend_conf_key aws_conf_keys[] = {
    BACKEND_CONF_TYPE_KEY,
    BACKEND_CONF_STRING_KEY(struct aws_conf, region, "region"),
    BACKEND_CONF_STRING_KEY(struct aws_conf, endpoint, "endpoint"),
    BACKEND_CONF_STRING_KEY(struct aws_conf, sts_endpoint, "sts_endpoint"),
    BACKEND_CONF_STRING_KEY(struct aws_conf, profile, "profile"),
    BACKEND_CONF_OBJECT_KEY(struct aws_conf, tls_conf, "tls"),
    BACKEND_CONF_DURATION_KEY(struct aws_conf, timeout_ms, "timeout"),
    BACKEND_CONF_STRING_KEY(struct aws_conf, proxy, "proxy"),
    BACKEND_CONF_BOOL_KEY(struct aws_conf, proxy_from_environment,
                          "proxy_from_environment"),
};
static const struct backend_conf_spec aws_conf_spec =
    BACKEND_CONF_SPEC("aws backends take", aws_conf_keys);

/* Parses the backend's config object into c (defaults first) and checks
 * the endpoint URLs and the tls object; d may be NULL (create). Returns 0
 * or SFS_EINVAL. */
static int aws_conf_parse(const json_t *conf, const char *keypath, struct diag *d,
                          struct aws_conf *c)
{
	static const char *const url_keys[] = {"endpoint", "sts_endpoint"};
	int rc;

	*c = (struct aws_conf){.proxy_from_environment = true};
	rc = backend_conf_parse(&aws_conf_spec, conf, keypath, d, c);
	for (size_t i = 0; i < 2; i++) {
		const char *u = i == 0 ? c->endpoint : c->sts_endpoint;
		if (u && !is_url(u)) {
			diag_add_at(
			    d, keypath, url_keys[i],
			    "must be an https:// URL (or http:// for a local test "
			    "server)");
			rc = SFS_EINVAL;
		}
	}
	if (c->tls_conf) {
		char *kp = diag_keypath_new(keypath, "tls");
		if (backend_tls_parse(c->tls_conf, kp ? kp : keypath, d, &c->tls) < 0)
			rc = SFS_EINVAL;
		free(kp);
	}
	return rc;
}

static int aws_check(const json_t *conf, const char *keypath, struct diag *d)
{
	struct aws_conf c;

	return aws_conf_parse(conf, keypath, d, &c);
}

static int aws_check_secret(const json_t *extra, const char *keypath, struct diag *d)
{
	int rc = 0;

	if (backend_check_string(extra, "version_id", false, keypath, d) < 0 ||
	    backend_check_string(extra, "version_stage", false, keypath, d) < 0)
		rc = SFS_EINVAL;
	if (json_string_length(json_object_get(extra, "version_id")) >=
	    BACKEND_VERSION_MAX) {
		diag_add_at(d, keypath, "version_id", "is longer than %zu bytes",
		            (size_t)BACKEND_VERSION_MAX - 1);
		rc = SFS_EINVAL;
	}
	if (json_object_get(extra, "version_id") &&
	    json_object_get(extra, "version_stage")) {
		diag_add(d, keypath, "give version_id or version_stage, not both");
		rc = SFS_EINVAL;
	}
	return rc;
}

static void aws_free(struct backend *be)
{
	struct aws *a = (struct aws *)be;

	if (!a)
		return;
	http_pool_destroy(&a->pool);
	http_client_free(a->cred_client);
	backend_proxy_release(&a->sm_proxy);
	backend_proxy_release(&a->sts_proxy);
	credcache_release(&a->creds);
	aws_profile_release(&a->env.profile);
	pthread_mutex_destroy(&a->lock);
	free(a->env.region);
	free(a->env.sts_endpoint);
	free(a->endpoint);
	free(a->host);
	free(a->path);
	free(a->base.name);
	free(a);
}

/* The first non-empty of the environment variables, or NULL. */
static const char *first_env(const char *const *vars)
{
	for (; *vars; vars++) {
		const char *v = getenv(*vars);
		if (v && *v)
			return v;
	}
	return NULL;
}

/* Splits the endpoint URL into scheme://authority and path. */
static int set_endpoint(struct aws *a, const char *url)
{
	const char *auth = strstr(url, "://") + 3;
	size_t alen = strcspn(auth, "/?#");
	const char *path = auth + alen;
	size_t plen = strcspn(path, "?#");

	while (plen > 1 && path[plen - 1] == '/')
		plen--;
	a->endpoint = strndup(url, (size_t)(auth - url) + alen);
	a->host = strndup(auth, alen);
	a->path = plen ? strndup(path, plen) : strdup("/");
	return a->endpoint && a->host && a->path ? 0 : SFS_ENOMEM;
}

static int aws_resolve(struct aws *a, const struct aws_conf *conf)
{
	static const char *const region_vars[] = {"AWS_REGION", "AWS_DEFAULT_REGION",
	                                          NULL};
	static const char *const sm_vars[] = {"AWS_ENDPOINT_URL_SECRETS_MANAGER",
	                                      "AWS_ENDPOINT_URL", NULL};
	static const char *const sts_vars[] = {"AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL",
	                                       NULL};
	const char *region = conf->region;
	const char *endpoint = conf->endpoint;
	const char *sts = conf->sts_endpoint;
	char *dflt = NULL;
	int rc;

	if (!region)
		region = first_env(region_vars);
	if (!region)
		region = a->env.profile.region;
	if (!region) {
		log_error("backend %s: no region: set \"region\", AWS_REGION, "
		          "AWS_DEFAULT_REGION or region in profile %s",
		          a->base.name, a->env.profile.name);
		return SFS_EINVAL;
	}
	a->env.region = strdup(region);
	if (!endpoint)
		endpoint = first_env(sm_vars);
	if (!sts)
		sts = first_env(sts_vars);
	if (sts && !is_url(sts)) {
		log_error("backend %s: STS endpoint %s is not an http(s):// URL",
		          a->base.name, sts);
		return SFS_EINVAL;
	}
	if (endpoint && !is_url(endpoint)) {
		log_error("backend %s: endpoint %s is not an http(s):// URL",
		          a->base.name, endpoint);
		return SFS_EINVAL;
	}
	if (!endpoint &&
	    asprintf(&dflt, "https://secretsmanager.%s.amazonaws.com%s", region,
	             strncmp(region, "cn-", 3) == 0 ? ".cn" : "") < 0)
		return SFS_ENOMEM;
	rc = set_endpoint(a, endpoint ? endpoint : dflt);
	free(dflt);
	if (rc == 0 && sts) {
		size_t n = strlen(sts);
		while (n > 8 && sts[n - 1] == '/')
			n--;
		a->env.sts_endpoint = strndup(sts, n);
		rc = a->env.sts_endpoint ? 0 : SFS_ENOMEM;
	}
	return a->env.region ? rc : SFS_ENOMEM;
}

static int aws_create(const struct backend_env *env, const char *name, const json_t *conf,
                      struct backend **out)
{
	struct aws_conf c;
	struct http_options *h;
	struct aws *a;
	struct backend_error err = {0};
	int rc = SFS_ENOMEM;

	if (aws_conf_parse(conf, name, NULL, &c) < 0)
		return SFS_EINVAL;
	a = calloc(1, sizeof *a);
	if (!a)
		return SFS_ENOMEM;
	a->base.ops = &backend_aws_ops;
	pthread_mutex_init(&a->lock, NULL);
	a->base.name = strdup(name);
	a->env.backend = a->base.name;
	a->env.store = env->store;
	a->env.secrets = env->envstash;
	a->env.profile_explicit = c.profile != NULL;
	if (!a->base.name ||
	    credcache_init(&a->creds, env->store, AWS_RETRY_BASE_MS, AWS_RETRY_CAP_MS,
	                   "\x01"
	                   "aws/%s/credentials",
	                   name) < 0 ||
	    aws_env_stash(env->envstash) < 0 ||
	    aws_profile_load(c.profile, &a->env.profile) < 0)
		goto out;
	rc = aws_resolve(a, &c);
	if (rc < 0)
		goto out;

	h = &a->sm_http;
	h->ca_file = backend_conf_or_env(c.tls.ca_file, "AWS_CA_BUNDLE");
	h->ca_dir = c.tls.ca_dir;
	h->client_cert = c.tls.client_cert;
	h->client_key = c.tls.client_key;
	h->server_name = c.tls.server_name;
	/* The proxy is chosen per endpoint (its scheme; NO_PROXY per host). */
	if (backend_proxy_init(&a->sm_proxy, c.proxy, c.proxy_from_environment,
	                       a->endpoint, NULL) < 0 ||
	    backend_proxy_init(&a->sts_proxy, c.proxy, c.proxy_from_environment,
	                       a->env.sts_endpoint ? a->env.sts_endpoint : "https://",
	                       NULL) < 0) {
		rc = SFS_ENOMEM;
		goto out;
	}
	h->proxy = a->sm_proxy.url;
	h->noproxy = a->sm_proxy.noproxy;
	backend_proxy_log(&a->sm_proxy, name);
	h->timeout_ms = c.timeout_ms;
	h->max_retries = 2;
	/* STS shares the CA but not the Secrets Manager endpoint's
	 * server name or client certificate. */
	a->env.sts_http = *h;
	a->env.sts_http.server_name = NULL;
	a->env.sts_http.client_cert = NULL;
	a->env.sts_http.client_key = NULL;
	a->env.sts_http.proxy = a->sts_proxy.url;
	a->env.sts_http.noproxy = a->sts_proxy.noproxy;
	/* Link-local metadata endpoints: never a proxy, fail fast. */
	a->env.meta_http = (struct http_options){
	    .connect_timeout_ms = 1000,
	    .timeout_ms = 5000,
	    .max_retries = 1,
	    .max_response = 64 * 1024,
	};

	a->source = aws_cred_choose(&a->env);
	/* A profile naming a role chain or a credential process means that
	 * identity, not the static keys it may also hold, nor the next source. */
	if (a->env.profile.unsupported &&
	    (!a->source || a->source->metadata || a->source == &aws_cred_shared_files)) {
		log_error(
		    "backend %s: profile %s uses %s, which secretfs does not support; "
		    "use web identity, static keys, container credentials or IMDS",
		    name, a->env.profile.name, a->env.profile.unsupported);
		rc = SFS_EINVAL;
		goto out;
	}
	if (!a->source) {
		log_error(
		    "backend %s: no AWS credentials: the environment, web identity, "
		    "profile %s and container credentials are not configured, and IMDS "
		    "is disabled (AWS_EC2_METADATA_DISABLED)",
		    name, a->env.profile.name);
		rc = SFS_EINVAL;
		goto out;
	}
	rc = http_pool_init(&a->pool, h, AWS_MAX_CLIENTS, &err);
	if (rc == 0)
		rc = http_client_new(a->source->metadata ? &a->env.meta_http
		                                         : &a->env.sts_http,
		                     &a->cred_client, &err);
	if (rc < 0) {
		log_error("backend %s: %s", name, err.msg);
		goto out;
	}
	log_info("backend %s: AWS Secrets Manager at %s (region %s), credentials from %s",
	         name, a->endpoint, a->env.region, a->source->name);
	*out = &a->base;
	a = NULL;
out:
	aws_free(a ? &a->base : NULL);
	return rc;
}

static const char *const aws_secret_keys[] = {"version_id", "version_stage", NULL};

const struct backend_ops backend_aws_ops = {
    .type = "aws",
    .secret_keys = aws_secret_keys,
    .default_refresh_ms = 5 * 60 * 1000,
    .check = aws_check,
    .check_secret = aws_check_secret,
    .create = aws_create,
    .free = aws_free,
    .fetch = aws_fetch,
    .probe = aws_probe,
    .maintain = aws_maintain,
    .concurrent = true,
};

int aws_get_secret_value(struct backend *be, const char *id, const char *version_id,
                         const char *version_stage, json_t **reply,
                         struct aws_service_error *svc, struct backend_error *err)
{
	json_t *body = json_pack("{s:s}", "SecretId", id);
	int rc = SFS_ENOMEM;

	*reply = NULL;
	if (svc)
		*svc = (struct aws_service_error){0};
	if (be->ops != &backend_aws_ops)
		return SFS_EINVAL;
	if (body && version_id &&
	    json_object_set_new(body, "VersionId", json_string(version_id)) < 0)
		goto out;
	if (body && version_stage &&
	    json_object_set_new(body, "VersionStage", json_string(version_stage)) < 0)
		goto out;
	if (body)
		rc = aws_call((struct aws *)be, "GetSecretValue", id, body, reply, svc,
		              err);
out:
	json_decref(body);
	return rc;
}
