/*
 * Helpers every backend implementation uses: config checks with key paths
 * in their messages, config-or-environment lookups, the proxy from the
 * environment, and reading small secret files (tokens, JWTs, IDs) into
 * guarded memory.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "secretfs/backend.h"
#include "secretfs/error.h"
#include "secretfs/log.h"
#include "secretfs/secmem.h"

#define BACKEND_MAX_SECRET_FILE 65536

int backend_check_string(const json_t *obj, const char *key, bool required,
                         const char *keypath, struct diag *d)
{
	const json_t *v = json_object_get(obj, key);
	char *kp;

	if (!v) {
		if (!required)
			return 0;
		diag_add(d, keypath, "missing required key \"%s\"", key);
		return SFS_EINVAL;
	}
	if (!json_is_string(v) || json_string_length(v) == 0) {
		kp = diag_keypath_new(keypath, key);
		diag_add(d, kp ? kp : keypath, "must be a non-empty string");
		free(kp);
		return SFS_EINVAL;
	}
	return 0;
}

const char *backend_conf_or_env(const char *s, const char *env)
{
	const char *e = env ? getenv(env) : NULL;

	return s ? s : (e && *e ? e : NULL);
}

/* Loopback never goes through a proxy (Go's ProxyFromEnvironment rule). */
#define BACKEND_NOPROXY_ALWAYS "localhost,127.0.0.0/8,::1"

static const char *first_env(const char *const *names, const char **which)
{
	for (; names && *names; names++) {
		const char *e = getenv(*names);
		if (e && *e) {
			*which = *names;
			return e;
		}
	}
	return NULL;
}

int backend_proxy_init(struct backend_proxy *p, const char *proxy, bool from_environment,
                       const char *url, const char *const *override_env)
{
	static const char *const https_env[] = {"HTTPS_PROXY", "https_proxy", NULL};
	static const char *const http_env[] = {"HTTP_PROXY", "http_proxy", NULL};
	static const char *const no_env[] = {"NO_PROXY", "no_proxy", NULL};
	const char *no = NULL, *which = "config";

	memset(p, 0, sizeof *p);
	if (!proxy && !from_environment)
		return 0;
	if (!proxy)
		proxy = first_env(override_env, &which);
	if (!proxy && url) {
		proxy = first_env(strncmp(url, "https://", 8) == 0 ? https_env : http_env,
		                  &which);
		if (proxy) {
			const char *unused;
			no = first_env(no_env, &unused);
			if (no && strcmp(no, "*") == 0)
				return 0; /* every host bypasses it */
			if (asprintf(&p->noproxy, "%s%s%s", BACKEND_NOPROXY_ALWAYS,
			             no ? "," : "", no ? no : "") < 0) {
				p->noproxy = NULL;
				return SFS_ENOMEM;
			}
		}
	}
	if (!proxy)
		return 0;
	p->url = strdup(proxy);
	p->from = which;
	/* A proxy named for this backend serves every request: an empty
	 * list keeps libcurl from reading NO_PROXY itself. */
	if (!p->noproxy)
		p->noproxy = strdup("");
	if (!p->url || !p->noproxy) {
		backend_proxy_release(p);
		return SFS_ENOMEM;
	}
	return 0;
}

void backend_proxy_release(struct backend_proxy *p)
{
	if (!p)
		return;
	if (p->url)
		sodium_memzero(p->url, strlen(p->url));
	free(p->url);
	free(p->noproxy);
	memset(p, 0, sizeof *p);
}

void backend_proxy_log(const struct backend_proxy *p, const char *backend)
{
	char shown[256];

	if (p->url)
		log_info("backend %s: requests go through proxy %s (from %s)", backend,
		         backend_proxy_redacted(p->url, shown, sizeof shown), p->from);
}

const char *backend_proxy_redacted(const char *url, char *buf, size_t len)
{
	const char *host = strstr(url, "://");
	const char *at, *end;

	host = host ? host + 3 : url;
	end = host + strcspn(host, "/?#");
	at = memrchr(host, '@', (size_t)(end - host));
	if (at)
		snprintf(buf, len, "%.*s***@%s", (int)(host - url), url, at + 1);
	else
		snprintf(buf, len, "%s", url);
	return buf;
}

int backend_read_secret_file(const char *path, char **out)
{
	unsigned char *buf = NULL;
	size_t n = 0;
	int rc;

	rc = secmem_read_file(path, BACKEND_MAX_SECRET_FILE, &buf, &n);
	if (rc < 0)
		return rc;
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' ||
	                 buf[n - 1] == '\t'))
		buf[--n] = '\0';
	if (n == 0 || memchr(buf, '\0', n)) {
		secmem_free(buf);
		return SFS_EINVAL;
	}
	*out = (char *)buf;
	return 0;
}
