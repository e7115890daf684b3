/*
 * Checks of single config values (see confval.h): key lists, strings and
 * durations, each reporting at its key path.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "confval.h"
#include "secretfs/duration.h"

void confval_problem(struct confval *cv, const char *kp, const char *fmt, ...)
{
	char *reason = NULL;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&reason, fmt, ap) < 0)
		reason = NULL;
	va_end(ap);
	cv->errors++;
	diag_add(cv->d, kp, "%s", reason ? reason : "");
	free(reason);
}

char *confval_dup(struct confval *cv, const char *s)
{
	char *c = strdup(s);

	if (!c)
		cv->oom = true;
	return c;
}

const char *confval_quote(char *buf, size_t len, const char *s)
{
	size_t pos = 0, n = 0;

	if (len < 8)
		return "\"\"";
	buf[pos++] = '"';
	for (const unsigned char *c = (const unsigned char *)s; *c; c++, n++) {
		if (n == CONFVAL_QUOTE_MAX || pos + 8 >= len) {
			memcpy(buf + pos, "...", 3);
			pos += 3;
			break;
		}
		if (*c == '"' || *c == '\\') {
			buf[pos++] = '\\';
			buf[pos++] = (char)*c;
		} else if (*c < 0x20 || *c == 0x7f) {
			pos += (size_t)snprintf(buf + pos, len - pos, "\\x%02x", *c);
		} else {
			buf[pos++] = (char)*c;
		}
	}
	buf[pos++] = '"';
	buf[pos] = '\0';
	return buf;
}

const char *confval_keypath(char *buf, const char *parent, const char *key)
{
	/* Escaping at most quadruples a byte; then the dot, quotes and NUL. */
	size_t plen = parent ? strlen(parent) : 0, klen = strlen(key);

	if (plen >= CONFVAL_KP_MAX || klen > (CONFVAL_KP_MAX - plen - 4) / 4)
		return parent;
	return diag_keypath(buf, CONFVAL_KP_MAX, parent, key);
}

bool confval_in_list(const char *const *list, const char *key)
{
	for (; list && *list; list++)
		if (strcmp(*list, key) == 0)
			return true;
	return false;
}

const char *confval_join(char *buf, size_t len, const char *const *a,
                         const char *const *b)
{
	const char *const *lists[2] = {a, b};
	size_t pos = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < 2; i++) {
		for (const char *const *k = lists[i]; k && *k; k++) {
			int n =
			    snprintf(buf + pos, len - pos, "%s%s", pos ? ", " : "", *k);
			if (n < 0 || (size_t)n >= len - pos)
				return buf;
			pos += (size_t)n;
		}
	}
	return buf;
}

void confval_check_keys(struct confval *cv, const json_t *obj, const char *kp,
                        const char *const *allowed, const char *const *extra)
{
	char ckp[CONFVAL_KP_MAX], q[CONFVAL_QUOTE_BUF], list[512];
	const char *key;
	json_t *v;

	json_object_foreach((json_t *)obj, key, v)
	{
		if (confval_in_list(allowed, key) || confval_in_list(extra, key))
			continue;
		confval_problem(
		    cv, confval_keypath(ckp, kp, key), "unknown key %s (%s takes: %s)",
		    confval_quote(q, sizeof q, key), kp && kp[0] ? kp : "the top level",
		    confval_join(list, sizeof list, allowed, extra));
	}
}

json_t *confval_get(struct confval *cv, const json_t *obj, const char *kp,
                    const char *key, bool required)
{
	json_t *v = json_object_get(obj, key);

	if (!v && required)
		confval_problem(cv, kp, "missing required key \"%s\"", key);
	return v;
}

int confval_get_str(struct confval *cv, const json_t *obj, const char *kp,
                    const char *key, bool required, size_t maxlen, const char **out)
{
	char buf[CONFVAL_KP_MAX];
	json_t *v = confval_get(cv, obj, kp, key, required);
	const char *ckp;

	if (!v)
		return 0;
	ckp = confval_keypath(buf, kp, key);
	if (!json_is_string(v)) {
		confval_problem(cv, ckp, "must be a string");
		return -1;
	}
	if (json_string_length(v) == 0) {
		confval_problem(cv, ckp, "must not be empty");
		return -1;
	}
	if (json_string_length(v) > maxlen) {
		confval_problem(cv, ckp, "must be at most %zu bytes", maxlen);
		return -1;
	}
	*out = json_string_value(v);
	return 1;
}

int confval_duration(struct confval *cv, const json_t *v, const char *kp, uint64_t *out)
{
	char q[CONFVAL_QUOTE_BUF];
	const char *reason;

	if (json_is_string(v)) {
		reason = duration_from_string(json_string_value(v), out);
		if (reason) {
			confval_problem(cv, kp, "invalid duration %s: %s",
			                confval_quote(q, sizeof q, json_string_value(v)),
			                reason);
			return -1;
		}
		return 0;
	}
	if (json_is_number(v)) {
		reason = duration_from_seconds(json_number_value(v), out);
		if (reason) {
			confval_problem(cv, kp, "invalid duration: %s", reason);
			return -1;
		}
		return 0;
	}
	confval_problem(
	    cv, kp, "must be a duration: a number of seconds or a string like \"90s\"");
	return -1;
}
