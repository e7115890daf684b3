/*
 * Rendering of one file from a fetched secret value: select a field, decode
 * base64 if asked, then format as raw bytes, JSON, env lines or a template.
 *
 * Plaintext never touches the ordinary heap here: output is appended straight
 * into the caller's secbuf, JSON text is produced by a small serialiser of
 * our own that writes into secmem (jansson's dump would build its text in
 * heap buffers), and decoded base64 lives in a secmem block. Values parsed
 * from decoded base64 live in jansson objects, whose memory secjson wipes on
 * free. Error messages name fields and keys (from the config or the shape of
 * the secret), never values; jansson's parse errors are not passed on, as
 * they quote the input.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "secretfs/error.h"
#include "secretfs/render.h"
#include "secretfs/secmem.h"

/* Deeper values are refused rather than risk the stack. */
#define RENDER_MAX_DEPTH 512
/* Lookups one dotted path may try while backtracking over dotted keys. */
#define RENDER_SELECT_BUDGET 1024
/* Longest key or field name quoted in an error message. */
#define RENDER_NAME_MAX 96

struct render_kv {
	const char *key;
	size_t key_len;
	const json_t *value;
};

/*
 * Copies a key or field name (n bytes, may hold any byte) into dst for an
 * error message: printable ASCII is kept, other bytes and quotes become '?',
 * and long names are cut with "...".
 */
static const char *render_name(char *dst, size_t dstlen, const char *s, size_t n)
{
	size_t i, keep = n;

	if (keep > dstlen - 1)
		keep = dstlen - 4;
	for (i = 0; i < keep; i++) {
		unsigned char c = (unsigned char)s[i];
		dst[i] = (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') ? (char)c : '?';
	}
	if (keep < n) {
		memcpy(dst + i, "...", 3);
		i += 3;
	}
	dst[i] = '\0';
	return dst;
}

/* Appends to the output, enforcing RENDER_MAX_LEN as well as out->max. */
static int out_put(struct secbuf *out, const void *p, size_t n)
{
	if (out->len > RENDER_MAX_LEN || n > RENDER_MAX_LEN - out->len)
		return SFS_ETOOBIG;
	return secbuf_append(out, p, n);
}

static int out_puts(struct secbuf *out, const char *s)
{
	return out_put(out, s, strlen(s));
}

/* Byte order, then shorter first. */
static int render_kv_cmp(const void *a, const void *b)
{
	const struct render_kv *x = a, *y = b;
	size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
	int c = memcmp(x->key, y->key, n);

	if (c != 0)
		return c;
	return (x->key_len > y->key_len) - (x->key_len < y->key_len);
}

/* The members of obj sorted by key into a malloc'd array (keys only). */
static int object_sorted(const json_t *obj, struct render_kv **out, size_t *count)
{
	size_t n = json_object_size(obj), i = 0;
	struct render_kv *kv;
	void *it;

	*out = NULL;
	*count = 0;
	if (n == 0)
		return 0;
	kv = calloc(n, sizeof(*kv));
	if (!kv)
		return SFS_ENOMEM;
	for (it = json_object_iter((json_t *)obj); it && i < n;
	     it = json_object_iter_next((json_t *)obj, it)) {
		kv[i].key = json_object_iter_key(it);
		kv[i].key_len = json_object_iter_key_len(it);
		kv[i].value = json_object_iter_value(it);
		i++;
	}
	qsort(kv, i, sizeof(*kv), render_kv_cmp);
	*out = kv;
	*count = i;
	return 0;
}

static int put_json_string(struct secbuf *out, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t i = 0, run = 0;
	int rc;

	rc = out_put(out, "\"", 1);
	while (rc == 0 && i < n) {
		unsigned char c = (unsigned char)s[i];
		char esc[7] = {'\\', 0, 0, 0, 0, 0, 0};
		size_t esc_len = 2;

		if (c >= 0x20 && c != '"' && c != '\\') {
			i++;
			run++;
			continue;
		}
		rc = out_put(out, s + i - run, run);
		run = 0;
		switch (c) {
		case '"':
		case '\\':
			esc[1] = (char)c;
			break;
		case '\b':
			esc[1] = 'b';
			break;
		case '\f':
			esc[1] = 'f';
			break;
		case '\n':
			esc[1] = 'n';
			break;
		case '\r':
			esc[1] = 'r';
			break;
		case '\t':
			esc[1] = 't';
			break;
		default:
			memcpy(esc + 1, "u00", 3);
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 15];
			esc_len = 6;
		}
		if (rc == 0)
			rc = out_put(out, esc, esc_len);
		i++;
	}
	if (rc == 0)
		rc = out_put(out, s + i - run, run);
	if (rc == 0)
		rc = out_put(out, "\"", 1);
	return rc;
}

