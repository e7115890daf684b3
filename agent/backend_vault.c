/*
 * The "vault" backend: HashiCorp Vault or OpenBao over HTTPS.
 *
 * - Requests carry X-Vault-Request, X-Vault-Namespace and X-Vault-Token;
 *   errors come from the status and {"errors": [...]}.
 * - The auth token comes from an auth method (auth_*.c) and is kept sealed
 *   in the store between requests. maintain() renews it at ~2/3 of its TTL
 *   and logs in again when it can no longer be renewed far enough, was
 *   revoked, or a request is refused with a token that no longer looks
 *   valid. A new token never resets sources: leases stay and are renewed
 *   with whichever token is current.
 * - KV paths are written as for `vault kv get`; each mount's type and KV
 *   version come from sys/internal/ui/mounts, and "data/" or "metadata/" is
 *   inserted for KV v2. probe() reads KV v2 metadata, so a full read happens
 *   only when current_version changed; when a policy refuses metadata/
 *   (403), the mount's probes read data/ and take the version from its own
 *   metadata instead (logged once, counted).
 * - Anything else is read as is (GET, or POST/PUT with params): an answer
 *   with lease_id/lease_duration/renewable is a lease that the scheduler
 *   renews, replaces and revokes through renew() and revoke(). A write
 *   answered without a lease (PKI issues unleased certificates) is marked
 *   issued, with its validity from "expiration" or the certificate's
 *   notAfter, so that it is not re-issued every refresh.
 */
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "secretfs/duration.h"
#include "secretfs/error.h"
#include "secretfs/http.h"
#include "secretfs/lease.h"
#include "secretfs/log.h"
#include "secretfs/secjson.h"
#include "secretfs/secmem.h"
#include "secretfs/stats.h"
#include "secretfs/store.h"
#include "secretfs/timing.h"
#include "vault.h"
#include "x509.h"

/* Registered in backend.c. */
extern const struct backend_ops backend_vault_ops;

#define VAULT_LOGIN_BASE_MS 1000
#define VAULT_LOGIN_CAP_MS (5 * 60 * 1000)
#define VAULT_MAX_MOUNTS 64
#define VAULT_MAX_CLIENTS 16                     /* concurrent requests per backend */
#define VAULT_GENERATIONS 32                     /* past logins whose end is remembered */
#define VAULT_MAX_TTL_S (10ll * 365 * 24 * 3600) /* longer TTLs count as this */

struct vault_mount {
	char *prefix;         /* "secret/" */
	int kv_version;       /* 0: not KV; 1 or 2 */
	bool metadata_denied; /* KV v2 metadata/ refused: probe by reading data/
	                         (guarded by the backend's lock) */
};

struct vault_generation {
	uint64_t gen;
	uint64_t expires; /* when that token, and its leases, end */
};

struct vault {
	struct backend base;
	char *address;   /* without trailing slash */
	char *namespace; /* NULL: none */

	/* Guards everything below but the login itself. */
	pthread_mutex_t lock;
	/* Held for a whole login, so concurrent requests log in once. */
	pthread_mutex_t login_lock;

	struct http_pool pool; /* bounds the concurrent requests */

	struct vault_generation past[VAULT_GENERATIONS];
	size_t npast;
	struct store *store;
	const struct vault_auth_ops *auth;
	json_t *auth_conf;

	/* The token, sealed; empty until the first login. */
	struct store_slot token;
	uint64_t token_ttl_ms; /* as granted at login */
	bool token_renewable;
	uint64_t token_expires; /* monotonic ms; UINT64_MAX: never */
	uint64_t token_issued;  /* monotonic ms of the login */
	uint64_t token_due;     /* next renewal or login */
	bool token_relogin;     /* token_due is a login, not a renewal */
	unsigned login_attempt;

	struct store_slot stash; /* auth method material */

	struct vault_mount mounts[VAULT_MAX_MOUNTS];
	size_t nmounts;

	struct stats_set *stats; /* vault_family; NULL-safe */
	struct backend_proxy proxy;
};

/* The metrics of each Vault backend (stats.h). */
enum { VAULT_METADATA_DENIED, VAULT_PROBES_BY_READING };
static const struct stats_field vault_fields[] = {
    [VAULT_METADATA_DENIED] = {STATS_COUNTER, "secretfs_vault_metadata_denied_total",
                               "KV v2 mounts whose metadata/ the policy refused, "
                               "so new versions are found by reading data/"},
    [VAULT_PROBES_BY_READING] = {STATS_COUNTER, "secretfs_vault_probes_by_reading_total",
                                 "Version checks made by reading data/ because "
                                 "metadata/ is refused"},
};
static const struct stats_family vault_family = {
    vault_fields, sizeof vault_fields / sizeof vault_fields[0], "backend"};

/* ---- helpers shared with the auth methods ------------------------------ */

const char *vault_auth_mount(const json_t *conf, const struct vault_auth_ops *ops)
{
	const char *m = json_string_value(json_object_get(conf, "mount"));

	return m ? m : ops->default_mount;
}

int vault_login_from_reply(const json_t *reply, struct vault_login *out,
                           struct backend_error *err)
{
	const json_t *auth = json_object_get(reply, "auth");
	const json_t *tok = json_object_get(auth, "client_token");
	json_int_t ttl;

	memset(out, 0, sizeof *out);
	if (!json_is_string(tok) || json_string_length(tok) == 0) {
		backend_error_set(err, "login reply has no auth.client_token");
		return SFS_EPARSE;
	}
	if (strlen(json_string_value(tok)) != json_string_length(tok)) {
		backend_error_set(err, "login reply has a NUL byte in auth.client_token");
		return SFS_EPARSE;
	}
	ttl = json_integer_value(json_object_get(auth, "lease_duration"));
	if (ttl < 0) {
		backend_error_set(err, "login reply has a negative auth.lease_duration");
		return SFS_EPARSE;
	}
	out->token = secmem_alloc(json_string_length(tok) + 1);
	if (!out->token)
		return SFS_ENOMEM;
	memcpy(out->token, json_string_value(tok), json_string_length(tok));
	/* Past ten years is "for ever" here, and must not overflow. */
	out->ttl_ms = (uint64_t)(ttl > VAULT_MAX_TTL_S ? VAULT_MAX_TTL_S : ttl) * 1000;
	out->renewable = json_is_true(json_object_get(auth, "renewable"));
	return 0;
}

