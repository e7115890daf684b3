/*
 * Vault auth method "approle": role_id_file and secret_id_file. A secret
 * ID file may hold a response-wrapping token instead (secret_id_wrapped,
 * or detected by its token prefix); it is unwrapped once through
 * sys/wrapping/unwrap and the secret ID kept sealed for later logins,
 * since a wrapping token works only once.
 */
#include <string.h>

#include "secretfs/error.h"
#include "secretfs/secmem.h"
#include "vault.h"

/* Registered in vault_auth.c. */
extern const struct vault_auth_ops vault_auth_approle;

static const char *const approle_keys[] = {"role_id_file", "secret_id_file",
                                           "secret_id_wrapped", NULL};

static int approle_check(const json_t *auth, const char *keypath, struct diag *d)
{
	int rc = backend_check_string(auth, "role_id_file", true, keypath, d);
	const json_t *w = json_object_get(auth, "secret_id_wrapped");

	if (backend_check_string(auth, "secret_id_file", false, keypath, d) < 0)
		rc = SFS_EINVAL;
	if (w && !json_is_boolean(w)) {
		diag_add_at(d, keypath, "secret_id_wrapped", "must be true or false");
		rc = SFS_EINVAL;
	}
	return rc;
}

static bool looks_like_wrapping_token(const char *s)
{
	return strncmp(s, "hvs.", 4) == 0 || strncmp(s, "s.", 2) == 0 ||
	       strncmp(s, "hvb.", 4) == 0 || strncmp(s, "b.", 2) == 0;
}

/* Unwraps a wrapped secret ID and stashes it. */
static int approle_unwrap(struct vault *v, const char *wrapping_token,
                          struct backend_error *err)
{
	json_t *reply = NULL;
	const char *sid;
	int rc;

	rc = vault_call(v, "POST", "sys/wrapping/unwrap", NULL, NULL, true,
	                wrapping_token, &reply, err);
	if (rc < 0)
		goto out;
	sid = json_string_value(
	    json_object_get(json_object_get(reply, "data"), "secret_id"));
	if (!sid) {
		backend_error_set(err, "unwrapped response has no data.secret_id");
		rc = SFS_EPARSE;
		goto out;
	}
	rc = vault_stash(v, sid, strlen(sid));
out:
	json_decref(reply);
	return rc;
}

static int approle_login(struct vault *v, const json_t *conf, struct vault_login *out,
                         struct backend_error *err)
{
	const char *role_file = json_string_value(json_object_get(conf, "role_id_file"));
	const char *sid_file = json_string_value(json_object_get(conf, "secret_id_file"));
	const json_t *wrapped = json_object_get(conf, "secret_id_wrapped");
	char *role_id = NULL, *sid = NULL;
	json_t *body = NULL;
	int rc;

	rc = backend_read_secret_file(role_file, &role_id);
	if (rc < 0) {
		backend_error_set(err, "cannot read role_id_file %s: %s", role_file,
		                  sfs_strerror(rc));
		goto out;
	}
	if (sid_file && vault_unstash(v, &sid) < 0) {
		rc = backend_read_secret_file(sid_file, &sid);
		if (rc < 0) {
			backend_error_set(err, "cannot read secret_id_file %s: %s",
			                  sid_file, sfs_strerror(rc));
			goto out;
		}
		if (json_is_true(wrapped) ||
		    (!wrapped && looks_like_wrapping_token(sid))) {
			rc = approle_unwrap(v, sid, err);
			secmem_free(sid);
			sid = NULL;
			if (rc < 0)
				goto out;
			if ((rc = vault_unstash(v, &sid)) < 0)
				goto out;
		}
	}
	body = sid ? json_pack("{s:s, s:s}", "role_id", role_id, "secret_id", sid)
	           : json_pack("{s:s}", "role_id", role_id);
	if (!body) {
		rc = SFS_ENOMEM;
		goto out;
	}
	rc = vault_login_at(v, conf, &vault_auth_approle, body, out, err);
out:
	json_decref(body);
	secmem_free(role_id);
	secmem_free(sid);
	return rc;
}

const struct vault_auth_ops vault_auth_approle = {
    .method = "approle",
    .default_mount = "approle",
    .keys = approle_keys,
    .check = approle_check,
    .login = approle_login,
    .can_relogin = true,
};