/* The shortest "%g" text that reads back as d, marked as a real like jansson. */
static int put_real(struct secbuf *out, double d)
{
	char buf[40];
	int n = 0;

	for (int prec = 1; prec <= 17; prec++) {
		n = snprintf(buf, sizeof(buf) - 2, "%.*g", prec, d);
		if (strtod(buf, NULL) == d)
			break;
	}
	if (n < 0 || (size_t)n >= sizeof(buf) - 2)
		return SFS_EINVAL;
	if (!strpbrk(buf, ".eEn"))
		memcpy(buf + n, ".0", 3);
	return out_puts(out, buf);
}

/* Compact JSON text of v with sorted keys. */
static int put_json(struct secbuf *out, const json_t *v, int depth)
{
	char num[32];
	struct render_kv *kv = NULL;
	size_t count = 0;
	int rc = 0;

	if (depth > RENDER_MAX_DEPTH)
		return SFS_EINVAL;
	switch (json_typeof(v)) {
	case JSON_STRING:
		rc = put_json_string(out, json_string_value(v), json_string_length(v));
		break;
	case JSON_INTEGER:
		snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT,
		         json_integer_value(v));
		rc = out_puts(out, num);
		break;
	case JSON_REAL:
		rc = put_real(out, json_real_value(v));
		break;
	case JSON_TRUE:
		rc = out_puts(out, "true");
		break;
	case JSON_FALSE:
		rc = out_puts(out, "false");
		break;
	case JSON_NULL:
		rc = out_puts(out, "null");
		break;
	case JSON_ARRAY:
		rc = out_put(out, "[", 1);
		for (size_t i = 0; rc == 0 && i < json_array_size(v); i++) {
			if (i > 0)
				rc = out_put(out, ",", 1);
			if (rc == 0)
				rc = put_json(out, json_array_get(v, i), depth + 1);
		}
		if (rc == 0)
			rc = out_put(out, "]", 1);
		break;
	case JSON_OBJECT:
		rc = object_sorted(v, &kv, &count);
		if (rc == 0)
			rc = out_put(out, "{", 1);
		for (size_t i = 0; rc == 0 && i < count; i++) {
			if (i > 0)
				rc = out_put(out, ",", 1);
			if (rc == 0)
				rc = put_json_string(out, kv[i].key, kv[i].key_len);
			if (rc == 0)
				rc = out_put(out, ":", 1);
			if (rc == 0)
				rc = put_json(out, kv[i].value, depth + 1);
		}
		if (rc == 0)
			rc = out_put(out, "}", 1);
		break;
	}
	free(kv);
	return rc;
}

/* A string as its bytes; anything else as its JSON text. */
static int put_raw(struct secbuf *out, const json_t *v)
{
	if (json_is_string(v))
		return out_put(out, json_string_value(v), json_string_length(v));
	return put_json(out, v, 0);
}

/*
 * Looks up path[0..len) in v: the whole remaining path as one key first,
 * then shorter prefixes ending before a dot, descending into each match.
 */
static const json_t *select_n(const json_t *v, const char *path, size_t len, int *budget)
{
	size_t end = len;

	if (!json_is_object(v))
		return NULL;
	for (;;) {
		const json_t *child;

		if (--*budget < 0)
			return NULL;
		child = json_object_getn(v, path, end);
		if (child) {
			if (end == len)
				return child;
			child = select_n(child, path + end + 1, len - end - 1, budget);
			if (child)
				return child;
		}
		if (end == 0)
			return NULL;
		do
			end--;
		while (end > 0 && path[end] != '.');
		if (path[end] != '.')
			return NULL;
	}
}

/*
 * Selects the value at a dotted path of an object; a key containing dots is
 * matched whole before the path is split, longest key first. A NULL path
 * selects value itself. Returns a borrowed reference or NULL.
 */