int vault_login_role_jwt(struct vault *v, const json_t *conf,
                         const struct vault_auth_ops *ops, const char *default_file,
                         struct vault_login *out, struct backend_error *err)
{
	const char *role = json_string_value(json_object_get(conf, "role"));
	const char *file = json_string_value(json_object_get(conf, "jwt_file"));
	json_t *body = NULL, *reply = NULL;
	char *jwt = NULL, path[512];
	int rc;

	if (!file)
		file = default_file;
	rc = backend_read_secret_file(file, &jwt);
	if (rc < 0) {
		backend_error_set(err, "cannot read jwt_file %s: %s", file,
		                  sfs_strerror(rc));
		return rc;
	}
	body = json_pack("{s:s, s:s}", "role", role, "jwt", jwt);
	secmem_free(jwt);
	if (!body)
		return SFS_ENOMEM;
	snprintf(path, sizeof path, "auth/%s/login", vault_auth_mount(conf, ops));
	rc = vault_call(v, "POST", path, NULL, body, false, NULL, &reply, err);
	if (rc == 0)
		rc = vault_login_from_reply(reply, out, err);
	json_decref(body);
	json_decref(reply);
	return rc;
}

const char *vault_env(const char *suffix)
{
	char name[64];
	const char *e;

	for (int i = 0; i < 2; i++) {
		snprintf(name, sizeof name, "%s_%s", i == 0 ? "BAO" : "VAULT", suffix);
		e = getenv(name);
		if (e && *e)
			return e;
	}
	return NULL;
}

/* A config string, else BAO_<suffix> or VAULT_<suffix>. */
static const char *conf_or_env(const json_t *obj, const char *key, const char *suffix)
{
	const char *s = json_string_value(json_object_get(obj, key));

	return s ? s : vault_env(suffix);
}

/* VAULT_SKIP_VERIFY / BAO_SKIP_VERIFY set to a true value (Go's
 * strconv.ParseBool spellings), which secretfs refuses: it never turns TLS
 * verification off. Returns the variable's name, or NULL. */
static const char *skip_verify_asked(void)
{
	static const char *const names[] = {"VAULT_SKIP_VERIFY", "BAO_SKIP_VERIFY"};
	static const char *const truths[] = {"1", "t", "T", "true", "TRUE", "True"};

	for (size_t i = 0; i < 2; i++) {
		const char *e = getenv(names[i]);
		for (size_t j = 0; e && j < sizeof truths / sizeof truths[0]; j++)
			if (strcmp(e, truths[j]) == 0)
				return names[i];
	}
	return NULL;
}

/* The sealed slots' names: distinct per backend and purpose. */
static const char *slot_name(struct vault *v, const char *what, char *buf, size_t len)
{
	snprintf(buf, len, "\x01vault/%s/%s", v->base.name, what);
	return buf;
}

int vault_stash(struct vault *v, const char *data, size_t len)
{
	char name[300];
	int rc;

	pthread_mutex_lock(&v->lock);
	rc = store_slot_put(v->store, &v->stash, slot_name(v, "stash", name, sizeof name),
	                    data, len);
	pthread_mutex_unlock(&v->lock);
	return rc;
}

int vault_unstash(struct vault *v, char **out)
{
	char name[300];
	int rc;

	pthread_mutex_lock(&v->lock);
	rc = store_slot_get(v->store, &v->stash, slot_name(v, "stash", name, sizeof name),
	                    out);
	pthread_mutex_unlock(&v->lock);
	return rc;
}

/* The auth registry: one line per method (auth_<method>.c). */
static const struct vault_auth_ops *const auth_methods[] = {
    &vault_auth_token,
    &vault_auth_approle,
    &vault_auth_kubernetes,
    &vault_auth_jwt,
};
#define NAUTH (sizeof auth_methods / sizeof auth_methods[0])

const struct vault_auth_ops *vault_auth_find(const char *method)
{
	for (size_t i = 0; i < NAUTH; i++)
		if (strcmp(auth_methods[i]->method, method) == 0)
			return auth_methods[i];
	return NULL;
}

const char *vault_auth_names(char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < NAUTH && used < len; i++)
		used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? ", " : "",
		                         auth_methods[i]->method);
	return buf;
}

/* ---- requests ------------------------------------------------------------ */

/* Appends Vault's error messages (bounded) to buf. */
static void vault_errors(const json_t *reply, char *buf, size_t len)
{
	const json_t *errs = json_object_get(reply, "errors");
	size_t i, used = strlen(buf);
	const json_t *e;

	json_array_foreach(errs, i, e)
	{
		if (!json_is_string(e) || used + 3 >= len)
			break;
		used += (size_t)snprintf(buf + used, len - used, "%s%.120s",
		                         i ? "; " : ": ", json_string_value(e));
		if (used >= len)
			break;
	}
}

int vault_call(struct vault *v, const char *method, const char *path, const char *query,
               const json_t *body, bool with_token, const char *token, json_t **out,
               struct backend_error *err)
{
	struct http_header headers[4];
	struct http_request req = {.method = method, .headers = headers};
	struct http_response resp = {0};
	struct http_client *client = NULL;
	char *escaped = NULL, *url = NULL, *text = NULL, *tok = NULL, msg[160];
	size_t nh = 0;
	json_error_t jerr;
	json_t *reply = NULL;
	int rc;

