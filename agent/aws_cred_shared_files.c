/*
 * Credentials from the shared files: aws_access_key_id,
 * aws_secret_access_key and aws_session_token of the profile, the
 * credentials file first, then the config file. Read again at every
 * refresh, so a rewritten file (e.g. by a login helper) is picked up.
 */
#include "aws.h"
#include "secretfs/error.h"
#include "secretfs/secmem.h"

static bool files_configured(const struct aws_env *env)
{
	return env->profile.has_keys;
}

/* A key from the credentials file, else the config file. */
static int profile_secret(const struct aws_profile *p, const char *key, char **out)
{
	int rc = aws_ini_get(p->credentials_file, p->name, false, key, out);

	if (rc == SFS_ENOTFOUND)
		rc = aws_ini_get(p->config_file, p->name, true, key, out);
	return rc;
}

static int files_fetch(const struct aws_env *env, struct http_client *client,
                       struct aws_creds *out, struct backend_error *err)
{
	const struct aws_profile *p = &env->profile;
	char *akid = NULL, *secret = NULL, *token = NULL;
	int rc;

	(void)client;
	rc = profile_secret(p, "aws_access_key_id", &akid);
	if (rc == 0)
		rc = profile_secret(p, "aws_secret_access_key", &secret);
	if (rc == 0) {
		profile_secret(p, "aws_session_token", &token);
		rc = aws_creds_set(out, akid, secret, token, 0);
	}
	if (rc < 0)
		backend_error_set(err, "profile %s (%s, %s): %s", p->name,
		                  p->credentials_file ? p->credentials_file : "-",
		                  p->config_file ? p->config_file : "-",
		                  rc == SFS_ENOTFOUND ? "aws_access_key_id or "
		                                        "aws_secret_access_key missing"
		                  : rc == SFS_EINVAL  ? "a key is empty or malformed"
		                                      : sfs_strerror(rc));
	secmem_free(akid);
	secmem_free(secret);
	secmem_free(token);
	return rc;
}

const struct aws_cred_source aws_cred_shared_files = {
    .name = "shared files",
    .configured = files_configured,
    .fetch = files_fetch,
};
