/*
 * Typed backend config (see backend.h): a backend's config object checked
 * against the backend's table of keys and stored into its struct, by one
 * function that both check() and create() call.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "secretfs/backend.h"
#include "secretfs/duration.h"
#include "secretfs/error.h"

static const struct backend_conf_key *conf_key(const struct backend_conf_spec *spec,
                                               const char *name)
{
	for (size_t i = 0; i < spec->nkeys; i++)
		if (strcmp(spec->keys[i].name, name) == 0)
			return &spec->keys[i];
	return NULL;
}

/* The key names of spec, comma-separated, into buf. Returns buf. */
static const char *conf_key_names(const struct backend_conf_spec *spec, char *buf,
                                  size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < spec->nkeys && used < len; i++)
		used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? ", " : "",
		                         spec->keys[i].name);
	return buf;
}

/* Checks v against k and stores it in out; returns 0 or SFS_EINVAL. */
static int conf_value(const struct backend_conf_key *k, const json_t *v,
                      const char *keypath, struct diag *d, void *out)
{
	char *field = (char *)out + k->offset;
	uint64_t ms;

	switch (k->kind) {
	case BACKEND_CONF_CHECKED:
		return 0;
	case BACKEND_CONF_STRING:
		if (!json_is_string(v) || json_string_length(v) == 0) {
			diag_add_at(d, keypath, k->name, "must be a non-empty string");
			return SFS_EINVAL;
		}
		*(const char **)field = json_string_value(v);
		return 0;
	case BACKEND_CONF_TEXT:
		if (!json_is_string(v) || json_string_length(v) > k->max) {
			diag_add_at(d, keypath, k->name,
			            "must be a string of at most %zu characters", k->max);
			return SFS_EINVAL;
		}
		*(const char **)field = json_string_value(v);
		return 0;
	case BACKEND_CONF_DURATION:
		if (duration_parse(v, &ms) < 0) {
			diag_add_at(
			    d, keypath, k->name,
			    "must be a duration such as \"30s\" or a number of seconds");
			return SFS_EINVAL;
		}
		if (ms < k->min) {
			diag_add_at(d, keypath, k->name, "must be at least %llu ms",
			            (unsigned long long)k->min);
			return SFS_EINVAL;
		}
		*(uint64_t *)field = ms;
		return 0;
	case BACKEND_CONF_BOOL:
		if (!json_is_boolean(v)) {
			diag_add_at(d, keypath, k->name, "must be true or false");
			return SFS_EINVAL;
		}
		*(bool *)field = json_is_true(v);
		return 0;
	case BACKEND_CONF_OBJECT:
		if (!json_is_object(v)) {
			diag_add_at(d, keypath, k->name, "must be an object");
			return SFS_EINVAL;
		}
		*(const json_t **)field = v;
		return 0;
	}
	return SFS_EINVAL;
}

int backend_conf_parse(const struct backend_conf_spec *spec, const json_t *obj,
                       const char *keypath, struct diag *d, void *out)
{
	char names[512];
	const char *name;
	json_t *v;
	int rc = 0;

	json_object_foreach((json_t *)obj, name, v)
	{
		const struct backend_conf_key *k = conf_key(spec, name);

		if (!k) {
			diag_add_at(d, keypath, name, "unknown key \"%s\" (%s: %s)", name,
			            spec->takes,
			            conf_key_names(spec, names, sizeof names));
			rc = SFS_EINVAL;
		} else if (conf_value(k, v, keypath, d, out) < 0) {
			rc = SFS_EINVAL;
		}
	}
	for (size_t i = 0; i < spec->nkeys; i++) {
		if (spec->keys[i].required && !json_object_get(obj, spec->keys[i].name)) {
			diag_add(d, keypath, "missing required key \"%s\"",
			         spec->keys[i].name);
			rc = SFS_EINVAL;
		}
	}
	return rc;
}

static const struct backend_conf_key tls_conf_keys[] = {
    BACKEND_CONF_STRING_KEY(struct backend_tls, ca_file, "ca_file"),
    BACKEND_CONF_STRING_KEY(struct backend_tls, ca_dir, "ca_dir"),
    BACKEND_CONF_STRING_KEY(struct backend_tls, client_cert, "client_cert"),
    BACKEND_CONF_STRING_KEY(struct backend_tls, client_key, "client_key"),
    BACKEND_CONF_STRING_KEY(struct backend_tls, server_name, "server_name"),
};
static const struct backend_conf_spec tls_conf_spec =
    BACKEND_CONF_SPEC("tls takes", tls_conf_keys);

int backend_tls_parse(const json_t *tls, const char *keypath, struct diag *d,
                      struct backend_tls *out)
{
	int rc;

	memset(out, 0, sizeof *out);
	if (!tls)
		return 0;
	if (!json_is_object(tls)) {
		diag_add(d, keypath, "must be an object");
		return SFS_EINVAL;
	}
	rc = backend_conf_parse(&tls_conf_spec, tls, keypath, d, out);
	if (!json_object_get(tls, "client_cert") != !json_object_get(tls, "client_key")) {
		diag_add(d, keypath, "client_cert and client_key go together");
		rc = SFS_EINVAL;
	}
	return rc;
}