	*out = NULL;
	headers[nh++] = (struct http_header){"X-Vault-Request", "true", false};
	if (v->namespace)
		headers[nh++] =
		    (struct http_header){"X-Vault-Namespace", v->namespace, false};
	if (with_token) {
		if (!token) {
			rc = store_slot_get(v->store, &v->token,
			                    slot_name(v, "token", msg, sizeof msg), &tok);
			if (rc < 0) {
				backend_error_set(err, "not logged in to Vault");
				return rc == SFS_ENOTFOUND ? SFS_ETRANSIENT : rc;
			}
			token = tok;
		}
		headers[nh++] = (struct http_header){"X-Vault-Token", token, true};
	}
	if (body) {
		headers[nh++] =
		    (struct http_header){"Content-Type", "application/json", false};
		text = json_dumps(body, JSON_COMPACT);
		if (!text) {
			rc = SFS_ENOMEM;
			goto out;
		}
		req.body = text;
		req.body_len = strlen(text);
	}
	req.nheaders = nh;
	req.idempotent = strcmp(method, "GET") == 0 || strcmp(method, "LIST") == 0;
	escaped = http_escape_path(path, true);
	if (!escaped || asprintf(&url, "%s/v1/%s%s%s", v->address, escaped,
	                         query ? "?" : "", query ? query : "") < 0) {
		url = NULL;
		rc = SFS_ENOMEM;
		goto out;
	}
	req.url = url;
	client = http_pool_acquire(&v->pool, msg, sizeof msg);
	if (!client) {
		backend_error_set(err, "%s", msg);
		rc = SFS_ETRANSIENT;
		goto out;
	}
	rc = http_do(client, &req, &resp, msg, sizeof msg);
	http_pool_release(&v->pool, client);
	if (rc < 0) {
		backend_error_set(err, "%s %s: %s", method, path, msg);
		goto out;
	}
	err->retry_after_ms = resp.retry_after_ms;
	if (resp.body.len > 0) {
		reply = json_loadb((const char *)resp.body.data, resp.body.len, 0, &jerr);
		if (!reply && resp.status >= 200 && resp.status < 300) {
			backend_error_set(err,
			                  "%s %s: HTTP %ld with a malformed JSON body",
			                  method, path, resp.status);
			rc = SFS_EPARSE;
			goto out;
		}
	}
	if (resp.status >= 200 && resp.status < 300) {
		*out = reply;
		reply = NULL;
		rc = 0;
		goto out;
	}
	snprintf(msg, sizeof msg, "%s %s: HTTP %ld", method, path, resp.status);
	vault_errors(reply, msg, sizeof msg);
	backend_error_set(err, "%s", msg);
	switch (resp.status) {
	case 403:
		rc = SFS_EDENIED;
		break;
	case 404:
		rc = SFS_ENOTFOUND;
		*out = reply;
		reply = NULL;
		break;
	case 400:
		rc = SFS_EBACKEND;
		break;
	default:
		rc = resp.status == 412 || resp.status == 429 || resp.status >= 500
		         ? SFS_ETRANSIENT
		         : SFS_EBACKEND;
	}
out:
	json_decref(reply);
	secjson_free_buf(text);
	secmem_free(tok);
	http_response_release(&resp);
	free(escaped);
	free(url);
	return rc;
}

/* ---- token lifecycle ----------------------------------------------------- */

/* Plans the next renewal or login after the token got ttl_ms (lease.h:
 * the same rule as for leases); lock held. */
static void token_schedule(struct vault *v, uint64_t now, uint64_t ttl_ms, bool capped)
{
	struct lease_terms terms = {
	    .issued = v->token_issued,
	    .life_ms = v->token_ttl_ms,
	    .renewable = v->token_renewable,
	    .capped = capped,
	};
	uint64_t due;

	if (ttl_ms == 0) {
		v->token_expires = UINT64_MAX;
		v->token_due = UINT64_MAX;
		return;
	}
	v->token_expires = now + ttl_ms;
	if (lease_next(&terms, now, ttl_ms, timing_random(), &due) == LEASE_REPLACE &&
	    v->auth->can_relogin) {
		v->token_relogin = true; /* its end is known: log in again first */
		v->token_due = due;
		return;
	}
	v->token_relogin = false;
	v->token_due = v->token_renewable
	                   ? now + timing_renew_after(ttl_ms, timing_random())
	                   : UINT64_MAX; /* a static token: nothing to do */
}

/* Remembers when a token being replaced ends: its leases end with it.
 * A token replaced because it was refused is already dead. Lock held. */
static void token_retire(struct vault *v, uint64_t now, bool dead)
{
	struct vault_generation *g;

	if (!v->token.blob)
		return;
	if (v->npast == VAULT_GENERATIONS) {
		memmove(v->past, v->past + 1, (VAULT_GENERATIONS - 1) * sizeof *v->past);
		v->npast--;
	}
	g = &v->past[v->npast++];
	g->gen = v->token.version;
	g->expires = dead ? now : v->token_expires;
}

/*
 * Logs in and installs the new token. seen is the token version the
 * caller saw: when another thread logged in meanwhile, that login is used.
 * dead says the current token was refused.
 */
static int vault_login(struct vault *v, uint64_t now, uint64_t seen, bool dead)
{
	struct backend_error err = {0};
	struct vault_login login = {0};
	int rc;

	/* After the stop signal the only network work is revoking leases;
	 * a new login is not part of it. */
	if (http_stopping())
		return SFS_ECANCELED;
	pthread_mutex_lock(&v->login_lock);
	pthread_mutex_lock(&v->lock);
	if (v->token.blob && v->token.version != seen) {
		pthread_mutex_unlock(&v->lock);
		pthread_mutex_unlock(&v->login_lock);
		return 0;
	}
	pthread_mutex_unlock(&v->lock);

	rc = v->auth->login(v, v->auth_conf, &login, &err);
	pthread_mutex_lock(&v->lock);
	if (rc == 0) {
		token_retire(v, now, dead);
		char name[300];
		rc = store_slot_put(v->store, &v->token,
		                    slot_name(v, "token", name, sizeof name), login.token,
		                    strlen(login.token));
	}
	secmem_free(login.token);
	if (rc < 0) {
		uint64_t delay = timing_backoff(v->login_attempt++, VAULT_LOGIN_BASE_MS,
		                                VAULT_LOGIN_CAP_MS, err.retry_after_ms,
		                                timing_random());
		log_warn("backend %s: %s login failed (attempt %u): %s%s%s; retrying in "
		         "%llu ms",
		         v->base.name, v->auth->method, v->login_attempt,
		         sfs_strerror(rc), err.msg[0] ? ": " : "", err.msg,
		         (unsigned long long)delay);
		v->token_relogin = true;
		v->token_due = now + delay;
	} else {
		v->login_attempt = 0;
		v->token_ttl_ms = login.ttl_ms;
		v->token_renewable = login.renewable;
		v->token_issued = now;
		token_schedule(v, now, login.ttl_ms, false);
		log_info("backend %s: logged in with %s (token ttl %llu s, %s)",
		         v->base.name, v->auth->method,
		         (unsigned long long)(login.ttl_ms / 1000),
		         login.renewable ? "renewable" : "not renewable");
	}
	pthread_mutex_unlock(&v->lock);
	pthread_mutex_unlock(&v->login_lock);
	return rc;
}