const json_t *render_select(const json_t *value, const char *path)
{
	int budget = RENDER_SELECT_BUDGET;

	if (!value || !path)
		return value;
	return select_n(value, path, strlen(path), &budget);
}

/*
 * Decodes the base64 string s into a secmem block (*bin, *bin_len bytes
 * used), trying the standard alphabet with and without
 * padding, then the URL-safe one; whitespace is ignored.
 */
static int decode_base64(const json_t *s, unsigned char **bin, size_t *bin_len)
{
	static const int variants[] = {
	    sodium_base64_VARIANT_ORIGINAL, sodium_base64_VARIANT_ORIGINAL_NO_PADDING,
	    sodium_base64_VARIANT_URLSAFE, sodium_base64_VARIANT_URLSAFE_NO_PADDING};
	const char *text = json_string_value(s);
	size_t text_len = json_string_length(s), cap;

	/* Generous: whitespace may pad the text, but not without bound. */
	if (text_len / 4 > RENDER_MAX_LEN)
		return SFS_ETOOBIG;
	cap = text_len / 4 * 3 + 3;
	*bin = secmem_alloc(cap);
	if (!*bin)
		return SFS_ENOMEM;
	for (size_t i = 0; i < sizeof(variants) / sizeof(variants[0]); i++) {
		if (sodium_base642bin(*bin, cap, text, text_len, " \t\r\n", bin_len, NULL,
		                      variants[i]) == 0)
			return 0;
	}
	*bin_len = 0;
	return SFS_EINVAL;
}

static int env_key_valid(const char *k, size_t n)
{
	if (n == 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = k[i];
		int alpha = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
		if (!alpha && (i == 0 || c < '0' || c > '9'))
			return 0;
	}
	return 1;
}

/* Appends p[0..n) with each ' written as '\'' (the caller adds the quotes). */
static int put_single_quoted(struct secbuf *out, const char *p, size_t n)
{
	const char *q;
	int rc = 0;

	while (rc == 0 && (q = memchr(p, '\'', n)) != NULL) {
		rc = out_put(out, p, (size_t)(q - p));
		if (rc == 0)
			rc = out_put(out, "'\\''", 4);
		n -= (size_t)(q - p) + 1;
		p = q + 1;
	}
	if (rc == 0)
		rc = out_put(out, p, n);
	return rc;
}

static int render_env(const json_t *obj, struct secbuf *out, struct backend_error *err)
{
	char name[RENDER_NAME_MAX];
	struct render_kv *kv = NULL;
	struct secbuf text;
	size_t count = 0;
	int rc;

	secbuf_init(&text, RENDER_MAX_LEN);
	if (!json_is_object(obj)) {
		backend_error_set(err, "format env needs an object");
		rc = SFS_EINVAL;
		goto out;
	}
	rc = object_sorted(obj, &kv, &count);
	for (size_t i = 0; rc == 0 && i < count; i++) {
		const json_t *v = kv[i].value;
		const char *val;
		size_t val_len;

		render_name(name, sizeof(name), kv[i].key, kv[i].key_len);
		if (!env_key_valid(kv[i].key, kv[i].key_len)) {
			backend_error_set(
			    err, "env key \"%s\" is not a valid variable name", name);
			rc = SFS_EINVAL;
			goto out;
		}
		if (json_is_string(v)) {
			val = json_string_value(v);
			val_len = json_string_length(v);
		} else {
			secbuf_release(&text);
			rc = put_json(&text, v, 0);
			if (rc != 0)
				goto out;
			val = (const char *)text.data;
			val_len = text.len;
		}
		if (val_len > 0 && memchr(val, '\0', val_len)) {
			backend_error_set(
			    err, "env value of key \"%s\" contains a NUL byte", name);
			rc = SFS_EINVAL;
			goto out;
		}
		rc = out_put(out, kv[i].key, kv[i].key_len);
		if (rc == 0)
			rc = out_put(out, "='", 2);
		if (rc == 0)
			rc = put_single_quoted(out, val, val_len);
		if (rc == 0)
			rc = out_put(out, "'\n", 2);
	}
out:
	secbuf_release(&text);
	free(kv);
	return rc;
}

