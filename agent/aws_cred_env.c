/*
 * Credentials from the environment: AWS_ACCESS_KEY_ID,
 * AWS_SECRET_ACCESS_KEY and optionally AWS_SESSION_TOKEN. The secret parts
 * were sealed away and wiped from the environment at start-up
 * (aws_env_stash). Skipped when the config names a profile, as the SDKs
 * skip them for an explicit profile.
 */
#include <stdlib.h>

#include "aws.h"
#include "secretfs/error.h"
#include "secretfs/secmem.h"

static bool env_configured(const struct aws_env *env)
{
	const char *akid = getenv("AWS_ACCESS_KEY_ID");
	char *secret = NULL;

	if (env->profile_explicit || !akid || !*akid)
		return false;
	if (envstash_get(env->secrets, "AWS_SECRET_ACCESS_KEY", &secret) < 0)
		return false;
	secmem_free(secret);
	return true;
}

static int env_fetch(const struct aws_env *env, struct http_client *client,
                     struct aws_creds *out, struct backend_error *err)
{
	char *secret = NULL, *token = NULL;
	int rc;

	(void)client;
	rc = envstash_get(env->secrets, "AWS_SECRET_ACCESS_KEY", &secret);
	if (rc == 0) {
		envstash_get(env->secrets, "AWS_SESSION_TOKEN", &token);
		rc = aws_creds_set(out, getenv("AWS_ACCESS_KEY_ID"), secret, token, 0);
	}
	if (rc < 0)
		backend_error_set(err, "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY: %s",
		                  rc == SFS_EINVAL ? "a value is empty or malformed"
		                                   : sfs_strerror(rc));
	secmem_free(secret);
	secmem_free(token);
	return rc;
}

const struct aws_cred_source aws_cred_environment = {
    .name = "environment",
    .configured = env_configured,
    .fetch = env_fetch,
};