static uint64_t token_seen(struct vault *v)
{
	uint64_t seen;

	pthread_mutex_lock(&v->lock);
	seen = v->token.blob ? v->token.version : 0;
	pthread_mutex_unlock(&v->lock);
	return seen;
}

static int vault_renew_token(struct vault *v, uint64_t now)
{
	struct backend_error err = {0};
	uint64_t seen = token_seen(v);
	json_t *reply = NULL;
	uint64_t ttl;
	int rc;

	rc = vault_call(v, "POST", "auth/token/renew-self", NULL, NULL, true, NULL,
	                &reply, &err);
	if (rc == SFS_EDENIED && v->auth->can_relogin) {
		log_warn("backend %s: token renewal refused (%s); logging in again",
		         v->base.name, err.msg);
		json_decref(reply);
		return vault_login(v, now, seen, true);
	}
	pthread_mutex_lock(&v->lock);
	if (rc < 0) {
		uint64_t delay = timing_backoff(v->login_attempt++, VAULT_LOGIN_BASE_MS,
		                                VAULT_LOGIN_CAP_MS, err.retry_after_ms,
		                                timing_random());
		log_warn("backend %s: token renewal failed: %s; retrying in %llu ms",
		         v->base.name, err.msg, (unsigned long long)delay);
		v->token_due = now + delay;
		if (v->token_due >= v->token_expires && v->auth->can_relogin) {
			v->token_relogin = true;
			v->token_due = now;
		}
	} else {
		v->login_attempt = 0;
		ttl = (uint64_t)json_integer_value(json_object_get(
		          json_object_get(reply, "auth"), "lease_duration")) *
		      1000;
		if (ttl == 0) {
			/* Renewed for 0 s: capped with under a second left, it
			 * ends now (only a login's TTL 0 means "never"). */
			v->token_expires = now;
			v->token_relogin = v->auth->can_relogin;
			v->token_due = v->auth->can_relogin ? now : UINT64_MAX;
			if (!v->auth->can_relogin)
				log_error(
				    "backend %s: the token has reached its max TTL and "
				    "cannot be replaced with the token auth method",
				    v->base.name);
		} else {
			/* renew-self asks for the token's own TTL: less means
			 * max TTL. */
			token_schedule(v, now, ttl, ttl + 1000 < v->token_ttl_ms);
		}
		log_debug("backend %s: token renewed for %llu s%s", v->base.name,
		          (unsigned long long)(ttl / 1000),
		          v->token_relogin
		              ? " (max TTL near: logging in again before it ends)"
		              : "");
	}
	pthread_mutex_unlock(&v->lock);
	json_decref(reply);
	return rc;
}

static uint64_t vault_maintain(struct backend *be, uint64_t now)
{
	struct vault *v = (struct vault *)be;
	bool login, renew;
	uint64_t due;

	pthread_mutex_lock(&v->lock);
	login = !v->token.blob || (v->token_relogin && now >= v->token_due);
	renew = !login && now >= v->token_due;
	pthread_mutex_unlock(&v->lock);
	if (login)
		vault_login(v, now, token_seen(v), false);
	else if (renew)
		vault_renew_token(v, now);
	pthread_mutex_lock(&v->lock);
	due = v->token_due;
	pthread_mutex_unlock(&v->lock);
	return due;
}

/* Leases made under generation gen end when that token ends. */
static uint64_t vault_lease_deadline(struct backend *be, uint64_t gen)
{
	struct vault *v = (struct vault *)be;
	uint64_t dl = UINT64_MAX;

	/* Only a token already replaced gives its leases a deadline: moving
	 * them earlier would only put them under the same dying token. */
	pthread_mutex_lock(&v->lock);
	for (size_t i = 0; i < v->npast; i++)
		if (v->past[i].gen == gen)
			dl = v->past[i].expires;
	pthread_mutex_unlock(&v->lock);
	return dl;
}

/* Makes sure there is a token; logs in when there is none yet. */
static int vault_ensure_token(struct vault *v, struct backend_error *err)
{
	uint64_t now = timing_now_ms();
	bool have, backing_off;
	int rc;

	pthread_mutex_lock(&v->lock);
	have = v->token.blob != NULL;
	backing_off = now < v->token_due && v->login_attempt > 0;
	pthread_mutex_unlock(&v->lock);
	if (have)
		return 0;
	if (backing_off) {
		backend_error_set(err,
		                  "not logged in to Vault yet (login is backing off)");
		return SFS_ETRANSIENT;
	}
	if ((rc = vault_login(v, now, 0, false)) < 0) {
		backend_error_set(err, rc == SFS_ECANCELED
		                           ? "not logged in, and no login while stopping"
		                           : "cannot log in to Vault");
		return rc == SFS_ECANCELED ? rc : SFS_ETRANSIENT;
	}
	return 0;
}

/* A request refused with 403: if the token itself is no longer valid,
 * log in again (once) so the caller can retry. Returns 1 to retry. */
static int vault_recover_token(struct vault *v, uint64_t seen)
{
	struct backend_error err = {0};
	json_t *reply = NULL;
	int rc;

	if (!v->auth->can_relogin)
		return 0;
	if (token_seen(v) != seen)
		return 1; /* someone logged in since: just retry */
	rc = vault_call(v, "GET", "auth/token/lookup-self", NULL, NULL, true, NULL,
	                &reply, &err);
	json_decref(reply);
	if (rc != SFS_EDENIED)
		return 0; /* the token is fine: the path is really forbidden */
	log_warn("backend %s: the token is no longer valid; logging in again",
	         v->base.name);
	return vault_login(v, timing_now_ms(), seen, true) == 0 ? 1 : 0;
}

/* vault_call with the current token, recovering once from a dead token. */
static int vault_call_authed(struct vault *v, const char *method, const char *path,
                             const char *query, const json_t *body, json_t **out,
                             struct backend_error *err)
{
	int rc = vault_ensure_token(v, err);
	uint64_t seen;

	if (rc < 0)
		return rc;
	seen = token_seen(v);
	rc = vault_call(v, method, path, query, body, true, NULL, out, err);
	if (rc == SFS_EDENIED && vault_recover_token(v, seen) == 1) {
		json_decref(*out);
		memset(err, 0, sizeof *err);
		rc = vault_call(v, method, path, query, body, true, NULL, out, err);
	}
	return rc;
}

