/*
 * The "vault" backend: HashiCorp Vault or OpenBao over HTTPS. This file is
 * the backend table and its glue; the parts are one file each:
 *
 * - vault_client.c: requests (the Vault headers, error bodies, settings
 *   from the config or the BAO_/VAULT_ variables);
 * - vault_token.c: the auth token (login, renewal, login again), which
 *   never resets sources: leases stay and are renewed with whichever token
 *   is current;
 * - vault_kv.c: KV v1/v2 mounts, reads and version probes;
 * - vault_auth.c: the auth methods' registry (auth_*.c) and helpers.
 *
 * Anything that is not a KV v2 read is read as is (GET, or POST/PUT with
 * params): an answer with lease_id/lease_duration/renewable is a lease that
 * the scheduler renews, replaces and revokes through renew() and revoke().
 * A write answered without a lease (PKI issues unleased certificates) is
 * marked issued, with its validity from "expiration" or the certificate's
 * notAfter, so that it is not re-issued every refresh; with
 * "revoke_on_replace" its serial_number is revoked (<mount>/revoke) after
 * the grace period once a new one replaced it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "secretfs/error.h"
#include "secretfs/log.h"
#include "vault_backend.h"
#include "x509.h"

/* Registered in backend.c. */
extern const struct backend_ops backend_vault_ops;

static uint64_t vault_maintain(struct backend *be, uint64_t now)
{
	return vault_token_maintain((struct vault *)be, now);
}

