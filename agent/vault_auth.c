/*
 * The Vault auth methods' registry and the helpers they share: the
 * method table (one line per auth_<method>.c), the check of a backend's
 * "auth" object against it, the login answer parser, the JWT-style login
 * and the sealed stash an auth method may keep material in.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "secretfs/error.h"
#include "secretfs/secmem.h"
#include "vault_backend.h"

/* The auth registry: one line per method, each defined in its
 * auth_<method>.c. Adding a method is one new file and one line here. */
extern const struct vault_auth_ops vault_auth_token, vault_auth_approle,
    vault_auth_kubernetes, vault_auth_jwt, vault_auth_cert, vault_auth_aws;

/* clang-format off */
static const struct vault_auth_ops *const auth_methods[] = {
    &vault_auth_token,
    &vault_auth_approle,
    &vault_auth_kubernetes,
    &vault_auth_jwt,
    &vault_auth_cert,
    &vault_auth_aws,
};
/* clang-format on */
#define NAUTH (sizeof auth_methods / sizeof auth_methods[0])

const struct vault_auth_ops *vault_auth_find(const char *method)
{
	for (size_t i = 0; i < NAUTH; i++)
		if (strcmp(auth_methods[i]->method, method) == 0)
			return auth_methods[i];
	return NULL;
}

/* The registered method names, comma-separated, in a malloc'd string
 * (free() it), or NULL when out of memory. */
static char *auth_names(void)
{
	size_t len = 1, used = 0;
	char *buf;

	for (size_t i = 0; i < NAUTH; i++)
		len += strlen(auth_methods[i]->method) + 2;
	buf = malloc(len);
	if (!buf)
		return NULL;
	for (size_t i = 0; i < NAUTH; i++) {
		size_t n = strlen(auth_methods[i]->method);
		if (i) {
			memcpy(buf + used, ", ", 2);
			used += 2;
		}
		memcpy(buf + used, auth_methods[i]->method, n);
		used += n;
	}
	buf[used] = '\0';
	return buf;
}

int vault_auth_check(const json_t *auth, const char *keypath, struct diag *d)
{
	const struct vault_auth_ops *ops;
	const char *method;
	const char *key;
	json_t *val;
	char *names;
	int rc = 0;

	if (!json_is_object(auth)) {
		diag_add(d, keypath, "must be an object");
		return SFS_EINVAL;
	}
	method = json_string_value(json_object_get(auth, "method"));
	ops = method ? vault_auth_find(method) : NULL;
	if (!ops) {
		names = auth_names();
		if (!method)
			diag_add(d, keypath,
			         "missing required key \"method\" (one of: %s)",
			         names ? names : "?");
		else
			diag_add_at(d, keypath, "method",
			            "unknown auth method \"%s\" (one of: %s)", method,
			            names ? names : "?");
		free(names);
		return SFS_EINVAL;
	}
	json_object_foreach((json_t *)auth, key, val)
	{
		size_t i;
		if (strcmp(key, "method") == 0 || strcmp(key, "mount") == 0)
			continue;
		for (i = 0; ops->keys[i] && strcmp(ops->keys[i], key) != 0; i++)
			;
		if (!ops->keys[i]) {
			diag_add_at(d, keypath, key,
			            "unknown key \"%s\" for auth method %s", key, method);
			rc = SFS_EINVAL;
		}
	}
	if (backend_check_string(auth, "mount", false, keypath, d) < 0)
		rc = SFS_EINVAL;
	else if (json_string_length(json_object_get(auth, "mount")) >
	         VAULT_MAX_MOUNT_LEN) {
		diag_add_at(d, keypath, "mount", "longer than %d bytes",
		            VAULT_MAX_MOUNT_LEN);
		rc = SFS_EINVAL;
	}
	if (ops->check(auth, keypath, d) < 0)
		rc = SFS_EINVAL;
	return rc;
}

