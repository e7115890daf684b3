/*
 * Container credentials (ECS task roles, EKS Pod Identity):
 * AWS_CONTAINER_CREDENTIALS_RELATIVE_URI (on 169.254.170.2) or
 * AWS_CONTAINER_CREDENTIALS_FULL_URI, with the Authorization header from
 * AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE (read again at every refresh: EKS
 * rotates it) or AWS_CONTAINER_AUTHORIZATION_TOKEN. As in the SDKs, a full
 * URI over plain HTTP must name a loopback address or the ECS/EKS agent's
 * link-local address, so credentials are never sent to another host in
 * the clear.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aws.h"
#include "secretfs/error.h"
#include "secretfs/secmem.h"

#define ECS_HOST "http://169.254.170.2"

static bool container_configured(const struct aws_env *env)
{
	const char *rel = getenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
	const char *full = getenv("AWS_CONTAINER_CREDENTIALS_FULL_URI");

	(void)env;
	return (rel && *rel) || (full && *full);
}

/* The host part of an http:// URL is one the SDKs accept in the clear. */
static bool allowed_http_host(const char *url)
{
	static const char *const hosts[] = {
	    "169.254.170.2", "169.254.170.23", "[fd00:ec2::23]",
	    "localhost",     "[::1]",          NULL,
	};
	const char *host = url + strlen("http://");
	size_t n;

	/* "http://127.0.0.1:80@evil.example/" goes to evil.example. */
	if (memchr(host, '@', strcspn(host, "/?#")))
		return false;

	if (host[0] == '[') {
		const char *close = strchr(host, ']');
		n = close ? (size_t)(close - host) + 1 : 0;
	} else {
		n = strcspn(host, ":/?#");
	}
	for (size_t i = 0; hosts[i]; i++)
		if (strlen(hosts[i]) == n && strncmp(host, hosts[i], n) == 0)
			return true;
	/* 127.0.0.0/8 */
	return n > 4 && strncmp(host, "127.", 4) == 0 && strspn(host, "0123456789.") >= n;
}

static int container_url(char **url, struct backend_error *err)
{
	const char *rel = getenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
	const char *full = getenv("AWS_CONTAINER_CREDENTIALS_FULL_URI");

	if (rel && *rel)
		return asprintf(url, "%s%s%s", ECS_HOST, rel[0] == '/' ? "" : "/", rel) <
		               0
		           ? SFS_ENOMEM
		           : 0;
	if (strncmp(full, "https://", 8) != 0 &&
	    (strncmp(full, "http://", 7) != 0 || !allowed_http_host(full))) {
		backend_error_set(
		    err, "AWS_CONTAINER_CREDENTIALS_FULL_URI must be https:// or "
		         "http:// on a loopback address, 169.254.170.2, "
		         "169.254.170.23 or fd00:ec2::23");
		return SFS_EINVAL;
	}
	*url = strdup(full);
	return *url ? 0 : SFS_ENOMEM;
}

/* The authorization token, or SFS_ENOTFOUND when none is configured.
 * Trailing white space is dropped (a value from a Kubernetes Secret often
 * ends in a newline); a line break inside would inject headers. */
static int container_token(const struct aws_env *env, char **out,
                           struct backend_error *err)
{
	const char *file = getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
	const char *what = file && *file ? "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"
	                                 : "AWS_CONTAINER_AUTHORIZATION_TOKEN";
	size_t n;
	int rc;

	if (file && *file) {
		rc = backend_read_secret_file(file, out);
		if (rc < 0) {
			backend_error_set(err, "%s %s: %s", what, file, sfs_strerror(rc));
			return rc == SFS_ENOMEM ? rc : SFS_ETRANSIENT;
		}
	} else {
		rc = envstash_get(env->secrets, "AWS_CONTAINER_AUTHORIZATION_TOKEN", out);
		if (rc < 0)
			return rc;
	}
	n = strlen(*out);
	while (n > 0 && strchr(" \t\r\n", (*out)[n - 1]))
		(*out)[--n] = '\0';
	if (n == 0 || strpbrk(*out, "\r\n")) {
		secmem_free(*out);
		*out = NULL;
		backend_error_set(err, "%s is empty or holds a line break", what);
		return SFS_EINVAL;
	}
	return 0;
}

static int container_fetch(const struct aws_env *env, struct http_client *client,
                           struct aws_creds *out, struct backend_error *err)
{
	struct http_header hdr = {"Authorization", NULL, true};
	struct http_request req = {.method = "GET", .headers = &hdr, .idempotent = true};
	struct http_response resp = {0};
	char *url = NULL, *token = NULL;
	struct backend_error why = {0};
	int rc;

	rc = container_url(&url, err);
	if (rc < 0)
		return rc;
	rc = container_token(env, &token, err);
	if (rc < 0 && rc != SFS_ENOTFOUND)
		goto out;
	hdr.value = token;
	req.nheaders = token ? 1 : 0;
	req.url = url;
	rc = http_do(client, &req, &resp, &why);
	if (rc < 0) {
		backend_error_set(err, "container credentials endpoint: %s", why.msg);
		rc = SFS_ETRANSIENT;
	} else if (resp.status != 200) {
		backend_error_set(err, "container credentials endpoint: HTTP %ld",
		                  resp.status);
		rc = resp.status >= 500 || resp.status == 429 ? SFS_ETRANSIENT
		                                              : SFS_EDENIED;
	} else {
		rc = aws_creds_from_json((const char *)resp.body.data, resp.body.len,
		                         "container credentials endpoint", out, err);
	}
out:
	http_response_release(&resp);
	secmem_free(token);
	free(url);
	return rc;
}

const struct aws_cred_source aws_cred_container = {
    .name = "container credentials",
    .configured = container_configured,
    .fetch = container_fetch,
    .metadata = true,
};
