/*
 * Vault auth method "cert": TLS certificate auth. The login proves the
 * client certificate the backend presents on every connection (the
 * backend's tls.client_cert and tls.client_key, or VAULT_CLIENT_CERT and
 * VAULT_CLIENT_KEY); the body only names the certificate role to try
 * ("name"), else Vault tries every role whose CA verifies it.
 */
#include "secretfs/error.h"
#include "vault.h"

/* Registered in vault_auth.c. */
extern const struct vault_auth_ops vault_auth_cert;

static const char *const cert_keys[] = {"name", NULL};

static int cert_check(const json_t *auth, const char *keypath, struct diag *d)
{
	return backend_check_string(auth, "name", false, keypath, d);
}

static int cert_login(struct vault *v, const json_t *conf, struct vault_login *out,
                      struct backend_error *err)
{
	const char *name = json_string_value(json_object_get(conf, "name"));
	json_t *body = name ? json_pack("{s:s}", "name", name) : json_object();
	int rc;

	if (!body)
		return SFS_ENOMEM;
	rc = vault_login_at(v, conf, &vault_auth_cert, body, out, err);
	json_decref(body);
	return rc;
}

const struct vault_auth_ops vault_auth_cert = {
    .method = "cert",
    .default_mount = "cert",
    .keys = cert_keys,
    .check = cert_check,
    .login = cert_login,
    .can_relogin = true,
    .needs_client_cert = true,
};