/* ---- KV mount detection ------------------------------------------------- */

static const struct vault_mount *mount_lookup(struct vault *v, const char *path)
{
	const struct vault_mount *found = NULL;

	pthread_mutex_lock(&v->lock);
	for (size_t i = 0; i < v->nmounts && !found; i++)
		if (strncmp(path, v->mounts[i].prefix, strlen(v->mounts[i].prefix)) == 0)
			found = &v->mounts[i];
	pthread_mutex_unlock(&v->lock);
	return found;
}

static const struct vault_mount *vault_mount_for(struct vault *v, const char *path,
                                                 struct backend_error *err, int *rc)
{
	const struct vault_mount *m;
	json_t *reply = NULL;
	const json_t *data;
	const char *type, *prefix, *version;
	char *p = NULL;
	int kv;

	*rc = 0;
	if ((m = mount_lookup(v, path)))
		return m;
	if (asprintf(&p, "sys/internal/ui/mounts/%s", path) < 0) {
		*rc = SFS_ENOMEM;
		return NULL;
	}
	*rc = vault_call_authed(v, "GET", p, NULL, NULL, &reply, err);
	free(p);
	if (*rc == SFS_EDENIED || *rc == SFS_ENOTFOUND || *rc == SFS_EBACKEND) {
		/* No permission to look, or no such mount: read the path as is. */
		json_decref(reply);
		*rc = 0;
		return NULL;
	}
	if (*rc < 0) {
		json_decref(reply);
		return NULL;
	}
	data = json_object_get(reply, "data");
	type = json_string_value(json_object_get(data, "type"));
	prefix = json_string_value(json_object_get(data, "path"));
	version = json_string_value(
	    json_object_get(json_object_get(data, "options"), "version"));
	if (!prefix || !type) {
		json_decref(reply);
		return NULL;
	}
	kv = strcmp(type, "kv") == 0 || strcmp(type, "generic") == 0
	         ? (version && strcmp(version, "2") == 0 ? 2 : 1)
	         : 0;
	pthread_mutex_lock(&v->lock);
	/* Another request may have learnt it meanwhile. */
	for (size_t i = 0; i < v->nmounts; i++)
		if (strcmp(v->mounts[i].prefix, prefix) == 0)
			m = &v->mounts[i];
	if (!m && v->nmounts < VAULT_MAX_MOUNTS &&
	    (v->mounts[v->nmounts].prefix = strdup(prefix))) {
		v->mounts[v->nmounts].kv_version = kv;
		m = &v->mounts[v->nmounts++];
		log_info("backend %s: mount %s is %s%s", v->base.name, prefix, type,
		         kv == 2   ? " v2"
		         : kv == 1 ? " v1"
		                   : "");
	}
	pthread_mutex_unlock(&v->lock);
	json_decref(reply);
	return m;
}

/* Builds "<mount><infix><rest>" for KV v2 paths. */
static char *kv2_path(const struct vault_mount *m, const char *path, const char *infix)
{
	char *out = NULL;
	size_t n = strlen(m->prefix);

	if (asprintf(&out, "%s%s%s", m->prefix, infix, path + n) < 0)
		return NULL;
	return out;
}

/* ---- backend operations --------------------------------------------------- */

static int vault_fetch_kv2(struct vault *v, const struct vault_mount *m,
                           const struct source_key *key, struct fetch_result *out,
                           struct backend_error *err)
{
	const json_t *pin = json_object_get(key->extra, "version");
	char *path = kv2_path(m, key->path, "data/"), query[32];
	json_t *reply = NULL;
	const json_t *data, *meta;
	int rc;

	if (!path)
		return SFS_ENOMEM;
	if (pin)
		snprintf(query, sizeof query, "version=%lld",
		         (long long)json_integer_value(pin));
	rc = vault_call_authed(v, "GET", path, pin ? query : NULL, NULL, &reply, err);
	data = json_object_get(reply, "data");
	meta = json_object_get(data, "metadata");
	if (rc == SFS_ENOTFOUND && json_is_object(meta)) {
		const json_t *del = json_object_get(meta, "deletion_time");
		backend_error_set(
		    err, "%s: version %lld is %s", key->path,
		    (long long)json_integer_value(json_object_get(meta, "version")),
		    json_is_true(json_object_get(meta, "destroyed")) ? "destroyed"
		    : del && json_string_length(del)                 ? "deleted"
		                                                     : "gone");
	}
	if (rc < 0)
		goto out;
	if (!json_is_object(json_object_get(data, "data"))) {
		backend_error_set(err, "%s: reply has no data.data object", key->path);
		rc = SFS_EPARSE;
		goto out;
	}
	memset(out, 0, sizeof *out);
	out->value = json_incref(json_object_get(data, "data"));
	snprintf(out->version, sizeof out->version, "%lld",
	         (long long)json_integer_value(json_object_get(meta, "version")));
out:
	json_decref(reply);
	free(path);
	return rc;
}

/*
 * How long a value issued by a write without a lease stays valid, in ms
 * from now, or 0 when it does not say: "expiration" (Unix seconds, as PKI
 * answers), else the notAfter of a PEM "certificate".
 */
static uint64_t issued_validity(struct vault *v, const struct source_key *key,
                                const json_t *data)
{
	const json_t *exp = json_object_get(data, "expiration");
	const json_t *cert = json_object_get(data, "certificate");
	int64_t end = 0, now = (int64_t)time(NULL);

	if (json_is_integer(exp) && json_integer_value(exp) > 0)
		end = json_integer_value(exp);
	else if (!json_is_string(cert) ||
	         x509_pem_not_after(json_string_value(cert), json_string_length(cert),
	                            &end) < 0)
		return 0;
	if (end <= now) {
		log_warn("backend %s: %s: the value it issued has already expired",
		         v->base.name, key->path);
		return 1;
	}
	return (uint64_t)(end - now) * 1000;
}

static int vault_fetch(struct backend *be, const struct source_key *key,
                       struct fetch_result *out, struct backend_error *err)
{
	struct vault *v = (struct vault *)be;
	const char *method = json_string_value(json_object_get(key->extra, "method"));
	const json_t *params = json_object_get(key->extra, "params");
	const struct vault_mount *m = NULL;
	json_t *reply = NULL;
	const json_t *data;
	uint64_t gen;
	int rc;

