/*
 * The Vault backend's HTTP client: every request carries X-Vault-Request,
 * X-Vault-Namespace when one is set and X-Vault-Token when it is made with
 * a token; a failure is mapped from the status, and Vault's
 * {"errors": [...]} are added to the message. Retries of idempotent
 * requests are http.c's (max_retries). The settings come from the config
 * or, key by key, the BAO_/VAULT_ variables the Vault CLI reads.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "secretfs/error.h"
#include "secretfs/log.h"
#include "secretfs/secjson.h"
#include "secretfs/secmem.h"
#include "vault_backend.h"

#define VAULT_MAX_CLIENTS 16 /* concurrent requests per backend */

/* The name of BAO_<suffix> (i 0) or VAULT_<suffix> (i 1) into buf; the
 * suffixes are this program's short literals ("ADDR", "TOKEN"). */
static const char *env_name(int i, const char *suffix, char *buf, size_t len)
{
	snprintf(buf, len, "%s_%s", i == 0 ? "BAO" : "VAULT", suffix);
	return buf;
}

const char *vault_env(const char *suffix)
{
	char name[64];
	const char *e;

	for (int i = 0; i < 2; i++) {
		e = getenv(env_name(i, suffix, name, sizeof name));
		if (e && *e)
			return e;
	}
	return NULL;
}

void vault_env_wipe(const char *suffix)
{
	char name[64];

	for (int i = 0; i < 2; i++) {
		char *e = getenv(env_name(i, suffix, name, sizeof name));
		if (e) {
			sodium_memzero(e, strlen(e));
			unsetenv(name);
		}
	}
}

/* A config string s, else BAO_<suffix> or VAULT_<suffix>. */
static const char *conf_or_env(const char *s, const char *suffix)
{
	return s ? s : vault_env(suffix);
}

const char *vault_client_skip_verify_asked(void)
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

/* Proxies meant for Vault alone, before the standard variables (as the
 * Vault CLI reads them: for every request, whatever NO_PROXY says;
 * *_PROXY_ADDR supersedes *_HTTP_PROXY, and BAO_ comes first as for the
 * other variables). */
static const char *const vault_proxy_env[] = {"BAO_PROXY_ADDR", "VAULT_PROXY_ADDR",
                                              "BAO_HTTP_PROXY", "VAULT_HTTP_PROXY", NULL};

int vault_client_init(struct vault_client *c, const char *name,
                      const struct vault_conf *conf)
{
	const struct backend_tls *tls = &conf->tls;
	const char *addr = conf_or_env(conf->address, "ADDR");
	const char *ns = conf_or_env(conf->namespace, "NAMESPACE");
	struct http_options hopt = {0};
	struct backend_error err = {0};
	int rc;

	c->address = addr ? strdup(addr) : NULL;
	c->namespace = ns ? strdup(ns) : NULL;
	if (!c->address || (ns && !c->namespace))
		return SFS_ENOMEM;
	while (strlen(c->address) > 8 && c->address[strlen(c->address) - 1] == '/')
		c->address[strlen(c->address) - 1] = '\0';
	hopt.ca_file = conf_or_env(tls->ca_file, "CACERT");
	hopt.ca_dir = conf_or_env(tls->ca_dir, "CAPATH");
	hopt.client_cert = conf_or_env(tls->client_cert, "CLIENT_CERT");
	hopt.client_key = conf_or_env(tls->client_key, "CLIENT_KEY");
	hopt.server_name = conf_or_env(tls->server_name, "TLS_SERVER_NAME");
	rc = backend_proxy_init(&c->proxy, conf->proxy, conf->proxy_from_environment,
	                        c->address, vault_proxy_env);
	if (rc < 0)
		return rc;
	hopt.proxy = c->proxy.url;
	hopt.noproxy = c->proxy.noproxy;
	backend_proxy_log(&c->proxy, name);
	hopt.timeout_ms = conf->timeout_ms;
	hopt.max_retries = 2;
	/* One client now, to check the TLS files at start-up; more on demand. */
	rc = http_pool_init(&c->pool, &hopt, VAULT_MAX_CLIENTS, &err);
	if (rc < 0)
		log_error("backend %s: %s", name, err.msg);
	return rc;
}

void vault_client_release(struct vault_client *c)
{
	http_pool_destroy(&c->pool);
	backend_proxy_release(&c->proxy);
	free(c->address);
	free(c->namespace);
}

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
	char *escaped = NULL, *url = NULL, *text = NULL, *tok = NULL;
	struct backend_error why = {0};
	size_t nh = 0;
	json_error_t jerr;
	json_t *reply = NULL;
	int rc;

	*out = NULL;
	headers[nh++] = (struct http_header){"X-Vault-Request", "true", false};
	if (v->client.namespace)
		headers[nh++] =
		    (struct http_header){"X-Vault-Namespace", v->client.namespace, false};
	if (with_token) {
		if (!token) {
			rc = vault_token_get(v, &tok);
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
	if (!escaped || asprintf(&url, "%s/v1/%s%s%s", v->client.address, escaped,
	                         query ? "?" : "", query ? query : "") < 0) {
		url = NULL;
		rc = SFS_ENOMEM;
		goto out;
	}
	req.url = url;
	client = http_pool_acquire(&v->client.pool, &why);
	if (!client) {
		backend_error_set(err, "%s", why.msg);
		rc = SFS_ETRANSIENT;
		goto out;
	}
	rc = http_do(client, &req, &resp, &why);
	http_pool_release(&v->client.pool, client);
	if (rc < 0) {
		backend_error_set(err, "%s %s: %s", method, path, why.msg);
		goto out;
	}
	err->retry_after_ms = resp.retry_after_ms;
	if (resp.body.len > 0) {
		reply = json_loadb((const char *)resp.body.data, resp.body.len,
		                   JSON_ALLOW_NUL, &jerr);
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
	backend_error_set(err, "%s %s: HTTP %ld", method, path, resp.status);
	vault_errors(reply, err->msg, sizeof err->msg);
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
