/*
 * Vault auth method "token": a token from token_file, else BAO_TOKEN or
 * VAULT_TOKEN, which start() seals away and wipes from the environment
 * when the backend is created.
 * "Logging in" reads it and validates it with auth/token/lookup-self, which
 * also tells its TTL and whether it can be renewed. It cannot be replaced
 * by logging in again: when it expires, the operator must provide another.
 */
#include <stdlib.h>
#include <string.h>

#include "secretfs/error.h"
#include "secretfs/secmem.h"
#include "vault.h"

/* Registered in vault_auth.c. */
extern const struct vault_auth_ops vault_auth_token;

static const char *const token_keys[] = {"token_file", NULL};

static int token_check(const json_t *auth, const char *keypath, struct diag *d)
{
	int rc = backend_check_string(auth, "token_file", false, keypath, d);

	if (!json_object_get(auth, "token_file") && !vault_env("TOKEN")) {
		diag_add(d, keypath,
		         "token auth needs \"token_file\" or VAULT_TOKEN (or BAO_TOKEN)");
		rc = SFS_EINVAL;
	}
	return rc;
}

/* A token from the environment is sealed away and wiped from it: the
 * environment stays readable in /proc/<pid>/environ and in memory. Both
 * variables are wiped, whichever was used. */
static int token_start(struct vault *v, const json_t *conf, const struct backend_env *env)
{
	(void)env;
	const char *tok;
	int rc;

	if (json_object_get(conf, "token_file"))
		return 0;
	tok = vault_env("TOKEN");
	rc = tok ? vault_stash(v, tok, strlen(tok)) : 0;
	vault_env_wipe("TOKEN");
	return rc;
}

static int token_login(struct vault *v, const json_t *conf, struct vault_login *out,
                       struct backend_error *err)
{
	const char *file = json_string_value(json_object_get(conf, "token_file"));
	json_t *reply = NULL;
	const json_t *data;
	int rc;

	memset(out, 0, sizeof *out);
	if (file) {
		rc = backend_read_secret_file(file, &out->token);
		if (rc < 0) {
			backend_error_set(err, "cannot read token_file %s: %s", file,
			                  sfs_strerror(rc));
			return rc;
		}
	} else if (vault_unstash(v, &out->token) < 0) {
		/* token_start sealed the token variable away. */
		backend_error_set(err, "VAULT_TOKEN (or BAO_TOKEN) is not set");
		return SFS_EDENIED;
	}
	rc = vault_call(v, "GET", "auth/token/lookup-self", NULL, NULL, true, out->token,
	                &reply, err);
	if (rc < 0)
		goto fail;
	data = json_object_get(reply, "data");
	out->ttl_ms = (uint64_t)json_integer_value(json_object_get(data, "ttl")) * 1000;
	out->renewable = json_is_true(json_object_get(data, "renewable"));
	json_decref(reply);
	return 0;
fail:
	json_decref(reply);
	secmem_free(out->token);
	memset(out, 0, sizeof *out);
	return rc;
}

const struct vault_auth_ops vault_auth_token = {
    .method = "token",
    .default_mount = "token",
    .keys = token_keys,
    .check = token_check,
    .login = token_login,
    .start = token_start,
    .can_relogin = false,
};