/* Leases made under generation gen end when that token ends. */
static uint64_t vault_lease_deadline(struct backend *be, uint64_t gen)
{
	return vault_token_lease_deadline((struct vault *)be, gen);
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

/* The length of the mount of a certificate issued by a write to path
 * (vault_pki_revoke_id); 0 when path names no issue. */
static size_t pki_mount_len(const char *path)
{
	static const char *const verbs[] = {"/issue/", "/sign/", "/sign-verbatim"};
	const char *end = NULL, *q;

	for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
		if ((q = strstr(path, verbs[i])) && q > path && (!end || q < end))
			end = q;
	if (!end)
		return 0;
	for (q = strstr(path, "/issuer/"); q && q < end; q = strstr(q + 1, "/issuer/"))
		if (q > path && !memchr(q + 8, '/', (size_t)(end - q - 8)))
			end = q;
	return (size_t)(end - path);
}

int vault_pki_revoke_id(const char *path, const char *serial, char *out, size_t len)
{
	size_t mlen = pki_mount_len(path);
	int n;

	out[0] = '\0';
	if (!serial || !serial[0] || strpbrk(serial, "/\n") || !mlen)
		return SFS_EINVAL;
	n = snprintf(out, len, "%.*s/cert/%s", (int)mlen, path, serial);
	if (n < 0 || (size_t)n >= len) {
		out[0] = '\0';
		return SFS_ETOOBIG;
	}
	return 0;
}

/* With revoke_on_replace, the id of the certificate a write issued into
 * out->revoke_id. */
static void set_revoke_id(struct vault *v, const struct source_key *key,
                          const json_t *data, struct fetch_result *out)
{
	const char *serial = json_string_value(json_object_get(data, "serial_number"));

	if (!json_is_true(json_object_get(key->extra, "revoke_on_replace")))
		return;
	if (vault_pki_revoke_id(key->path, serial, out->revoke_id,
	                        sizeof out->revoke_id) < 0)
		log_warn("backend %s: %s: revoke_on_replace: the answer names no "
		         "serial_number under a <mount>/issue/<role> path; it will not "
		         "be revoked",
		         v->base.name, key->path);
}

/* Revokes the certificate of revoke_id (set_revoke_id): POST
 * <mount>/revoke {"serial_number": serial}. */
static int vault_revoke_issued(struct backend *be, const char *revoke_id,
                               struct backend_error *err)
{
	struct vault *v = (struct vault *)be;
	const char *cut = NULL;
	json_t *body, *reply = NULL;
	char *path = NULL;
	int rc;

	for (const char *q = strstr(revoke_id, "/cert/"); q; q = strstr(q + 1, "/cert/"))
		cut = q;
	if (!cut)
		return SFS_EINVAL;
	body = json_pack("{s:s}", "serial_number", cut + strlen("/cert/"));
	if (!body ||
	    asprintf(&path, "%.*s/revoke", (int)(cut - revoke_id), revoke_id) < 0) {
		json_decref(body);
		return SFS_ENOMEM;
	}
	rc = vault_call_authed(v, "POST", path, NULL, body, &reply, err);
	free(path);
	json_decref(body);
	json_decref(reply);
	return rc;
}

int vault_lease_from_reply(const json_t *reply, const char *path, uint64_t gen,
                           struct fetch_result *out, struct backend_error *err)
{
	const json_t *data = json_object_get(reply, "data");
	const json_t *id = json_object_get(reply, "lease_id");
	uint64_t lease_ms = 0;

	if (!json_is_object(data)) {
		backend_error_set(err, "%s: reply has no data object", path);
		return SFS_EPARSE;
	}
	/* Cut (at the buffer's end or a NUL), it would renew and revoke
	 * another lease, or none. */
	if (json_string_length(id) >= sizeof out->lease_id ||
	    strlen(json_string_value(id) ? json_string_value(id) : "") !=
	        json_string_length(id)) {
		backend_error_set(err,
		                  "%s: lease_id is longer than %zu bytes or holds a NUL",
		                  path, sizeof out->lease_id - 1);
		return SFS_EPARSE;
	}
	if (vault_duration_ms(json_object_get(reply, "lease_duration"), &lease_ms) < 0) {
		backend_error_set(err, "%s: negative lease_duration", path);
		return SFS_EPARSE;
	}
	memset(out, 0, sizeof *out);
	out->value = json_incref((json_t *)data);
	out->reply = json_incref((json_t *)reply);
	out->auth_generation = gen;
	if (json_string_length(id) > 0 && lease_ms > 0) {
		memcpy(out->lease_id, json_string_value(id), json_string_length(id));
		out->lease_ms = lease_ms;
		out->renewable = json_is_true(json_object_get(reply, "renewable"));
	}
	return 0;
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
		m = vault_kv_mount_for(v, key->path, err, &rc);
		if (rc < 0)
			return rc;
		if (m && m->kv_version == 2)
			return vault_kv_read(v, m, key, out, err);
		gen = vault_token_seen(v);
		rc = vault_call_authed(v, "GET", key->path, NULL, NULL, &reply, err);
	} else {
		gen = vault_token_seen(v);
		rc = vault_call_authed(v, method, key->path, NULL, params, &reply, err);
	}
	if (rc < 0)
		goto out;
	rc = vault_lease_from_reply(reply, key->path, gen, out, err);
	if (rc < 0)
		goto out;
	data = json_object_get(reply, "data");
	if (method && strcmp(method, "GET") != 0 && !out->lease_id[0]) {
		out->issued = true;
		out->valid_ms = issued_validity(v, key, data);
		set_revoke_id(v, key, data, out);
	}
out:
	json_decref(reply);
	return rc;
}

static int vault_probe(struct backend *be, const struct source_key *key, char *version,
                       size_t versionlen, struct backend_error *err)
{
	return vault_kv_probe((struct vault *)be, key, version, versionlen, err);
}

int vault_renewal_from_reply(const json_t *reply, uint64_t *lease_ms,
                             struct backend_error *err)
{
	uint64_t ms = 0;