/* Words that open a consul-template or Go template action. */
static const char *const go_words[] = {
    "with",    "range",        "if",      "else", "end",          "define", "template",
    "block",   "secret",       "secrets", "key",  "keyOrDefault", "ls",     "tree",
    "service", "services",     "env",     "file", "pkiCert",      "printf", "print",
    "index",   "len",          "not",     "and",  "or",           "eq",     "ne",
    "toJSON",  "base64Decode", NULL};

#define TEMPLATE_ONLY "the template format substitutes {{key}} and {{a.b}} only"

/* Line and column (from 1, in bytes) of at in tpl. */
static void template_position(const char *tpl, const char *at, unsigned *line,
                              unsigned *col)
{
	const char *bol = tpl;

	*line = 1;
	for (const char *q = tpl; q < at; q++) {
		if (*q == '\n') {
			(*line)++;
			bol = q + 1;
		}
	}
	*col = (unsigned)(at - bol) + 1;
}

/*
 * Why k[0..n), the trimmed inside of a {{ }} tag, is not a key path
 * (dot-separated non-empty names without spaces, braces, quotes, pipes or
 * control characters), or NULL. *at is where the problem is; *action is
 * the length of the Go template keyword at k that opens the tag, else 0.
 * Reasons name Go template syntax when it looks like it; they never quote
 * the text.
 */
static const char *template_key_problem(const char *k, size_t n, const char **at,
                                        size_t *action)
{
	size_t word = 0;

	*at = k;
	*action = 0;
	while (word < n && k[word] != ' ' && k[word] != '\t')
		word++;
	if (word < n) {
		for (size_t i = 0; go_words[i]; i++) {
			if (strlen(go_words[i]) == word &&
			    strncmp(k, go_words[i], word) == 0) {
				*action = word;
				return "is a consul-template/Go template action";
			}
		}
	}
	if ((word == 1 && k[0] == '-') ||
	    (n >= 2 && k[n - 1] == '-' && (k[n - 2] == ' ' || k[n - 2] == '\t'))) {
		*at = k[0] == '-' ? k : k + n - 1;
		return "\"-\" next to the braces (a trim marker) is Go template "
		       "syntax; " TEMPLATE_ONLY;
	}
	if (k[0] == '.')
		return "a key path starting with \".\" (.Data.x) is Go template "
		       "syntax; " TEMPLATE_ONLY;
	/* Go template syntax anywhere first: it explains the spaces too. */
	for (size_t i = 0; i < n; i++) {
		*at = k + i;
		if (k[i] == '|')
			return "a pipe \"|\" is Go template syntax; " TEMPLATE_ONLY;
		if (k[i] == '$')
			return "a variable \"$\" is Go template syntax; " TEMPLATE_ONLY;
		if (k[i] && strchr("\"`()", k[i]))
			return "quotes and parentheses are Go template "
			       "syntax; " TEMPLATE_ONLY;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)k[i];

		*at = k + i;
		if (c == ' ' || c == '\t')
			return "not a key path: it has a space; " TEMPLATE_ONLY;
		if (c < 0x20 || c == 0x7f)
			return "not a key path: it has a control character";
		if (c == '{' || c == '}')
			return "not a key path: it has a brace";
		if (c == '.' && (i + 1 == n || k[i + 1] == '.'))
			return "not a key path: it has an empty segment";
	}
	return NULL;
}

/* Writes "line L, column C: " and the reason for at into err. */
static void template_err(struct backend_error *err, const char *tpl, const char *at,
                         const char *word, size_t word_len, const char *why)
{
	unsigned line, col;

	template_position(tpl, at, &line, &col);
	if (word)
		backend_error_set(err, "line %u, column %u: \"%.*s\" %s; %s", line, col,
		                  (int)word_len, word, why, TEMPLATE_ONLY);
	else
		backend_error_set(err, "line %u, column %u: %s", line, col, why);
}

/*
 * Walks tpl: literal text and "{{{{" go to out, each {{ key }} is replaced
 * by the raw rendering of key in base. With out NULL it only checks the
 * syntax (render_template_check), so the check and the rendering can never
 * disagree.
 */
static int render_template(const char *tpl, const json_t *base, struct secbuf *out,
                           struct backend_error *err)
{
	char name[RENDER_NAME_MAX];
	const char *p = tpl;
	int rc = 0;