	if (!method || strcmp(method, "GET") == 0) {
		m = vault_mount_for(v, key->path, err, &rc);
		if (rc < 0)
			return rc;
		if (m && m->kv_version == 2)
			return vault_fetch_kv2(v, m, key, out, err);
		gen = token_seen(v);
		rc = vault_call_authed(v, "GET", key->path, NULL, NULL, &reply, err);
	} else {
		gen = token_seen(v);
		rc = vault_call_authed(v, method, key->path, NULL, params, &reply, err);
	}
	if (rc < 0)
		goto out;
	data = json_object_get(reply, "data");
	if (!json_is_object(data)) {
		backend_error_set(err, "%s: reply has no data object", key->path);
		rc = SFS_EPARSE;
		goto out;
	}
	memset(out, 0, sizeof *out);
	out->value = json_incref((json_t *)data);
	out->auth_generation = gen;
	if (json_string_length(json_object_get(reply, "lease_id")) > 0) {
		snprintf(out->lease_id, sizeof out->lease_id, "%s",
		         json_string_value(json_object_get(reply, "lease_id")));
		out->lease_ms = (uint64_t)json_integer_value(
		                    json_object_get(reply, "lease_duration")) *
		                1000;
		out->renewable = json_is_true(json_object_get(reply, "renewable"));
		if (out->lease_ms == 0)
			out->lease_id[0] = '\0';
	}
	if (method && strcmp(method, "GET") != 0 && !out->lease_id[0]) {
		out->issued = true;
		out->valid_ms = issued_validity(v, key, data);
	}
out:
	json_decref(reply);
	return rc;
}

static bool metadata_denied(struct vault *v, const struct vault_mount *m)
{
	bool denied;

	pthread_mutex_lock(&v->lock);
	denied = m->metadata_denied;
	pthread_mutex_unlock(&v->lock);
	return denied;
}

/* Marks m's metadata/ as refused; returns true the first time (to log and
 * count it once). */
static bool metadata_deny(struct vault *v, const struct vault_mount *m)
{
	bool first;

	pthread_mutex_lock(&v->lock);
	first = !m->metadata_denied;
	((struct vault_mount *)m)->metadata_denied = true;
	pthread_mutex_unlock(&v->lock);
	if (first)
		stats_inc(v->stats, VAULT_METADATA_DENIED);
	return first;
}

/* A version check without metadata/: the version of a full read of data/
 * (its own metadata), which the scheduler compares with the last one. */
static int probe_by_reading(struct vault *v, const struct vault_mount *m,
                            const struct source_key *key, char *version,
                            size_t versionlen, struct backend_error *err)
{
	struct fetch_result r = {0};
	int rc;

	stats_inc(v->stats, VAULT_PROBES_BY_READING);
	rc = vault_fetch_kv2(v, m, key, &r, err);
	if (rc == 0)
		snprintf(version, versionlen, "%s", r.version);
	fetch_result_release(&r);
	return rc;
}

static int vault_probe(struct backend *be, const struct source_key *key, char *version,
                       size_t versionlen, struct backend_error *err)
{
	struct vault *v = (struct vault *)be;
	const json_t *pin = json_object_get(key->extra, "version");
	const struct vault_mount *m;
	json_t *reply = NULL;
	char *path;
	int rc;

	if (pin) {
		snprintf(version, versionlen, "%lld", (long long)json_integer_value(pin));
		return 0;
	}
	m = vault_mount_for(v, key->path, err, &rc);
	if (rc < 0)
		return rc;
	if (!m || m->kv_version != 2) {
		version[0] = '\0'; /* unversioned: the scheduler reads in full */
		return 0;
	}
	if (metadata_denied(v, m))
		return probe_by_reading(v, m, key, version, versionlen, err);
	path = kv2_path(m, key->path, "metadata/");
	if (!path)
		return SFS_ENOMEM;
	rc = vault_call_authed(v, "GET", path, NULL, NULL, &reply, err);
	if (rc == 0)
		snprintf(version, versionlen, "%lld",
		         (long long)json_integer_value(json_object_get(
		             json_object_get(reply, "data"), "current_version")));
	json_decref(reply);
	free(path);
	if (rc == SFS_EDENIED) {
		/* A policy granting data/ but not metadata/ is common (and
		 * enough for Vault Agent): read the data each interval. */
		if (metadata_deny(v, m))
			log_warn(
			    "backend %s: %s; checking %s for new versions by reading "
			    "its data instead (grant read on %smetadata/* for cheaper "
			    "probes)",
			    v->base.name, err->msg, m->prefix, m->prefix);
		memset(err, 0, sizeof *err);
		return probe_by_reading(v, m, key, version, versionlen, err);
	}
	return rc;
}

static int vault_renew(struct backend *be, const char *lease_id, uint64_t increment_ms,
                       uint64_t *lease_ms, struct backend_error *err)
{
	struct vault *v = (struct vault *)be;
	json_t *body = json_pack("{s:s, s:I}", "lease_id", lease_id, "increment",
	                         (json_int_t)(increment_ms / 1000));
	json_t *reply = NULL;
	int rc;

	if (!body)
		return SFS_ENOMEM;
	rc = vault_call_authed(v, "PUT", "sys/leases/renew", NULL, body, &reply, err);
	json_decref(body);
	if (rc == SFS_EBACKEND &&
	    (strstr(err->msg, "lease not found") || strstr(err->msg, "expired") ||
	     strstr(err->msg, "invalid lease")))
		rc = SFS_ENOTFOUND;
	if (rc == 0) {
		*lease_ms = (uint64_t)json_integer_value(
		                json_object_get(reply, "lease_duration")) *
		            1000;
		if (!json_is_true(json_object_get(reply, "renewable")) && *lease_ms == 0)
			rc = SFS_EEXPIRED;
	}
	json_decref(reply);
	return rc;
}

static int vault_revoke(struct backend *be, const char *lease_id,
                        struct backend_error *err)
{
	struct vault *v = (struct vault *)be;
	json_t *body = json_pack("{s:s}", "lease_id", lease_id);
	json_t *reply = NULL;
	int rc;

	if (!body)
		return SFS_ENOMEM;
	rc = vault_call_authed(v, "PUT", "sys/leases/revoke", NULL, body, &reply, err);
	json_decref(body);
	json_decref(reply);
	return rc;
}

/* ---- configuration ----------------------------------------------------- */

