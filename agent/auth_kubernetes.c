/*
 * Vault auth method "kubernetes": the pod's service-account token (jwt_file,
 * default /var/run/secrets/kubernetes.io/serviceaccount/token) and a role.
 * The token file is read again at every login: kubelet rotates it.
 */
#include "secretfs/error.h"
#include "vault.h"

/* Registered in vault_auth.c. */
extern const struct vault_auth_ops vault_auth_kubernetes;

static const char *const kubernetes_keys[] = {"role", "jwt_file", NULL};

static int kubernetes_check(const json_t *auth, const char *keypath, struct diag *d)
{
	int rc = backend_check_string(auth, "role", true, keypath, d);

	if (backend_check_string(auth, "jwt_file", false, keypath, d) < 0)
		rc = SFS_EINVAL;
	return rc;
}

static int kubernetes_login(struct vault *v, const json_t *conf, struct vault_login *out,
                            struct backend_error *err)
{
	return vault_login_role_jwt(v, conf, &vault_auth_kubernetes,
	                            "/var/run/secrets/kubernetes.io/serviceaccount/token",
	                            out, err);
}

const struct vault_auth_ops vault_auth_kubernetes = {
    .method = "kubernetes",
    .default_mount = "kubernetes",
    .keys = kubernetes_keys,
    .check = kubernetes_check,
    .login = kubernetes_login,
    .can_relogin = true,
};