	if (vault_duration_ms(json_object_get(reply, "lease_duration"), &ms) < 0) {
		backend_error_set(err,
		                  "lease renewal reply has a negative lease_duration");
		return SFS_EPARSE;
	}
	*lease_ms = ms;
	if (!json_is_true(json_object_get(reply, "renewable")) && ms == 0)
		return SFS_EEXPIRED;
	return 0;
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
	if (rc == 0)
		rc = vault_renewal_from_reply(reply, lease_ms, err);
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

static const struct backend_conf_key vault_conf_keys[] = {
    BACKEND_CONF_TYPE_KEY,
    BACKEND_CONF_STRING_KEY(struct vault_conf, address, "address"),
    BACKEND_CONF_STRING_KEY(struct vault_conf, namespace, "namespace"),
    BACKEND_CONF_OBJECT_KEY(struct vault_conf, tls_conf, "tls"),
    BACKEND_CONF_OBJECT_KEY(struct vault_conf, auth, "auth", .required = true),
    BACKEND_CONF_DURATION_KEY(struct vault_conf, timeout_ms, "timeout"),
    BACKEND_CONF_DURATION_KEY(struct vault_conf, revoke_grace_ms, "revoke_grace"),
    BACKEND_CONF_BOOL_KEY(struct vault_conf, revoke_on_shutdown, "revoke_on_shutdown"),
    BACKEND_CONF_STRING_KEY(struct vault_conf, proxy, "proxy"),
    BACKEND_CONF_BOOL_KEY(struct vault_conf, proxy_from_environment,
                          "proxy_from_environment"),
};
static const struct backend_conf_spec vault_conf_spec =
    BACKEND_CONF_SPEC("vault backends take", vault_conf_keys);

/*
 * Parses the backend's config object into c (defaults first) and checks
 * what crosses keys or the environment; d may be NULL (create). Returns 0
 * or SFS_EINVAL.
 */
static int vault_conf_parse(const json_t *conf, const char *keypath, struct diag *d,
                            struct vault_conf *c)
{
	const char *skip = vault_client_skip_verify_asked();
	char *kp;
	int rc;