static int vault_check_auth(const json_t *auth, const char *keypath, struct diag *d)
{
	const struct vault_auth_ops *ops;
	const char *method;
	const char *key;
	json_t *val;
	char kp[512], names[128];
	int rc = 0;

	if (!json_is_object(auth)) {
		diag_add(d, keypath, "must be an object");
		return SFS_EINVAL;
	}
	method = json_string_value(json_object_get(auth, "method"));
	if (!method) {
		diag_add(d, keypath, "missing required key \"method\" (one of: %s)",
		         vault_auth_names(names, sizeof names));
		return SFS_EINVAL;
	}
	ops = vault_auth_find(method);
	if (!ops) {
		diag_add(d, diag_keypath(kp, sizeof kp, keypath, "method"),
		         "unknown auth method \"%s\" (one of: %s)", method,
		         vault_auth_names(names, sizeof names));
		return SFS_EINVAL;
	}
	json_object_foreach((json_t *)auth, key, val)
	{
		size_t i;
		if (strcmp(key, "method") == 0 || strcmp(key, "mount") == 0)
			continue;
		for (i = 0; ops->keys[i] && strcmp(ops->keys[i], key) != 0; i++)
			;
		if (!ops->keys[i]) {
			diag_add(d, diag_keypath(kp, sizeof kp, keypath, key),
			         "unknown key \"%s\" for auth method %s", key, method);
			rc = SFS_EINVAL;
		}
	}
	if (backend_check_string(auth, "mount", false, keypath, d) < 0)
		rc = SFS_EINVAL;
	else if (json_string_length(json_object_get(auth, "mount")) >
	         VAULT_MAX_MOUNT_LEN) {
		diag_add(d, diag_keypath(kp, sizeof kp, keypath, "mount"),
		         "longer than %d bytes", VAULT_MAX_MOUNT_LEN);
		rc = SFS_EINVAL;
	}
	if (ops->check(auth, keypath, d) < 0)
		rc = SFS_EINVAL;
	return rc;
}

static int vault_check(const json_t *conf, const char *keypath, struct diag *d)
{
	static const char *const keys[] = {"type",
	                                   "address",
	                                   "namespace",
	                                   "tls",
	                                   "auth",
	                                   "timeout",
	                                   "revoke_grace",
	                                   "revoke_on_shutdown",
	                                   "proxy",
	                                   "proxy_from_environment",
	                                   NULL};
	const char *skip = skip_verify_asked();
	const json_t *addr = json_object_get(conf, "address");
	char kp[512];
	int rc;

	rc = backend_check_keys(
	    conf, keypath, keys,
	    "vault backends take: type, address, namespace, tls, auth, "
	    "timeout, revoke_grace, revoke_on_shutdown, proxy, proxy_from_environment",
	    d);
	if (skip) {
		diag_add(d, keypath,
		         "%s is set to a true value, but secretfs never turns TLS "
		         "verification off: unset it, and give a private CA with "
		         "tls.ca_file or VAULT_CACERT",
		         skip);
		rc = SFS_EINVAL;
	}
	if (backend_check_string(conf, "address", false, keypath, d) < 0 ||
	    backend_check_string(conf, "namespace", false, keypath, d) < 0 ||
	    backend_check_string(conf, "proxy", false, keypath, d) < 0)
		rc = SFS_EINVAL;
	if (!addr && !vault_env("ADDR")) {
		diag_add(
		    d, keypath,
		    "missing \"address\" (and neither VAULT_ADDR nor BAO_ADDR is set)");
		rc = SFS_EINVAL;
	}
	if (json_is_string(addr) &&
	    strncmp(json_string_value(addr), "https://", 8) != 0 &&
	    strncmp(json_string_value(addr), "http://", 7) != 0) {
		diag_add(d, diag_keypath(kp, sizeof kp, keypath, "address"),
		         "must start with https:// (or http:// for a local dev server)");
		rc = SFS_EINVAL;
	}
	if (json_object_get(conf, "tls") &&
	    backend_check_tls(json_object_get(conf, "tls"),
	                      diag_keypath(kp, sizeof kp, keypath, "tls"), d) < 0)
		rc = SFS_EINVAL;
	if (!json_object_get(conf, "auth")) {
		diag_add(d, keypath, "missing required key \"auth\"");
		rc = SFS_EINVAL;
	} else if (vault_check_auth(json_object_get(conf, "auth"),
	                            diag_keypath(kp, sizeof kp, keypath, "auth"),
	                            d) < 0) {
		rc = SFS_EINVAL;
	}
	if (backend_check_duration(conf, "timeout", keypath, d) < 0 ||
	    backend_check_duration(conf, "revoke_grace", keypath, d) < 0)
		rc = SFS_EINVAL;
	if (backend_check_bool(conf, "revoke_on_shutdown", keypath, d) < 0 ||
	    backend_check_bool(conf, "proxy_from_environment", keypath, d) < 0)
		rc = SFS_EINVAL;
	return rc;
}

static int vault_check_secret(const json_t *extra, const char *keypath, struct diag *d)
{
	const json_t *ver = json_object_get(extra, "version");
	const json_t *method = json_object_get(extra, "method");
	const json_t *params = json_object_get(extra, "params");
	char kp[512];
	int rc = 0;

	if (ver && (!json_is_integer(ver) || json_integer_value(ver) < 1)) {
		diag_add(d, diag_keypath(kp, sizeof kp, keypath, "version"),
		         "must be a positive integer");
		rc = SFS_EINVAL;
	}
	if (method && (!json_is_string(method) ||
	               (strcmp(json_string_value(method), "GET") != 0 &&
	                strcmp(json_string_value(method), "POST") != 0 &&
	                strcmp(json_string_value(method), "PUT") != 0))) {
		diag_add(d, diag_keypath(kp, sizeof kp, keypath, "method"),
		         "must be \"GET\", \"POST\" or \"PUT\"");
		rc = SFS_EINVAL;
	}
	if (params && !json_is_object(params)) {
		diag_add(d, diag_keypath(kp, sizeof kp, keypath, "params"),
		         "must be an object");
		rc = SFS_EINVAL;
	}
	if (params && (!method || strcmp(json_string_value(method), "GET") == 0)) {
		diag_add(d, diag_keypath(kp, sizeof kp, keypath, "params"),
		         "needs \"method\": \"POST\" or \"PUT\"");
		rc = SFS_EINVAL;
	}
	if (ver && method && json_is_string(method) &&
	    strcmp(json_string_value(method), "GET") != 0) {
		diag_add(d, diag_keypath(kp, sizeof kp, keypath, "version"),
		         "applies to KV reads only, not with method %s",
		         json_string_value(method));
		rc = SFS_EINVAL;
	}
	return rc;
}