bool vault_auth_needs_client_cert(const json_t *auth)
{
	const char *method = json_string_value(json_object_get(auth, "method"));
	const struct vault_auth_ops *ops = method ? vault_auth_find(method) : NULL;

	return ops && ops->needs_client_cert;
}

const char *vault_auth_mount(const json_t *conf, const struct vault_auth_ops *ops)
{
	const char *m = json_string_value(json_object_get(conf, "mount"));

	return m ? m : ops->default_mount;
}

int vault_duration_ms(const json_t *seconds, uint64_t *ms)
{
	json_int_t s = json_integer_value(seconds);

	if (s < 0)
		return SFS_EPARSE;
	*ms = (uint64_t)(s > VAULT_MAX_TTL_S ? VAULT_MAX_TTL_S : s) * 1000;
	return 0;
}

int vault_login_from_reply(const json_t *reply, struct vault_login *out,
                           struct backend_error *err)
{
	const json_t *auth = json_object_get(reply, "auth");
	const json_t *tok = json_object_get(auth, "client_token");
	uint64_t ttl_ms;

	memset(out, 0, sizeof *out);
	if (!json_is_string(tok) || json_string_length(tok) == 0) {
		backend_error_set(err, "login reply has no auth.client_token");
		return SFS_EPARSE;
	}
	if (strlen(json_string_value(tok)) != json_string_length(tok)) {
		backend_error_set(err, "login reply has a NUL byte in auth.client_token");
		return SFS_EPARSE;
	}
	if (vault_duration_ms(json_object_get(auth, "lease_duration"), &ttl_ms) < 0) {
		backend_error_set(err, "login reply has a negative auth.lease_duration");
		return SFS_EPARSE;
	}
	out->token = secmem_alloc(json_string_length(tok) + 1);
	if (!out->token)
		return SFS_ENOMEM;
	memcpy(out->token, json_string_value(tok), json_string_length(tok));
	out->ttl_ms = ttl_ms;
	out->renewable = json_is_true(json_object_get(auth, "renewable"));
	return 0;
}

int vault_login_at(struct vault *v, const json_t *conf, const struct vault_auth_ops *ops,
                   const json_t *body, struct vault_login *out, struct backend_error *err)
{
	json_t *reply = NULL;
	char *path = NULL;
	int rc;

	if (asprintf(&path, "auth/%s/login", vault_auth_mount(conf, ops)) < 0)
		return SFS_ENOMEM;
	rc = vault_call(v, "POST", path, NULL, body, false, NULL, &reply, err);
	if (rc == 0)
		rc = vault_login_from_reply(reply, out, err);
	json_decref(reply);
	free(path);
	return rc;
}

int vault_login_role_jwt(struct vault *v, const json_t *conf,
                         const struct vault_auth_ops *ops, const char *default_file,
                         struct vault_login *out, struct backend_error *err)
{
	const char *role = json_string_value(json_object_get(conf, "role"));
	const char *file = json_string_value(json_object_get(conf, "jwt_file"));
	char *jwt = NULL;
	json_t *body;
	int rc;

	if (!file)
		file = default_file;
	rc = backend_read_secret_file(file, &jwt);
	if (rc < 0) {
		backend_error_set(err, "cannot read jwt_file %s: %s", file,
		                  sfs_strerror(rc));
		return rc;
	}
	body = json_pack("{s:s, s:s}", "role", role, "jwt", jwt);
	secmem_free(jwt);
	if (!body)
		return SFS_ENOMEM;
	rc = vault_login_at(v, conf, ops, body, out, err);
	json_decref(body);
	return rc;
}

void *vault_auth_state(struct vault *v)
{
	return v->auth_state;
}

void vault_set_auth_state(struct vault *v, void *state)
{
	v->auth_state = state;
}

const char *vault_name(const struct vault *v)
{
	return v->base.name;
}

int vault_stash(struct vault *v, const char *data, size_t len)
{
	return credcache_slot_put(&v->stash, data, len);
}

int vault_unstash(struct vault *v, char **out)
{
	return credcache_slot_get(&v->stash, out);
}
