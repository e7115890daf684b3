/*
 * Vault auth method "aws", IAM type: the login carries an STS
 * GetCallerIdentity request signed with SigV4 by the AWS credential chain
 * (the same chain as the "aws" backend: environment, web identity, shared
 * files, container, IMDSv2), base64-encoded in iam_http_request_method,
 * iam_request_url, iam_request_body and iam_request_headers. Vault sends the
 * request to STS itself and binds the identity STS answers to the role.
 * With header_value, the X-Vault-AWS-IAM-Server-ID header is added and
 * signed, so the signed request is good for this Vault only.
 *
 * The credentials come from an "aws" backend made for this login only
 * (backend_aws_ops.create), which keeps them sealed and refreshes
 * temporary ones before they expire. The signed request holds the session
 * token and is wiped with the login body.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "aws.h"
#include "aws_sigv4.h"
#include "secretfs/error.h"
#include "secretfs/secjson.h"
#include "secretfs/secmem.h"
#include "vault.h"

/* Registered in vault_auth.c. */
extern const struct vault_auth_ops vault_auth_aws;
extern const struct backend_ops backend_aws_ops;

#define AWS_AUTH_BODY "Action=GetCallerIdentity&Version=2011-06-15"
#define AWS_AUTH_SERVER_ID "X-Vault-AWS-IAM-Server-ID"
#define AWS_AUTH_MAX_URL 512

static const char *const aws_keys[] = {
    "type", "role", "region", "header_value", "profile", "sts_endpoint", NULL};

static int aws_auth_check(const json_t *auth, const char *keypath, struct diag *d)
{
	const char *type = json_string_value(json_object_get(auth, "type"));
	const char *url = json_string_value(json_object_get(auth, "sts_endpoint"));
	int rc = 0;

	for (size_t i = 0; aws_keys[i]; i++)
		if (backend_check_string(auth, aws_keys[i], false, keypath, d) < 0)
			rc = SFS_EINVAL;
	if (type && strcmp(type, "iam") != 0) {
		diag_add_at(d, keypath, "type",
		            "only \"iam\" is supported (the ec2 type proves an instance "
		            "identity document, which a pod does not have)");
		rc = SFS_EINVAL;
	}
	if (url &&
	    ((strncmp(url, "https://", 8) != 0 && strncmp(url, "http://", 7) != 0) ||
	     strlen(url) > AWS_AUTH_MAX_URL)) {
		diag_add_at(d, keypath, "sts_endpoint",
		            "must be an http(s):// URL of at most %d bytes",
		            AWS_AUTH_MAX_URL);
		rc = SFS_EINVAL;
	}
	return rc;
}

/* The region the request is signed for: the config's, else AWS_REGION or
 * AWS_DEFAULT_REGION, else us-east-1 (Vault Agent's default). */
static const char *auth_region(const json_t *conf)
{
	const char *r = json_string_value(json_object_get(conf, "region"));

	if (!r || !*r)
		r = getenv("AWS_REGION");
	if (!r || !*r)
		r = getenv("AWS_DEFAULT_REGION");
	return r && *r ? r : "us-east-1";
}

static int aws_auth_start(struct vault *v, const json_t *conf,
                          const struct backend_env *env)
{
	const char *profile = json_string_value(json_object_get(conf, "profile"));
	const char *sts = json_string_value(json_object_get(conf, "sts_endpoint"));
	json_t *bconf =
	    json_pack("{s:s, s:s}", "type", "aws", "region", auth_region(conf));
	struct backend *be = NULL;
	char name[128];
	int rc;

	if (!bconf ||
	    (profile &&
	     json_object_set_new(bconf, "profile", json_string(profile)) < 0) ||
	    (sts && json_object_set_new(bconf, "sts_endpoint", json_string(sts)) < 0)) {
		json_decref(bconf);
		return SFS_ENOMEM;
	}
	snprintf(name, sizeof name, "%s (aws auth)", vault_name(v));
	rc = backend_aws_ops.create(env, name, bconf, &be);
	json_decref(bconf);
	if (rc == 0)
		vault_set_auth_state(v, be);
	return rc;
}

static void aws_auth_stop(struct vault *v)
{
	struct backend *be = vault_auth_state(v);

	if (be)
		backend_aws_ops.free(be);
	vault_set_auth_state(v, NULL);
}

/* The STS URL that is signed (and that Vault is told): the config's, else
 * the global endpoint for us-east-1 and the regional one elsewhere. */
static int sts_url(const json_t *conf, const char *region, char *out, size_t len)
{
	const char *url = json_string_value(json_object_get(conf, "sts_endpoint"));
	int n;

	if (url)
		n = snprintf(out, len, "%s", url);
	else if (strcmp(region, "us-east-1") == 0)
		n = snprintf(out, len, "https://sts.amazonaws.com/");
	else
		n = snprintf(out, len, "https://sts.%s.amazonaws.com%s/", region,
		             strncmp(region, "cn-", 3) == 0 ? ".cn" : "");
	return n > 0 && (size_t)n < len ? 0 : SFS_ETOOBIG;
}