	*c = (struct vault_conf){
	    .revoke_grace_ms = 60 * 1000,
	    .proxy_from_environment = true,
	};
	rc = backend_conf_parse(&vault_conf_spec, conf, keypath, d, c);
	if (skip) {
		diag_add(d, keypath,
		         "%s is set to a true value, but secretfs never turns TLS "
		         "verification off: unset it, and give a private CA with "
		         "tls.ca_file or VAULT_CACERT",
		         skip);
		rc = SFS_EINVAL;
	}
	if (!json_object_get(conf, "address") && !vault_env("ADDR")) {
		diag_add(
		    d, keypath,
		    "missing \"address\" (and neither VAULT_ADDR nor BAO_ADDR is set)");
		rc = SFS_EINVAL;
	}
	if (c->address && strncmp(c->address, "https://", 8) != 0 &&
	    strncmp(c->address, "http://", 7) != 0) {
		diag_add_at(
		    d, keypath, "address",
		    "must start with https:// (or http:// for a local dev server)");
		rc = SFS_EINVAL;
	}
	if (c->tls_conf) {
		kp = diag_keypath_new(keypath, "tls");
		if (backend_tls_parse(c->tls_conf, kp ? kp : keypath, d, &c->tls) < 0)
			rc = SFS_EINVAL;
		free(kp);
	}
	if (c->auth) {
		kp = diag_keypath_new(keypath, "auth");
		if (vault_auth_check(c->auth, kp ? kp : keypath, d) < 0)
			rc = SFS_EINVAL;
		else if (vault_auth_needs_client_cert(c->auth) && !c->tls.client_cert &&
		         !vault_env("CLIENT_CERT")) {
			diag_add(
			    d, kp ? kp : keypath,
			    "auth method cert logs in with the TLS client certificate: "
			    "set tls.client_cert and tls.client_key (or "
			    "VAULT_CLIENT_CERT and VAULT_CLIENT_KEY)");
			rc = SFS_EINVAL;
		}
		free(kp);
	}
	return rc;
}

static int vault_check(const json_t *conf, const char *keypath, struct diag *d)
{
	struct vault_conf c;

	return vault_conf_parse(conf, keypath, d, &c);
}

static int vault_check_secret(const json_t *extra, const char *keypath, struct diag *d)
{
	const json_t *ver = json_object_get(extra, "version");
	const json_t *method = json_object_get(extra, "method");
	const json_t *params = json_object_get(extra, "params");
	const json_t *ror = json_object_get(extra, "revoke_on_replace");
	int rc = 0;

	if (ver && (!json_is_integer(ver) || json_integer_value(ver) < 1)) {
		diag_add_at(d, keypath, "version", "must be a positive integer");
		rc = SFS_EINVAL;
	}
	if (method && (!json_is_string(method) ||
	               (strcmp(json_string_value(method), "GET") != 0 &&
	                strcmp(json_string_value(method), "POST") != 0 &&
	                strcmp(json_string_value(method), "PUT") != 0))) {
		diag_add_at(d, keypath, "method", "must be \"GET\", \"POST\" or \"PUT\"");
		rc = SFS_EINVAL;
	}
	if (params && !json_is_object(params)) {
		diag_add_at(d, keypath, "params", "must be an object");
		rc = SFS_EINVAL;
	}
	if (params && (!method || strcmp(json_string_value(method), "GET") == 0)) {
		diag_add_at(d, keypath, "params",
		            "needs \"method\": \"POST\" or \"PUT\"");
		rc = SFS_EINVAL;
	}
	if (ror && !json_is_boolean(ror)) {
		diag_add_at(d, keypath, "revoke_on_replace", "must be true or false");
		rc = SFS_EINVAL;
	} else if (json_is_true(ror) && (!json_is_string(method) ||
	                                 strcmp(json_string_value(method), "GET") == 0)) {
		diag_add_at(d, keypath, "revoke_on_replace",
		            "applies to certificates issued by a write (\"method\": "
		            "\"POST\" to <mount>/issue/<role>)");
		rc = SFS_EINVAL;
	}
	if (ver && method && json_is_string(method) &&
	    strcmp(json_string_value(method), "GET") != 0) {
		diag_add_at(d, keypath, "version",
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

static void vault_free(struct backend *be)
{
	struct vault *v = (struct vault *)be;

	if (!v)
		return;
	if (v->auth && v->auth->stop)
		v->auth->stop(v);
	vault_client_release(&v->client);
	vault_token_release(&v->token);
	credcache_slot_release(&v->stash);
	json_decref(v->auth_conf);
	vault_kv_release(&v->kv);
	free(v->base.name);
	free(v);
}

static int vault_create(const struct backend_env *env, const char *name,
                        const json_t *conf, struct backend **out)
{
	struct vault_conf c;
	struct vault *v;
	int rc = SFS_ENOMEM;

	if (vault_conf_parse(conf, name, NULL, &c) < 0)
		return SFS_EINVAL;
	v = calloc(1, sizeof *v);
	if (!v)
		return SFS_ENOMEM;
	v->base.ops = &backend_vault_ops;
	v->base.revoke_grace_ms = c.revoke_grace_ms;
	v->base.revoke_on_shutdown = c.revoke_on_shutdown;
	v->base.name = strdup(name);
	vault_kv_init(&v->kv, env->stats, name);
	if (!v->base.name || vault_token_init(&v->token, env->store, name) < 0 ||
	    credcache_slot_init(&v->stash, env->store, "\x01vault/%s/stash", name) < 0)
		goto out;
	v->auth_conf = json_incref((json_t *)c.auth);
	v->auth =
	    vault_auth_find(json_string_value(json_object_get(v->auth_conf, "method")));
	if (v->auth->start && (rc = v->auth->start(v, v->auth_conf, env)) < 0)
		goto out;
	rc = vault_client_init(&v->client, name, &c);
	if (rc < 0)
		goto out;
	*out = &v->base;
	v = NULL;
out:
	vault_free(v ? &v->base : NULL);
	return rc;
}

static const char *const vault_secret_keys[] = {"version", "method", "params",
                                                "revoke_on_replace", NULL};

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
    .revoke_issued = vault_revoke_issued,
    .maintain = vault_maintain,
    .lease_deadline = vault_lease_deadline,
    .concurrent = true,
};
