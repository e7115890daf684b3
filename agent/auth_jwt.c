/*
 * Vault auth method "jwt": a JWT from jwt_file (read again at every login,
 * as issuers rotate them) and a role.
 */
#include "secretfs/error.h"
#include "vault.h"

/* Registered in vault_auth.c. */
extern const struct vault_auth_ops vault_auth_jwt;

static const char *const jwt_keys[] = {"role", "jwt_file", NULL};

static int jwt_check(const json_t *auth, const char *keypath, struct diag *d)
{
	int rc = backend_check_string(auth, "role", true, keypath, d);

	if (backend_check_string(auth, "jwt_file", true, keypath, d) < 0)
		rc = SFS_EINVAL;
	return rc;
}

static int jwt_login(struct vault *v, const json_t *conf, struct vault_login *out,
                     struct backend_error *err)
{
	return vault_login_role_jwt(v, conf, &vault_auth_jwt, NULL, out, err);
}

const struct vault_auth_ops vault_auth_jwt = {
    .method = "jwt",
    .default_mount = "jwt",
    .keys = jwt_keys,
    .check = jwt_check,
    .login = jwt_login,
    .can_relogin = true,
};
