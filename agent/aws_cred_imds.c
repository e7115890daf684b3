/*
 * EC2 instance metadata, IMDSv2 only: a session token from
 * PUT /latest/api/token, the role name from
 * /latest/meta-data/iam/security-credentials/, then that role's
 * credentials. Short timeouts (the metadata client), so a laptop without
 * IMDS fails fast. AWS_EC2_METADATA_SERVICE_ENDPOINT (or
 * AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6) moves it;
 * AWS_EC2_METADATA_DISABLED=true turns it off.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "aws.h"
#include "secretfs/error.h"
#include "secretfs/secmem.h"

#define IMDS_CREDS_PATH "/latest/meta-data/iam/security-credentials/"

static bool imds_configured(const struct aws_env *env)
{
	const char *off = getenv("AWS_EC2_METADATA_DISABLED");

	(void)env;
	return !off || strcasecmp(off, "true") != 0;
}

static const char *imds_endpoint(void)
{
	const char *e = getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT");
	const char *mode = getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE");

	if (e && *e)
		return e;
	return mode && strcasecmp(mode, "IPv6") == 0 ? "http://[fd00:ec2::254]"
	                                             : "http://169.254.169.254";
}

/* One IMDS call; the body is left in resp. */
static int imds_call(struct http_client *client, const char *method, const char *path,
                     const struct http_header *hdr, struct http_response *resp,
                     struct backend_error *err)
{
	const char *base = imds_endpoint();
	size_t blen = strlen(base);
	struct http_request req = {
	    .method = method, .headers = hdr, .nheaders = 1, .idempotent = true};
	char *url = NULL;
	struct backend_error why = {0};
	int rc;

	while (blen > 0 && base[blen - 1] == '/')
		blen--;
	if (asprintf(&url, "%.*s%s", (int)blen, base, path) < 0)
		return SFS_ENOMEM;
	req.url = url;
	http_response_release(resp);
	rc = http_do(client, &req, resp, &why);
	free(url);
	if (rc < 0) {
		backend_error_set(err, "IMDS %s %s: %s", method, path, why.msg);
		return SFS_ETRANSIENT;
	}
	if (resp->status != 200) {
		backend_error_set(err, "IMDS %s %s: HTTP %ld%s", method, path,
		                  resp->status,
		                  resp->status == 404 ? " (no instance role?)" : "");
		return resp->status >= 500 || resp->status == 429 ? SFS_ETRANSIENT
		                                                  : SFS_EDENIED;
	}
	return 0;
}

static int imds_fetch(const struct aws_env *env, struct http_client *client,
                      struct aws_creds *out, struct backend_error *err)
{
	struct http_header ttl = {"X-aws-ec2-metadata-token-ttl-seconds", "21600", false};
	struct http_header tok = {"X-aws-ec2-metadata-token", NULL, true};
	struct http_response resp = {0};
	char *token = NULL, role[256], path[320];
	size_t n;
	int rc;

	(void)env;
	rc = imds_call(client, "PUT", "/latest/api/token", &ttl, &resp, err);
	if (rc < 0)
		goto out;
	token = secmem_alloc(resp.body.len + 1);
	if (!token) {
		rc = SFS_ENOMEM;
		goto out;
	}
	memcpy(token, resp.body.data, resp.body.len);
	tok.value = token;
	rc = imds_call(client, "GET", IMDS_CREDS_PATH, &tok, &resp, err);
	if (rc < 0)
		goto out;
	/* The first line names the role. */
	for (n = 0;
	     n < resp.body.len && resp.body.data[n] != '\r' && resp.body.data[n] != '\n';
	     n++)
		;
	if (n >= sizeof role) {
		backend_error_set(err, "IMDS: instance role name longer than %zu bytes",
		                  sizeof role - 1);
		rc = SFS_EPARSE;
		goto out;
	}
	memcpy(role, resp.body.data, n);
	role[n] = '\0';
	if (!role[0] || strpbrk(role, "/?#% ")) {
		backend_error_set(err, "IMDS: no usable instance role name");
		rc = SFS_EDENIED;
		goto out;
	}
	snprintf(path, sizeof path, "%s%s", IMDS_CREDS_PATH, role);
	rc = imds_call(client, "GET", path, &tok, &resp, err);
	if (rc == 0)
		rc = aws_creds_from_json((const char *)resp.body.data, resp.body.len,
		                         "IMDS role credentials", out, err);
out:
	http_response_release(&resp);
	secmem_free(token);
	return rc;
}

const struct aws_cred_source aws_cred_imds = {
    .name = "IMDSv2",
    .configured = imds_configured,
    .fetch = imds_fetch,
    .metadata = true,
};
