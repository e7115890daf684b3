/*
 * The "telemetry" block of the config (see telemetry.h):
 *   "telemetry": {"listen": "127.0.0.1:9464", "liveness_timeout": "60s"}
 * listen is a numeric IPv4 address and port, [IPv6]:port, or unix:/path
 * (absolute, short enough for sun_path). Parsed once here into the typed
 * struct both --check and the listener use.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "secretfs/duration.h"
#include "secretfs/error.h"
#include "httpd.h"
#include "telemetry.h"

#define DEFAULT_LIVENESS_TIMEOUT_MS 60000
#define MIN_LIVENESS_TIMEOUT_MS 1000
#define LISTEN_MAX 200 /* bytes of a listen value echoed in a message */

static const char *const telemetry_keys[] = {"listen", "liveness_timeout", NULL};

int telemetry_config_parse(const json_t *obj, const char *kp, struct diag *d,
                           struct config_telemetry **out)
{
	struct config_telemetry *tc;
	const char *key, *why;
	char ckp[256];
	json_t *v;
	int rc = 0;

	if (!json_is_object(obj)) {
		diag_add(d, kp, "must be an object: {\"listen\": \"127.0.0.1:9464\"}");
		return SFS_EINVAL;
	}
	json_object_foreach((json_t *)obj, key, v)
	{
		size_t i = 0;

		while (telemetry_keys[i] && strcmp(telemetry_keys[i], key) != 0)
			i++;
		if (!telemetry_keys[i]) {
			diag_add(d, diag_keypath(ckp, sizeof ckp, kp, key),
			         "unknown key (expected listen, liveness_timeout)");
			rc = SFS_EINVAL;
		}
	}
	tc = calloc(1, sizeof *tc);
	if (!tc) {
		diag_add(d, kp, "out of memory");
		return SFS_ENOMEM;
	}
	tc->liveness_timeout_ms = DEFAULT_LIVENESS_TIMEOUT_MS;
	diag_keypath(ckp, sizeof ckp, kp, "listen");
	v = json_object_get(obj, "listen");
	if (!v) {
		diag_add(d, ckp,
		         "required: the address to serve /metrics, /healthz and "
		         "/readyz on (e.g. \"127.0.0.1:9464\")");
		rc = SFS_EINVAL;
	} else if (!json_is_string(v)) {
		diag_add(d, ckp, "must be a string");
		rc = SFS_EINVAL;
	} else if ((why = httpd_parse_listen(json_string_value(v), tc))) {
		diag_add(d, ckp, "invalid address \"%.*s\": %s", LISTEN_MAX,
		         json_string_value(v), why);
		rc = SFS_EINVAL;
	} else if (!(tc->listen = strdup(json_string_value(v)))) {
		diag_add(d, ckp, "out of memory");
		rc = SFS_ENOMEM;
	}
	diag_keypath(ckp, sizeof ckp, kp, "liveness_timeout");
	if ((v = json_object_get(obj, "liveness_timeout"))) {
		if (duration_parse(v, &tc->liveness_timeout_ms) < 0) {
			diag_add(d, ckp,
			         "must be a duration: a number of seconds or a "
			         "string like \"60s\"");
			rc = SFS_EINVAL;
		} else if (tc->liveness_timeout_ms < MIN_LIVENESS_TIMEOUT_MS) {
			diag_add(d, ckp, "must be at least 1s");
			rc = SFS_EINVAL;
		}
	}
	if (rc < 0) {
		telemetry_config_free(tc);
		return rc;
	}
	*out = tc;
	return 0;
}

void telemetry_config_free(struct config_telemetry *tc)
{
	if (!tc)
		return;
	free(tc->listen);
	free(tc);
}