	if (!tpl) {
		backend_error_set(err, "format template needs a template");
		return SFS_EINVAL;
	}
	while (rc == 0 && *p) {
		const char *open = strstr(p, "{{"), *close, *k, *kend, *at, *why;
		const json_t *v;
		int budget = RENDER_SELECT_BUDGET;
		size_t action;

		if (!open) {
			rc = out ? out_puts(out, p) : 0;
			break;
		}
		rc = out ? out_put(out, p, (size_t)(open - p)) : 0;
		if (rc != 0)
			break;
		if (strncmp(open, "{{{{", 4) == 0) {
			rc = out ? out_put(out, "{{", 2) : 0;
			p = open + 4;
			continue;
		}
		close = strstr(open + 2, "}}");
		if (!close) {
			template_err(err, tpl, open, NULL, 0,
			             "unterminated \"{{\" in template");
			return SFS_EINVAL;
		}
		k = open + 2;
		kend = close;
		while (k < kend && (*k == ' ' || *k == '\t'))
			k++;
		while (kend > k && (kend[-1] == ' ' || kend[-1] == '\t'))
			kend--;
		if (k == kend) {
			template_err(err, tpl, open, NULL, 0,
			             "empty \"{{ }}\" in template");
			return SFS_EINVAL;
		}
		why = template_key_problem(k, (size_t)(kend - k), &at, &action);
		if (why) {
			template_err(err, tpl, at, action ? k : NULL, action, why);
			return SFS_EINVAL;
		}
		p = close + 2;
		if (!out)
			continue;
		v = select_n(base, k, (size_t)(kend - k), &budget);
		if (!v) {
			backend_error_set(
			    err, "template key \"%s\" not found",
			    render_name(name, sizeof(name), k, (size_t)(kend - k)));
			return SFS_ENOTFOUND;
		}
		rc = put_raw(out, v);
	}
	return rc;
}

/* Checks the syntax of a template (see render.h). */
int render_template_check(const char *tpl, const char *keypath, struct diag *d)
{
	struct backend_error err = {0};
	int rc = render_template(tpl, NULL, NULL, &err);

	if (rc < 0)
		diag_add(d, keypath, "%s", err.msg);
	return rc;
}

/*
 * The formats, and the secret keys that depend on the format: each format
 * names the keys it needs and those it takes besides; a format-dependent
 * key that a format neither needs nor takes is refused with it.
 */
static const char *const format_dependent_keys[] = {"template", "decode", NULL};

static const struct {
	const char *name;
	const char *const *needs; /* NULL-terminated, or NULL */
	const char *const *takes; /* NULL-terminated, or NULL */
} formats[] = {
    [RENDER_RAW] = {"raw", NULL, (const char *const[]){"decode", NULL}},
    [RENDER_JSON] = {"json", NULL, NULL},
    [RENDER_ENV] = {"env", NULL, NULL},
    [RENDER_TEMPLATE] = {"template", (const char *const[]){"template", NULL}, NULL},
    /* "template" or "template_file": the config checks which. */
    [RENDER_CONSUL_TEMPLATE] = {"consul-template", NULL,
                                (const char *const[]){"template", NULL}},
};
#define NFORMATS (sizeof formats / sizeof formats[0])

static bool listed(const char *const *list, const char *key)
{
	for (; list && *list; list++)
		if (strcmp(*list, key) == 0)
			return true;
	return false;
}

int render_format_parse(const char *s, enum render_format *out)
{
	for (size_t i = 0; i < NFORMATS; i++) {
		if (strcmp(s, formats[i].name) == 0) {
			*out = (enum render_format)i;
			return 0;
		}
	}
	return SFS_EINVAL;
}

const char *render_format_name(enum render_format f)
{
	return (size_t)f < NFORMATS ? formats[f].name : "?";
}

const char *render_format_names(char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < NFORMATS && used < len; i++)
		used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? ", " : "",
		                         formats[i].name);
	return buf;
}

int render_format_takes(enum render_format f, const char *key)
{
	if (!listed(format_dependent_keys, key) || (size_t)f >= NFORMATS)
		return 0;
	if (listed(formats[f].needs, key))
		return 1;
	return listed(formats[f].takes, key) ? 0 : -1;
}