/* Writes (POST/PUT) issue a new value at each read. */
static const char *vault_issues_on_read(const json_t *extra)
{
	const char *method = json_string_value(json_object_get(extra, "method"));

	return method && strcmp(method, "GET") != 0 ? method : NULL;
}

/* Both token variables are wiped, whichever was used: /proc/<pid>/environ
 * must not show them. */
static void vault_wipe_env_tokens(void)
{
	static const char *const names[] = {"VAULT_TOKEN", "BAO_TOKEN"};

	for (size_t i = 0; i < 2; i++) {
		char *tok = getenv(names[i]);
		if (tok) {
			sodium_memzero(tok, strlen(tok));
			unsetenv(names[i]);
		}
	}
}

/* Proxies meant for Vault alone, before the standard variables (as the
 * Vault CLI reads them: for every request, whatever NO_PROXY says;
 * *_PROXY_ADDR supersedes *_HTTP_PROXY, and BAO_ comes first as for the
 * other variables). */
static const char *const vault_proxy_env[] = {"BAO_PROXY_ADDR", "VAULT_PROXY_ADDR",
                                              "BAO_HTTP_PROXY", "VAULT_HTTP_PROXY", NULL};

static void vault_free(struct backend *be)
{
	struct vault *v = (struct vault *)be;

	if (!v)
		return;
	http_pool_destroy(&v->pool);
	backend_proxy_release(&v->proxy);
	store_slot_clear(&v->token);
	store_slot_clear(&v->stash);
	json_decref(v->auth_conf);
	for (size_t i = 0; i < v->nmounts; i++)
		free(v->mounts[i].prefix);
	pthread_mutex_destroy(&v->lock);
	pthread_mutex_destroy(&v->login_lock);
	free(v->address);
	free(v->namespace);
	free(v->base.name);
	free(v);
}

static int vault_create(const struct backend_env *env, const char *name,
                        const json_t *conf, struct backend **out)
{
	const json_t *tls = json_object_get(conf, "tls");
	struct http_options hopt = {0};
	struct vault *v = calloc(1, sizeof *v);
	const char *addr, *ns;
	uint64_t ms;
	char err[256];
	int rc = SFS_ENOMEM;

	if (!v)
		return SFS_ENOMEM;
	v->base.ops = &backend_vault_ops;
	v->base.revoke_grace_ms = 60 * 1000;
	pthread_mutex_init(&v->lock, NULL);
	pthread_mutex_init(&v->login_lock, NULL);
	v->store = env->store;
	v->base.name = strdup(name);
	v->stats = stats_register(env->stats, &vault_family, name);
	addr = conf_or_env(conf, "address", "ADDR");
	ns = conf_or_env(conf, "namespace", "NAMESPACE");
	v->address = addr ? strdup(addr) : NULL;
	v->namespace = ns ? strdup(ns) : NULL;
	if (!v->base.name || !v->address || (ns && !v->namespace))
		goto out;
	while (strlen(v->address) > 8 && v->address[strlen(v->address) - 1] == '/')
		v->address[strlen(v->address) - 1] = '\0';
	v->auth_conf = json_incref(json_object_get(conf, "auth"));
	v->auth =
	    vault_auth_find(json_string_value(json_object_get(v->auth_conf, "method")));
	if (json_object_get(conf, "revoke_grace"))
		duration_parse(json_object_get(conf, "revoke_grace"),
		               &v->base.revoke_grace_ms);
	v->base.revoke_on_shutdown =
	    json_is_true(json_object_get(conf, "revoke_on_shutdown"));

	hopt.ca_file = conf_or_env(tls, "ca_file", "CACERT");
	hopt.ca_dir = conf_or_env(tls, "ca_dir", "CAPATH");
	hopt.client_cert = conf_or_env(tls, "client_cert", "CLIENT_CERT");
	hopt.client_key = conf_or_env(tls, "client_key", "CLIENT_KEY");
	hopt.server_name = conf_or_env(tls, "server_name", "TLS_SERVER_NAME");
	rc = backend_proxy_init(&v->proxy, conf, v->address, vault_proxy_env);
	if (rc < 0)
		goto out;
	hopt.proxy = v->proxy.url;
	hopt.noproxy = v->proxy.noproxy;
	backend_proxy_log(&v->proxy, name);
	if (json_object_get(conf, "timeout") &&
	    duration_parse(json_object_get(conf, "timeout"), &ms) == 0)
		hopt.timeout_ms = ms;
	hopt.max_retries = 2;
	/* A token from the environment is sealed away and wiped from it: the
	 * environment stays readable in /proc/<pid>/environ and in memory. */
	if (v->auth == &vault_auth_token &&
	    !json_object_get(v->auth_conf, "token_file")) {
		const char *tok = vault_env("TOKEN");
		rc = tok ? vault_stash(v, tok, strlen(tok)) : 0;
		vault_wipe_env_tokens();
		if (rc < 0)
			goto out;
	}
	/* One client now, to check the TLS files at start-up; more on demand. */
	rc = http_pool_init(&v->pool, &hopt, VAULT_MAX_CLIENTS, err, sizeof err);
	if (rc < 0) {
		log_error("backend %s: %s", name, err);
		goto out;
	}
	*out = &v->base;
	v = NULL;
out:
	vault_free(v ? &v->base : NULL);
	return rc;
}

static const char *const vault_secret_keys[] = {"version", "method", "params", NULL};

const struct backend_ops backend_vault_ops = {
    .type = "vault",
    .secret_keys = vault_secret_keys,
    .default_refresh_ms = 5 * 60 * 1000,
    .check = vault_check,
    .check_secret = vault_check_secret,
    .issues_on_read = vault_issues_on_read,
    .create = vault_create,
    .free = vault_free,
    .fetch = vault_fetch,
    .probe = vault_probe,
    .renew = vault_renew,
    .revoke = vault_revoke,
    .maintain = vault_maintain,
    .lease_deadline = vault_lease_deadline,
    .concurrent = true,
};
