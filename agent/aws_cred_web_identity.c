/*
 * Web identity (EKS IRSA, or any OIDC token): AWS_ROLE_ARN and
 * AWS_WEB_IDENTITY_TOKEN_FILE (or the profile's role_arn and
 * web_identity_token_file) exchanged at STS with AssumeRoleWithWebIdentity.
 * The request is unsigned; the token file is read again at every refresh
 * (the kubelet rotates it). STS is the regional endpoint unless the config's
 * sts_endpoint or AWS_ENDPOINT_URL_STS says otherwise.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "aws.h"
#include "secretfs/error.h"
#include "secretfs/log.h"
#include "secretfs/secmem.h"

static const char *role_arn(const struct aws_env *env)
{
	const char *e = getenv("AWS_ROLE_ARN");

	return e && *e ? e : env->profile.role_arn;
}

static const char *token_file(const struct aws_env *env)
{
	const char *e = getenv("AWS_WEB_IDENTITY_TOKEN_FILE");

	return e && *e ? e : env->profile.web_identity_token_file;
}

static bool webid_configured(const struct aws_env *env)
{
	return role_arn(env) && token_file(env);
}

/* Appends name=escaped(value)& to the form in buf (room checked by the
 * caller's sizing). */
static char *form_put(char *p, const char *name, const char *value, bool last)
{
	size_t n = strlen(name);

	memcpy(p, name, n);
	p += n;
	*p++ = '=';
	p += http_escape_to(p, value, false);
	if (!last)
		*p++ = '&';
	*p = '\0';
	return p;
}

/* Reports STS's <Code> and <Message>. */
static void sts_error(const struct http_response *resp, struct backend_error *err)
{
	char *code = NULL, *msg = NULL;
	const char *body = (const char *)resp->body.data;

	aws_xml_text(body, resp->body.len, "Code", &code);
	aws_xml_text(body, resp->body.len, "Message", &msg);
	backend_error_set(err, "STS AssumeRoleWithWebIdentity: HTTP %ld %s: %.160s",
	                  resp->status, code ? code : "", msg ? msg : "");
	secmem_free(code);
	secmem_free(msg);
}

static int webid_fetch(const struct aws_env *env, struct http_client *client,
                       struct aws_creds *out, struct backend_error *err)
{
	static const char *const fields[] = {"AccessKeyId", "SecretAccessKey",
	                                     "SessionToken", "Expiration"};
	const char *arn = role_arn(env), *file = token_file(env);
	const char *session = getenv("AWS_ROLE_SESSION_NAME");
	struct http_header hdr = {"Content-Type", "application/x-www-form-urlencoded",
	                          false};
	struct http_request req = {.method = "POST", .headers = &hdr, .nheaders = 1};
	struct http_response resp = {0};
	char *jwt = NULL, *form = NULL, *url = NULL, *vals[4] = {0};
	char gen_session[64];
	struct backend_error why = {0};
	size_t fcap = 0;
	time_t expiration = 0;
	int rc;

	if (!session || !*session)
		session = env->profile.role_session_name;
	if (!session) {
		snprintf(gen_session, sizeof gen_session, "secretfs-%lld",
		         (long long)time(NULL));
		session = gen_session;
	}
	rc = backend_read_secret_file(file, &jwt);
	if (rc < 0) {
		backend_error_set(err, "web identity token file %s: %s", file,
		                  sfs_strerror(rc));
		return rc == SFS_ENOTFOUND ? SFS_ETRANSIENT : rc;
	}
	fcap = 200 + 3 * (strlen(arn) + strlen(session) + strlen(jwt));
	form = secmem_alloc(fcap);
	if (env->sts_endpoint)
		rc = asprintf(&url, "%s/", env->sts_endpoint);
	else if (env->region)
		rc = asprintf(&url, "https://sts.%s.amazonaws.com%s/", env->region,
		              strncmp(env->region, "cn-", 3) == 0 ? ".cn" : "");
	else
		rc = asprintf(&url, "https://sts.amazonaws.com/");
	if (rc < 0)
		url = NULL;
	if (!form || !url) {
		rc = SFS_ENOMEM;
		goto out;
	}
	{
		char *p = form_put(form, "Action", "AssumeRoleWithWebIdentity", false);
		p = form_put(p, "Version", "2011-06-15", false);
		p = form_put(p, "RoleArn", arn, false);
		p = form_put(p, "RoleSessionName", session, false);
		p = form_put(p, "WebIdentityToken", jwt, true);
		req.body = form;
		req.body_len = (size_t)(p - form);
	}
	req.url = url;
	req.idempotent = true;
	rc = http_do(client, &req, &resp, &why);
	if (rc < 0) {
		backend_error_set(err, "STS AssumeRoleWithWebIdentity: %s", why.msg);
		rc = SFS_ETRANSIENT;
		goto out;
	}
	err->retry_after_ms = resp.retry_after_ms;
	if (resp.status != 200) {
		sts_error(&resp, err);
		rc = resp.status >= 500 || resp.status == 429 ? SFS_ETRANSIENT
		                                              : SFS_EDENIED;
		goto out;
	}
	for (size_t i = 0; i < 4 && rc == 0; i++)
		rc = aws_xml_text((const char *)resp.body.data, resp.body.len, fields[i],
		                  &vals[i]);
	if (rc == 0 && aws_parse_time(vals[3], &expiration) < 0)
		rc = SFS_EPARSE;
	if (rc == 0)
		rc = aws_creds_set(out, vals[0], vals[1], vals[2], expiration);
	if (rc < 0) {
		backend_error_set(err, "STS AssumeRoleWithWebIdentity: the answer lacks "
		                       "Credentials (AccessKeyId, SecretAccessKey, "
		                       "SessionToken, Expiration)");
		rc = SFS_EPARSE;
	}
out:
	for (size_t i = 0; i < 4; i++)
		secmem_free(vals[i]);
	secmem_free(jwt);
	secmem_free(form);
	http_response_release(&resp);
	free(url);
	return rc;
}

const struct aws_cred_source aws_cred_web_identity = {
    .name = "web identity",
    .configured = webid_configured,
    .fetch = webid_fetch,
};
