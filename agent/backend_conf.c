/*
 * Typed backend config (see backend.h): a backend's config object checked
 * against the backend's table of keys and stored into its struct, by one
 * function that both check() and create() call.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "secretfs/backend.h"
#include "secretfs/duration.h"
#include "secretfs/error.h"

/* Reports a problem at keypath.key; the key path is allocated, never cut. */
static void conf_problem(struct diag *d, const char *keypath, const char *key,
                         const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void conf_problem(struct diag *d, const char *keypath, const char *key,
                         const char *fmt, ...)
{
	char *reason, *kp;
	va_list ap;
	int n;

	if (!d)
		return;
	va_start(ap, fmt);
	n = vasprintf(&reason, fmt, ap);
	va_end(ap);
	if (n < 0)
		return; /* out of memory: the caller still fails the check */
	kp = diag_keypath_new(keypath, key);
	diag_add(d, kp ? kp : keypath, "%s", reason);
	free(kp);
	free(reason);
}

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
			conf_problem(d, keypath, k->name, "must be a non-empty string");
			return SFS_EINVAL;
		}
		*(const char **)field = json_string_value(v);
		return 0;
	case BACKEND_CONF_TEXT:
		if (!json_is_string(v) || json_string_length(v) > k->max) {
			conf_problem(d, keypath, k->name,
			             "must be a string of at most %zu characters",
			             k->max);
			return SFS_EINVAL;
		}
		*(const char **)field = json_string_value(v);
		return 0;
	case BACKEND_CONF_DURATION:
		if (duration_parse(v, &ms) < 0) {
			conf_problem(
			    d, keypath, k->name,
			    "must be a duration such as \"30s\" or a number of seconds");
			return SFS_EINVAL;
		}
		if (ms < k->min) {
			conf_problem(d, keypath, k->name, "must be at least %llu ms",
			             (unsigned long long)k->min);
			return SFS_EINVAL;
		}
		*(uint64_t *)field = ms;
		return 0;
	case BACKEND_CONF_BOOL:
		if (!json_is_boolean(v)) {
			conf_problem(d, keypath, k->name, "must be true or false");
			return SFS_EINVAL;
		}
		*(bool *)field = json_is_true(v);
		return 0;
	case BACKEND_CONF_OBJECT:
		if (!json_is_object(v)) {
			conf_problem(d, keypath, k->name, "must be an object");
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
			conf_problem(d, keypath, name, "unknown key \"%s\" (%s: %s)",
			             name, spec->takes,
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