const char *render_formats_taking(const char *key, char *buf, size_t len)
{
	size_t used = 0, n = 0, total = 0;

	for (size_t i = 0; i < NFORMATS; i++)
		total += render_format_takes((enum render_format)i, key) >= 0;
	buf[0] = '\0';
	for (size_t i = 0; i < NFORMATS && used < len; i++) {
		if (render_format_takes((enum render_format)i, key) < 0)
			continue;
		n++;
		used += (size_t)snprintf(buf + used, len - used, "%s\"%s\"",
		                         n == 1       ? ""
		                         : n == total ? " or "
		                                      : ", ",
		                         formats[i].name);
	}
	return buf;
}

/*
 * Renders value per spec into out (see render.h). On failure out is released
 * (any partial output wiped), a negative SFS_ code is returned and err holds
 * a reason naming fields and keys only. With decode_base64, raw output is
 * the decoded bytes; the other formats parse the decoded bytes as a JSON
 * document (SFS_EINVAL if they are not one) and format that.
 */
int render(const struct render_spec *spec, const json_t *value, struct secbuf *out,
           struct backend_error *err)
{
	char name[RENDER_NAME_MAX] = "";
	const char *what = "value";
	const json_t *sel = value;
	json_t *parsed = NULL;
	unsigned char *bin = NULL;
	size_t bin_len = 0, limit = RENDER_MAX_LEN;
	int rc = SFS_EINVAL;

	if (err)
		err->msg[0] = '\0';
	if (!spec || !value || !out) {
		backend_error_set(err, "nothing to render");
		goto out;
	}
	if (spec->field) {
		render_name(name, sizeof(name), spec->field, strlen(spec->field));
		what = "field";
		sel = render_select(value, spec->field);
		if (!sel) {
			backend_error_set(err, "field \"%s\" not found", name);
			rc = SFS_ENOTFOUND;
			goto out;
		}
	}
	if (spec->decode_base64) {
		json_error_t jerr;

		if (!json_is_string(sel)) {
			backend_error_set(
			    err, "cannot decode base64: %s%s%s%s is not a string", what,
			    spec->field ? " \"" : "", spec->field ? name : "",
			    spec->field ? "\"" : "");
			rc = SFS_EINVAL;
			goto out;
		}
		rc = decode_base64(sel, &bin, &bin_len);
		if (rc == SFS_EINVAL) {
			backend_error_set(err, "%s%s%s%s is not valid base64", what,
			                  spec->field ? " \"" : "",
			                  spec->field ? name : "",
			                  spec->field ? "\"" : "");
		}
		if (rc != 0)
			goto out;
		if (spec->format == RENDER_RAW) {
			rc = out_put(out, bin, bin_len);
			goto out;
		}
		parsed = json_loadb((const char *)bin, bin_len,
		                    JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
		/* jansson's message quotes the input. */
		sodium_memzero(&jerr, sizeof(jerr));
		if (!parsed) {
			backend_error_set(err, "decoded %s is not a JSON document", what);
			rc = SFS_EINVAL;
			goto out;
		}
		sel = parsed;
	}
	switch (spec->format) {
	case RENDER_RAW:
		rc = put_raw(out, sel);
		break;
	case RENDER_JSON:
		rc = put_json(out, sel, 0);
		break;
	case RENDER_ENV:
		rc = render_env(sel, out, err);
		break;
	case RENDER_TEMPLATE:
		rc = render_template(spec->template_text, sel, out, err);
		break;
	default:
		backend_error_set(err, "unknown format");
		rc = SFS_EINVAL;
	}
out:
	if (rc != 0 && out) {
		limit = out->max < RENDER_MAX_LEN ? out->max : (size_t)RENDER_MAX_LEN;
		secbuf_release(out);
	}
	if (rc != 0 && err && err->msg[0] == '\0') {
		if (rc == SFS_ETOOBIG)
			backend_error_set(
			    err, "rendered content exceeds the size limit (%zu bytes)",
			    limit);
		else if (rc == SFS_EINVAL)
			backend_error_set(err, "value nested too deeply");
		else
			backend_error_set(err, "%s", sfs_strerror(rc));
	}
	secmem_free(bin);
	json_decref(parsed);
	return rc;
}
