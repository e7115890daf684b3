/*
 * The Vault backend's HTTP client (vault_client.c): the server's address
 * and namespace, the pool of connections, the proxy, and the BAO_/VAULT_
 * environment variables that stand in for config keys. vault_call, the
 * request function, is declared in vault.h for the auth methods.
 */
#ifndef SECRETFS_VAULT_CLIENT_H
#define SECRETFS_VAULT_CLIENT_H

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>

#include "secretfs/backend.h"
#include "secretfs/http.h"

/* A "vault" backend's config object, parsed by backend_vault.c (strings
 * and objects borrowed from it; NULL when absent). */
struct vault_conf {
	const char *address;
	const char *namespace;
	const char *proxy;
	const json_t *tls_conf; /* the "tls" object, parsed into tls */
	const json_t *auth;
	struct backend_tls tls;
	uint64_t timeout_ms; /* 0: http.c's default */
	uint64_t revoke_grace_ms;
	bool revoke_on_shutdown;
	bool proxy_from_environment;
};

struct vault_client {
	char *address;         /* without trailing slash */
	char *namespace;       /* NULL: none */
	struct http_pool pool; /* bounds the concurrent requests */
	struct backend_proxy proxy;
};

/*
 * Sets up c for the backend called name from its parsed config conf
 * (address, namespace, tls, proxy, timeout), each key falling back on its
 * BAO_ or VAULT_ variable. Makes one client at once, so that bad TLS files are
 * found at start-up (logged). Returns 0 or an SFS_ code; c is released
 * with vault_client_release (which a zeroed c also accepts) either way.
 */
int vault_client_init(struct vault_client *c, const char *name,
                      const struct vault_conf *conf);

/* Frees what c holds. */
void vault_client_release(struct vault_client *c);

/*
 * VAULT_SKIP_VERIFY / BAO_SKIP_VERIFY set to a true value (Go's
 * strconv.ParseBool spellings), which secretfs refuses: it never turns TLS
 * verification off. Returns the variable's name, or NULL.
 */
const char *vault_client_skip_verify_asked(void);

#endif