/* base64 of len bytes of s, in guarded memory (free with secmem_free). */
static char *b64(const void *s, size_t len)
{
	size_t cap = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_ORIGINAL);
	char *out = secmem_alloc(cap);

	if (out)
		sodium_bin2base64(out, cap, s, len, sodium_base64_VARIANT_ORIGINAL);
	return out;
}

/* The signed request's headers as Go's http.Header in JSON ({"Name":
 * ["value"]}), base64-encoded, into *out (guarded). */
static int headers_b64(const struct http_header *h, size_t n, char **out)
{
	json_t *obj = json_object();
	char *text = NULL;
	int rc = SFS_ENOMEM;

	for (size_t i = 0; obj && i < n; i++)
		if (json_object_set_new(obj, h[i].name, json_pack("[s]", h[i].value)) < 0)
			goto out;
	text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
	if (text && (*out = b64(text, strlen(text))) != NULL)
		rc = 0;
out:
	secjson_free_buf(text);
	json_decref(obj);
	return rc;
}

static int aws_auth_login(struct vault *v, const json_t *conf, struct vault_login *out,
                          struct backend_error *err)
{
	struct backend *be = vault_auth_state(v);
	const char *region = aws_backend_region(be);
	const char *role = json_string_value(json_object_get(conf, "role"));
	const char *server_id = json_string_value(json_object_get(conf, "header_value"));
	char url[AWS_AUTH_MAX_URL + 1], host[AWS_AUTH_MAX_URL + 1],
	    path[AWS_AUTH_MAX_URL + 1];
	char date[AWS_SIGV4_DATE_SIZE], auth[512];
	struct http_header h[6] = {
	    {"Host", host, false},
	    {"Content-Type", "application/x-www-form-urlencoded; charset=utf-8", false},
	    {"X-Amz-Date", date, false},
	};
	struct aws_creds c = {0};
	struct aws_sigv4_request sr = {
	    .method = "POST", .path = path, .headers = h, .body = AWS_AUTH_BODY};
	char *b_url = NULL, *b_body = NULL, *b_headers = NULL;
	json_t *body = NULL;
	const char *authority, *slash;
	size_t nh = 3;
	int rc;

	sr.body_len = strlen(AWS_AUTH_BODY);
	rc = sts_url(conf, region, url, sizeof url);
	if (rc < 0)
		return rc;
	authority = strstr(url, "://") + 3;
	slash = authority + strcspn(authority, "/?#");
	snprintf(host, sizeof host, "%.*s", (int)(slash - authority), authority);
	snprintf(path, sizeof path, "%s", *slash == '/' ? slash : "/");
	rc = aws_backend_creds(be, &c, err);
	if (rc < 0)
		return rc;
	if ((rc = aws_sigv4_amz_date(time(NULL), date)) < 0)
		goto out;
	if (c.session_token)
		h[nh++] =
		    (struct http_header){"X-Amz-Security-Token", c.session_token, true};
	if (server_id)
		h[nh++] = (struct http_header){AWS_AUTH_SERVER_ID, server_id, false};
	sr.nheaders = nh;
	rc = aws_sigv4_authorization(&(struct aws_sigv4_credentials){c.access_key_id,
	                                                             c.secret_access_key,
	                                                             c.session_token},
	                             region, "sts", &sr, auth, sizeof auth);
	if (rc < 0) {
		backend_error_set(err, "cannot sign the GetCallerIdentity request: %s",
		                  sfs_strerror(rc));
		goto out;
	}
	h[nh++] = (struct http_header){"Authorization", auth, true};
	rc = SFS_ENOMEM;
	b_url = b64(url, strlen(url));
	b_body = b64(AWS_AUTH_BODY, strlen(AWS_AUTH_BODY));
	if (!b_url || !b_body || headers_b64(h, nh, &b_headers) < 0)
		goto out;
	body = json_pack("{s:s, s:s, s:s, s:s}", "iam_http_request_method", "POST",
	                 "iam_request_url", b_url, "iam_request_body", b_body,
	                 "iam_request_headers", b_headers);
	if (!body || (role && json_object_set_new(body, "role", json_string(role)) < 0))
		goto out;
	rc = vault_login_at(v, conf, &vault_auth_aws, body, out, err);
out:
	json_decref(body);
	secmem_free(b_url);
	secmem_free(b_body);
	secmem_free(b_headers);
	sodium_memzero(auth, sizeof auth);
	aws_creds_release(&c);
	return rc;
}

const struct vault_auth_ops vault_auth_aws = {
    .method = "aws",
    .default_mount = "aws",
    .keys = aws_keys,
    .check = aws_auth_check,
    .login = aws_auth_login,
    .start = aws_auth_start,
    .stop = aws_auth_stop,
    .can_relogin = true,
};
