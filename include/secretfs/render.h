/*
 * Rendering: turns a fetched secret value (a jansson string or object) into
 * the bytes of one file, according to the file's field/format/decode.
 * Output is in guarded memory. Error messages name keys, never values.
 */
#ifndef SECRETFS_RENDER_H
#define SECRETFS_RENDER_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

#include "secretfs/diag.h"
#include "secretfs/error.h"
#include "secretfs/secmem.h"

enum render_format {
	RENDER_RAW = 0,
	RENDER_JSON,
	RENDER_ENV,
	RENDER_TEMPLATE,
	RENDER_CONSUL_TEMPLATE, /* rendered by ctmpl.h from its own secrets, not by
	                           render() */
};

struct render_spec {
	enum render_format format;
	const char *field;         /* dotted path into the value; NULL = whole value */
	const char *template_text; /* RENDER_TEMPLATE only */
	bool decode_base64;        /* decode the selected string first */
};

/* The format named s ("raw", "json", "env", "template", "consul-template"). Returns 0 or
 * SFS_EINVAL. */
int render_format_parse(const char *s, enum render_format *out);

/* The name of format f ("raw", ...). */
const char *render_format_name(enum render_format f);

/* The format names, comma-separated, into buf; returns buf. */
const char *render_format_names(char *buf, size_t len);

/*
 * How format f uses a secret's config key: 1 it needs key, 0 it may take
 * it (or key does not depend on the format), -1 key is refused with f (a
 * key such as "template" or "decode" that only some formats take).
 */
int render_format_takes(enum render_format f, const char *key);

/* The formats that take key, quoted, as "\"raw\"" or "\"a\", \"b\" or
 * \"c\"", into buf; returns buf. */
const char *render_formats_taking(const char *key, char *buf, size_t len);

/* Maximum size of one rendered file. */
#define RENDER_MAX_LEN (1024 * 1024)

/*
 * Selects the value at a dotted path ("a.b.c") of an object. A key that
 * itself contains dots is matched whole first. Returns a borrowed reference
 * or NULL when a component is missing or not an object.
 */
const json_t *render_select(const json_t *value, const char *path);

/*
 * Renders value per spec into out (initialised by the caller with
 * secbuf_init). On failure returns a negative SFS_ code and writes a reason
 * into err (naming keys only): SFS_ENOTFOUND (field or template key missing),
 * SFS_EINVAL (wrong shape, bad base64, env key not a valid name),
 * SFS_ETOOBIG, SFS_ENOMEM.
 *
 * raw:      a string as its bytes; numbers, booleans and null as their JSON
 *           text; objects and arrays as compact JSON.
 * json:     the selected value as compact JSON with sorted keys.
 * env:      an object as KEY='value' lines sorted by key, values single-quoted
 *           with ' written as '\'' (POSIX shell and dotenv safe); non-string
 *           values as their JSON text; keys must match [A-Za-z_][A-Za-z0-9_]*.
 * template: {{key}} and {{ a.b }} replaced by the raw rendering of that path
 *           (relative to the selected value); "{{{{" is a literal "{{".
 *           A template that render_template_check refuses fails with
 *           SFS_EINVAL and the same reason.
 */
int render(const struct render_spec *spec, const json_t *value, struct secbuf *out,
           struct backend_error *err);

/*
 * Checks a template's syntax without a value, as render() parses it: every
 * {{ }} tag must be closed and hold a key path (dot-separated non-empty
 * names; no spaces, braces, quotes, parentheses, pipes, "$" or control
 * characters). Returns 0, or SFS_EINVAL with one diag at keypath (d may
 * be NULL), "line L, column C: why" (position in the template, from 1); a
 * consul-template/Go template action ({{ with secret ... }}, {{ .Data.x }},
 * pipes, $variables) is named as such. The message never quotes the
 * template's text beyond such keywords.
 */
int render_template_check(const char *tpl, const char *keypath, struct diag *d);

#endif
