/*
 * The configuration loader: reads the JSON document described in DESIGN.md
 * section 1, checks every key of it in one pass and builds a struct config.
 * Nothing is applied here: the caller gets a complete, valid config or none,
 * and one diag message per problem (file, key path, why).
 *
 * Backend objects and backend-specific per-secret keys are validated by the
 * backend named in their "type" (backend.h), an on_change block by onchange.c;
 * the common keys are checked here, with the value checks of confval.h.
 *
 * Messages name keys, backend names, types, durations and mount paths; they
 * never echo values that could be secret (template text, command arguments,
 * tokens in a malformed document).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config_ctmpl.h"
#include "confval.h"
#include "onchange.h"
#include "readfile.h"
#include "secretfs/audit.h"
#include "secretfs/backend.h"
#include "secretfs/config.h"
#include "secretfs/error.h"
#include "secretfs/log.h"
#include "aws_api.h"
#include "telemetry.h"

#define CONFIG_MAX_FILE (16u * 1024 * 1024) /* bytes of config text: 100 000 secrets */
#define CONFIG_MAX_BACKENDS 256
#define DEFAULT_SHUTDOWN_TIMEOUT_MS 5000
#define CONFIG_MAX_NAME 1024
#define CONFIG_MAX_BACKEND_NAME 256
#define CONFIG_MAX_SEGMENT 255
#define CONFIG_MAX_ID 4294967294u /* (uid_t)-1 means "unchanged" to chown */
#define CONFIG_MAX_MODE 07777
#define DEFAULT_STARTUP_TIMEOUT_MS 30000

/* Every key path of a secret fits: "secrets.", its name escaped, and the
 * longest path below it that the config defines. */
_Static_assert(CONFVAL_KP_MAX >= sizeof "secrets." + 4 * CONFIG_MAX_NAME + 2 +
                                     sizeof ".on_change.command[4294967295]",
               "CONFVAL_KP_MAX cannot hold a secret's key paths");

struct parser {
	struct confval cv; /* the diag, the problem count, out of memory */
	struct config *cfg;
	const json_t *backends; /* the "backends" object, when it is one */
	json_t *no_extra;       /* shared by the secrets without backend keys:
	                           an empty object costs ~260 bytes each */
};

static const char *const top_keys[] = {
    "mount", "backends",  "secrets", "log",    "startup_timeout", "shutdown_timeout",
    "audit", "telemetry", "aws_api", "limits", "hardening",       NULL};
static const char *const mount_keys[] = {
    "path",     "type",        "uid",          "gid",       "mode",
    "dir_mode", "allow_other", "keep_on_exit", "fast_open", NULL};
static const char *const log_keys[] = {"level", "format", NULL};
static const char *const hardening_keys[] = {"seccomp", "landlock", NULL};
static const char *const limits_keys[] = {"max_files", "max_open_handles", NULL};
static const char *const secret_keys[] = {
    "backend",       "path",      "field",   "format", "template",
    "template_file", "decode",    "refresh", "mode",   "uid",
    "gid",           "on_change", NULL};
static const char *const no_keys[] = {NULL};

/* --- small helpers ------------------------------------------------------ */

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* A uid or gid: an integer from 0 to CONFIG_MAX_ID. */
static int parse_id(struct parser *p, const json_t *v, const char *kp, uint32_t *out)
{
	json_int_t i;

	if (!json_is_integer(v) || (i = json_integer_value(v)) < 0 || i > CONFIG_MAX_ID) {
		confval_problem(&p->cv, kp, "must be an integer from 0 to %u",
		                CONFIG_MAX_ID);
		return -1;
	}
	*out = (uint32_t)i;
	return 0;
}

/*
 * A permission mode: an octal string ("0440", "440") or a JSON integer taken
 * as the numeric mode. Files may not be writable: the mount is read-only.
 */
static int parse_mode(struct parser *p, const json_t *v, const char *kp, bool file,
                      mode_t *out)
{
	unsigned long m = 0;

	if (json_is_string(v)) {
		const char *s = json_string_value(v);
		size_t n = json_string_length(v);

		if (n == 0 || n > 5)
			goto bad;
		for (size_t i = 0; i < n; i++) {
			if (s[i] < '0' || s[i] > '7')
				goto bad;
			m = m * 8 + (unsigned long)(s[i] - '0');
		}
		if (m > CONFIG_MAX_MODE)
			goto bad;
	} else if (json_is_integer(v)) {
		json_int_t i = json_integer_value(v);

		if (i < 0 || i > CONFIG_MAX_MODE)
			goto bad;
		m = (unsigned long)i;
	} else {
		goto bad;
	}
	if (m & 07000) {
		confval_problem(&p->cv, kp,
		                "setuid, setgid and sticky bits are not allowed");
		return -1;
	}
	if (file && (m & 0222)) {
		confval_problem(&p->cv, kp,
		                "must not include write bits: the mount is read-only");
		return -1;
	}
	*out = (mode_t)m;
	return 0;
bad:
	confval_problem(&p->cv, kp, "must be an octal mode like \"0400\"");
	return -1;
}

static int parse_bool(struct parser *p, const json_t *v, const char *kp, bool *out)
{
	if (!json_is_boolean(v)) {
		confval_problem(&p->cv, kp, "must be true or false");
		return -1;
	}
	*out = json_is_true(v);
	return 0;
}

/* --- names -------------------------------------------------------------- */

const char *config_name_problem(const char *name)
{
	size_t total = strnlen(name, CONFIG_MAX_NAME + 1);
	const char *seg = name;

	if (total == 0)
		return "empty name";
	for (size_t i = 0; i < total; i++)
		if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
			return "control character";
	if (total > CONFIG_MAX_NAME)
		return "longer than 1024 bytes";
	if (name[0] == '/')
		return "absolute path";
	for (;;) {
		const char *end = strchr(seg, '/');
		size_t n = end ? (size_t)(end - seg) : strlen(seg);

		if (n == 0)
			return end ? "empty path segment" : "trailing slash";
		if (n == 1 && seg[0] == '.')
			return "path segment \".\"";
		if (n == 2 && seg[0] == '.' && seg[1] == '.')
			return "path segment \"..\"";
		if (n > CONFIG_MAX_SEGMENT)
			return "path segment longer than 255 bytes";
		if (!end)
			return NULL;
		seg = end + 1;
	}
}

static bool backend_name_ok(const char *name)
{
	if (!*name)
		return false;
	for (const char *c = name; *c; c++)
		if (!((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') ||
		      is_digit(*c) || *c == '_' || *c == '.' || *c == '-'))
			return false;
	return true;
}

/* --- sections ----------------------------------------------------------- */

static void parse_mount(struct parser *p, const json_t *obj)
{
	struct config_mount *m = &p->cfg->mount;
	const char *kp = "mount", *s;
	char ckp[CONFVAL_KP_MAX];
	json_t *v;

	if (!json_is_object(obj)) {
		confval_problem(&p->cv, kp, "must be an object");
		return;
	}
	confval_check_keys(&p->cv, obj, kp, mount_keys, NULL);
	if (confval_get_str(&p->cv, obj, kp, "path", true, CONFVAL_MAX_STR, &s) == 1)
		m->path = confval_dup(&p->cv, s);
	if (confval_get_str(&p->cv, obj, kp, "type", false, 64, &s) == 1) {
		if (strcmp(s, "fuse") == 0)
			m->type = MOUNT_FUSE;
		else if (strcmp(s, "directory") == 0)
			m->type = MOUNT_DIRECTORY;
		else
			confval_problem(&p->cv, "mount.type",
			                "must be \"fuse\" or \"directory\"");
	}
	if ((v = json_object_get(obj, "uid")))
		parse_id(p, v, "mount.uid", &m->uid);
	if ((v = json_object_get(obj, "gid")))
		parse_id(p, v, "mount.gid", &m->gid);
	if ((v = json_object_get(obj, "mode")))
		parse_mode(p, v, "mount.mode", true, &m->mode);
	if ((v = json_object_get(obj, "dir_mode")))
		parse_mode(p, v, "mount.dir_mode", false, &m->dir_mode);
	if ((v = json_object_get(obj, "allow_other")))
		parse_bool(p, v, confval_keypath(ckp, kp, "allow_other"),
		           &m->allow_other);
	if ((v = json_object_get(obj, "keep_on_exit")))
		parse_bool(p, v, confval_keypath(ckp, kp, "keep_on_exit"),
		           &m->keep_on_exit);
	if ((v = json_object_get(obj, "fast_open")))
		parse_bool(p, v, confval_keypath(ckp, kp, "fast_open"), &m->fast_open);
	if (m->type == MOUNT_DIRECTORY) {
		if (json_object_get(obj, "fast_open"))
			confval_problem(
			    &p->cv, "mount.fast_open",
			    "only for \"type\": \"fuse\" (a directory's files "
			    "are opened by the kernel anyway)");
		if (json_object_get(obj, "allow_other"))
			confval_problem(
			    &p->cv, "mount.allow_other",
			    "only for \"type\": \"fuse\" (a directory's files are "
			    "governed by their modes and owners)");
		if (m->path && strncmp(m->path, "/dev/fd/", 8) == 0)
			confval_problem(
			    &p->cv, "mount.path",
			    "a /dev/fd/N descriptor is only for \"type\": \"fuse\"");
	} else if (json_object_get(obj, "keep_on_exit")) {
		confval_problem(&p->cv, "mount.keep_on_exit",
		                "only for \"type\": \"directory\"");
	}
}

static void parse_log(struct parser *p, const json_t *obj)
{
	enum log_level level;
	const char *s;

	if (!json_is_object(obj)) {
		confval_problem(&p->cv, "log", "must be an object");
		return;
	}
	confval_check_keys(&p->cv, obj, "log", log_keys, NULL);
	if (confval_get_str(&p->cv, obj, "log", "level", false, 64, &s) == 1) {
		if (log_level_parse(s, &level) == 0)
			p->cfg->log.level = (int)level;
		else
			confval_problem(&p->cv, "log.level",
			                "must be one of " LOG_LEVEL_CHOICES);
	}
	if (confval_get_str(&p->cv, obj, "log", "format", false, 64, &s) == 1 &&
	    log_format_parse(s, &p->cfg->log.json) < 0)
		confval_problem(&p->cv, "log.format", "must be " LOG_FORMAT_CHOICES);
}

static void parse_hardening(struct parser *p, const json_t *obj)
{
	json_t *v;

	if (!json_is_object(obj)) {
		confval_problem(&p->cv, "hardening", "must be an object");
		return;
	}
	confval_check_keys(&p->cv, obj, "hardening", hardening_keys, NULL);
	if ((v = json_object_get(obj, "seccomp")))
		parse_bool(p, v, "hardening.seccomp", &p->cfg->hardening.seccomp);
	if ((v = json_object_get(obj, "landlock")))
		parse_bool(p, v, "hardening.landlock", &p->cfg->hardening.landlock);
}

/* One count of "limits": an integer in [1, max]. */
static void parse_limit(struct parser *p, const json_t *obj, const char *key, size_t max,
                        size_t *out)
{
	char buf[CONFVAL_KP_MAX];
	json_t *v = json_object_get(obj, key);

	if (!v)
		return;
	if (!json_is_integer(v) || json_integer_value(v) < 1 ||
	    (json_int_t)max < json_integer_value(v))
		confval_problem(&p->cv, confval_keypath(buf, "limits", key),
		                "must be an integer from 1 to %zu", max);
	else
		*out = (size_t)json_integer_value(v);
}

static void parse_limits(struct parser *p, const json_t *obj)
{
	if (!json_is_object(obj)) {
		confval_problem(&p->cv, "limits", "must be an object");
		return;
	}
	confval_check_keys(&p->cv, obj, "limits", limits_keys, NULL);
	parse_limit(p, obj, "max_files", CONFIG_MAX_MAX_FILES, &p->cfg->limits.max_files);
	parse_limit(p, obj, "max_open_handles", CONFIG_MAX_MAX_OPEN_HANDLES,
	            &p->cfg->limits.max_open_handles);
}

static void parse_backends(struct parser *p, const json_t *obj)
{
	struct config *cfg = p->cfg;
	char kp[CONFVAL_KP_MAX], tkp[CONFVAL_KP_MAX], q[CONFVAL_QUOTE_BUF];
	const char *name, *type;
	size_t n;
	json_t *v;

	if (!json_is_object(obj)) {
		confval_problem(&p->cv, "backends", "must be an object");
		return;
	}
	n = json_object_size(obj);
	if (n == 0) {
		confval_problem(&p->cv, "backends", "must define at least one backend");
		return;
	}
	if (n > CONFIG_MAX_BACKENDS) {
		confval_problem(&p->cv, "backends", "too many backends (at most %d)",
		                CONFIG_MAX_BACKENDS);
		return;
	}
	cfg->backends = calloc(n, sizeof *cfg->backends);
	if (!cfg->backends) {
		p->cv.oom = true;
		return;
	}
	/* Only a usable section is a reference for the secrets' "backend". */
	p->backends = obj;
	json_object_foreach((json_t *)obj, name, v)
	{
		const struct backend_ops *ops;
		struct config_backend *be;
		bool name_ok = backend_name_ok(name);
		size_t before;

		if (strnlen(name, CONFIG_MAX_BACKEND_NAME + 1) >
		    CONFIG_MAX_BACKEND_NAME) {
			/* Too long for a secret's "backend" to name it. */
			confval_problem(
			    &p->cv, "backends", "backend name %s is longer than %d bytes",
			    confval_quote(q, sizeof q, name), CONFIG_MAX_BACKEND_NAME);
			continue;
		}
		diag_keypath(kp, sizeof kp, "backends", name);
		if (!name_ok)
			confval_problem(
			    &p->cv, kp,
			    "backend names must be non-empty and use only letters, "
			    "digits, '_', '.' and '-'");
		if (!json_is_object(v)) {
			confval_problem(&p->cv, kp, "must be an object");
			continue;
		}
		if (confval_get_str(&p->cv, v, kp, "type", true, 64, &type) != 1)
			continue;
		ops = backend_find(type);
		if (!ops) {
			confval_problem(&p->cv, confval_keypath(tkp, kp, "type"),
			                "unknown backend type %s (known: %s)",
			                confval_quote(q, sizeof q, type),
			                backend_type_names());
			continue;
		}
		before = diag_problems(p->cv.d);
		if (ops->check(v, kp, p->cv.d) != 0 || diag_problems(p->cv.d) != before)
			p->cv.errors++;
		if (!name_ok)
			continue;
		be = &cfg->backends[cfg->nbackends++];
		be->name = confval_dup(&p->cv, name);
		be->type = confval_dup(&p->cv, type);
		be->json = json_incref(v);
	}
}

/*
 * Whether some registered backend type accepts key for its secrets. Used
 * when a secret's own backend is unknown, so that a typo is still reported
 * in the same pass while a backend-specific key is not.
 */
static bool any_backend_key(const char *key)
{
	const struct backend_ops *ops;

	for (size_t i = 0; (ops = backend_nth(i)); i++)
		if (confval_in_list(ops->secret_keys, key))
			return true;
	return false;
}

/* The backend's checks of a secret's (or a secret call's) backend keys. */
static void check_backend_keys(struct parser *p, const struct backend_ops *ops,
                               const struct config_secret *s, const json_t *extra,
                               const char *kp)
{
	size_t before;
	const char *str;

	if (ops->check_secret) {
		before = diag_problems(p->cv.d);
		if (ops->check_secret(extra, kp, p->cv.d) != 0 ||
		    diag_problems(p->cv.d) != before)
			p->cv.errors++;
	}
	/* A refresh on a write that issues a new value each time (a PKI
	 * certificate) is honoured, but rarely what the user wants. */
	if (ops->issues_on_read && s->refresh_ms && (str = ops->issues_on_read(extra))) {
		bool whole = s->refresh_ms % 1000 == 0;
		diag_note(
		    p->cv.d, kp,
		    "its %s is re-issued every %llu %s (\"refresh\"); without "
		    "\"refresh\" it is issued once and replaced only as its own "
		    "validity ends",
		    str,
		    (unsigned long long)(whole ? s->refresh_ms / 1000 : s->refresh_ms),
		    whole ? "s" : "ms");
	}
}

/* The keys that say what of a single source's value a file holds: path,
 * field, format, template, decode. */
static void parse_value_keys(struct parser *p, const json_t *obj, const char *kp,
                             struct config_secret *s)
{
	char ckp[CONFVAL_KP_MAX], list[512];
	bool format_ok = true;
	const char *str;
	int takes;
	json_t *v, *tv;

	if ((v = json_object_get(obj, "template_file")))
		confval_problem(&p->cv, confval_keypath(ckp, kp, "template_file"),
		                "is only valid with format \"consul-template\"");
	if (confval_get_str(&p->cv, obj, kp, "path", true, CONFVAL_MAX_STR, &str) == 1)
		s->path = confval_dup(&p->cv, str);
	if (confval_get_str(&p->cv, obj, kp, "field", false, CONFVAL_MAX_STR, &str) == 1)
		s->field = confval_dup(&p->cv, str);

	s->format = RENDER_RAW;
	if ((v = json_object_get(obj, "format"))) {
		format_ok = false;
		if (confval_get_str(&p->cv, obj, kp, "format", false, 64, &str) == 1) {
			format_ok = render_format_parse(str, &s->format) == 0;
			if (!format_ok)
				confval_problem(&p->cv,
				                confval_keypath(ckp, kp, "format"),
				                "must be one of %s",
				                render_format_names(list, sizeof list));
		}
	}

	/* Which keys a format needs or refuses is the renderer's to say. */
	tv = json_object_get(obj, "template");
	takes = format_ok ? render_format_takes(s->format, "template") : 0;
	if (takes > 0 && !tv)
		confval_problem(&p->cv, kp,
		                "missing required key \"template\" (format is \"%s\")",
		                render_format_name(s->format));
	else if (takes < 0 && tv)
		confval_problem(&p->cv, confval_keypath(ckp, kp, "template"),
		                "is only valid with format %s",
		                render_formats_taking("template", list, sizeof list));
	else if (tv && confval_get_str(&p->cv, obj, kp, "template", false, RENDER_MAX_LEN,
	                               &str) == 1) {
		s->template_text = confval_dup(&p->cv, str);
		/* The renderer's own parser: --check refuses what it cannot render. */
		if (format_ok &&
		    render_template_check(str, confval_keypath(ckp, kp, "template"),
		                          p->cv.d) < 0)
			p->cv.errors++; /* reported by the renderer's check */
	}

	if ((v = json_object_get(obj, "decode"))) {
		const char *dkp = confval_keypath(ckp, kp, "decode");

		if (!json_is_string(v) || strcmp(json_string_value(v), "base64") != 0)
			confval_problem(&p->cv, dkp, "must be \"base64\"");
		else if (format_ok && render_format_takes(s->format, "decode") < 0)
			confval_problem(
			    &p->cv, dkp, "is only valid with format %s",
			    render_formats_taking("decode", list, sizeof list));
		else
			s->decode_base64 = true;
	}
}

/* Whether obj is a "format": "consul-template" file. */
static bool is_consul_template(const json_t *obj)
{
	const char *f = json_string_value(json_object_get(obj, "format"));
	enum render_format rf;

	return f && render_format_parse(f, &rf) == 0 && rf == RENDER_CONSUL_TEMPLATE;
}

/* The backend of a consul-template file that names none: the only Vault
 * backend. NULL (reported) when there is none or more than one. */
static const char *only_vault_backend(struct parser *p, const char *kp)
{
	const char *found = NULL;
	size_t n = 0;

	if (!p->backends)
		return NULL; /* reported with the backends section */
	for (size_t i = 0; i < p->cfg->nbackends; i++) {
		if (strcmp(p->cfg->backends[i].type, "vault") != 0)
			continue;
		found = p->cfg->backends[i].name;
		n++;
	}
	if (n == 0)
		confval_problem(&p->cv, kp,
		                "format \"consul-template\" reads Vault, but no backend "
		                "is of type vault");
	else if (n > 1)
		confval_problem(&p->cv, kp,
		                "missing \"backend\": name one of the %zu vault backends",
		                n);
	if (n != 1)
		return NULL;
	return found;
}

/* A consul-template file: its template names the paths, so the keys that
 * say which value a file takes are refused; its backend must be Vault. */
static void parse_consul_template(struct parser *p, const json_t *obj, const char *kp,
                                  struct config_secret *s, const struct backend_ops *ops)
{
	char ckp[CONFVAL_KP_MAX];

	s->format = RENDER_CONSUL_TEMPLATE;
	for (const char *const *k = config_ctmpl_refused_keys; *k; k++)
		if (json_object_get(obj, *k))
			confval_problem(
			    &p->cv, confval_keypath(ckp, kp, *k),
			    "is not used with format \"consul-template\": the "
			    "template names its secrets ({{ with secret "
			    "\"path\" \"key=value\" }})");
	if (ops && strcmp(ops->type, "vault") != 0)
		confval_problem(&p->cv, confval_keypath(ckp, kp, "backend"),
		                "format \"consul-template\" reads Vault: backend "
		                "\"%s\" is of type %s",
		                s->backend, ops->type);
	config_ctmpl_parse(&p->cv, obj, kp, p->cfg->file, s);
}

static void parse_secret(struct parser *p, const char *name, const json_t *obj,
                         const char *kp, struct config_secret *s)
{
	const struct backend_ops *ops = NULL;
	char ckp[CONFVAL_KP_MAX], q[CONFVAL_QUOTE_BUF], list[512];
	const char *key, *str;
	bool ctmpl;
	json_t *v;

	s->name = confval_dup(&p->cv, name);
	s->extra = json_object();
	if (!s->extra) {
		p->cv.oom = true;
		return;
	}

	ctmpl = is_consul_template(obj);
	if (ctmpl && !json_object_get(obj, "backend")) {
		if ((str = only_vault_backend(p, kp)))
			s->backend = confval_dup(&p->cv, str);
		if (str)
			ops = backend_find("vault");
	} else if (confval_get_str(&p->cv, obj, kp, "backend", true,
	                           CONFIG_MAX_BACKEND_NAME, &str) == 1) {
		s->backend = confval_dup(&p->cv, str);
		/* Without a valid backends section every reference would be
		 * reported again; that problem is reported once already. */
		if (p->backends && !json_object_get(p->backends, str)) {
			confval_problem(&p->cv, confval_keypath(ckp, kp, "backend"),
			                "backend %s is not defined in backends",
			                confval_quote(q, sizeof q, str));
		} else if (p->backends) {
			const struct config_backend *be =
			    config_backend_find(p->cfg, str);

			if (be)
				ops = backend_find(be->type);
		}
	}

	json_object_foreach((json_t *)obj, key, v)
	{
		if (confval_in_list(secret_keys, key))
			continue;
		if (ops && confval_in_list(ops->secret_keys, key)) {
			if (json_object_set(s->extra, key, v) != 0)
				p->cv.oom = true;
			continue;
		}
		if (!ops && any_backend_key(key))
			continue;
		confval_problem(&p->cv, confval_keypath(ckp, kp, key),
		                "unknown key %s (secrets take: %s)",
		                confval_quote(q, sizeof q, key),
		                confval_join(list, sizeof list, secret_keys,
		                             ops ? ops->secret_keys : no_keys));
	}
	if (json_object_size(s->extra) == 0 &&
	    (p->no_extra || (p->no_extra = json_object()))) {
		json_decref(s->extra);
		s->extra = json_incref(p->no_extra);
	}

	if (ctmpl)
		parse_consul_template(p, obj, kp, s, ops);
	else
		parse_value_keys(p, obj, kp, s);

	if ((v = json_object_get(obj, "refresh"))) {
		const char *rkp = confval_keypath(ckp, kp, "refresh");

		if (confval_duration(&p->cv, v, rkp, &s->refresh_ms) == 0 &&
		    s->refresh_ms == 0)
			confval_problem(&p->cv, rkp, "must be greater than zero");
	}
	if ((v = json_object_get(obj, "mode")))
		s->has_mode = parse_mode(p, v, confval_keypath(ckp, kp, "mode"), true,
		                         &s->mode) == 0;
	if ((v = json_object_get(obj, "uid")))
		s->has_uid =
		    parse_id(p, v, confval_keypath(ckp, kp, "uid"), &s->uid) == 0;
	if ((v = json_object_get(obj, "gid")))
		s->has_gid =
		    parse_id(p, v, confval_keypath(ckp, kp, "gid"), &s->gid) == 0;
	if ((v = json_object_get(obj, "on_change")))
		onchange_parse(&p->cv, v, confval_keypath(ckp, kp, "on_change"),
		               &s->on_change);

	if (!ops)
		return;
	if (!ctmpl)
		check_backend_keys(p, ops, s, s->extra, kp);
	for (size_t i = 0; i < s->ncalls; i++)
		check_backend_keys(p, ops, s, s->calls[i].extra,
		                   confval_keypath(ckp, kp, "template"));
}

/* Moves the secret's name, backend, path and field (those set) into one
 * block that starts with the name: with 10 000 secrets, an allocation
 * each costs 64 B more a secret (allocator headers and minimum sizes).
 * Out of memory, they stay as they are. */
static void pack_strings(struct config_secret *s)
{
	char **strs[] = {&s->name, &s->backend, &s->path, &s->field};
	size_t total = 0, len;
	char *block, *at;

	if (!s->name)
		return;
	for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
		total += *strs[i] ? strlen(*strs[i]) + 1 : 0;
	block = at = malloc(total);
	if (!block)
		return;
	for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
		if (!*strs[i])
			continue;
		len = strlen(*strs[i]) + 1;
		memcpy(at, *strs[i], len);
		free(*strs[i]);
		*strs[i] = at;
		at += len;
	}
	s->packed = true;
}

/*
 * Reports each secret that is also a directory of another ("db" and
 * "db/password"), once per such secret.
 */
static void check_clashes(struct parser *p, const json_t *secrets)
{
	char prefix[CONFIG_MAX_NAME + 1], kp[CONFVAL_KP_MAX], q1[CONFVAL_QUOTE_BUF],
	    q2[CONFVAL_QUOTE_BUF];
	json_t *reported = json_object(), *v;
	const char *name;

	if (!reported) {
		p->cv.oom = true;
		return;
	}
	json_object_foreach((json_t *)secrets, name, v)
	{
		if (config_name_problem(name))
			continue;
		for (const char *c = strchr(name, '/'); c; c = strchr(c + 1, '/')) {
			size_t n = (size_t)(c - name);

			if (!json_object_getn(secrets, name, n) ||
			    json_object_getn(reported, name, n))
				continue;
			memcpy(prefix, name, n);
			prefix[n] = '\0';
			confval_problem(&p->cv,
			                diag_keypath(kp, sizeof kp, "secrets", prefix),
			                "%s is a file but %s needs it to be a directory",
			                confval_quote(q1, sizeof q1, prefix),
			                confval_quote(q2, sizeof q2, name));
			if (json_object_setn_new(reported, name, n, json_true()) != 0)
				p->cv.oom = true;
		}
	}
	json_decref(reported);
}

static void parse_secrets(struct parser *p, const json_t *obj)
{
	struct config *cfg = p->cfg;
	char kp[CONFVAL_KP_MAX], q[CONFVAL_QUOTE_BUF];
	const char *name, *why;
	size_t n;
	json_t *v;

	if (!json_is_object(obj)) {
		confval_problem(&p->cv, "secrets", "must be an object");
		return;
	}
	n = json_object_size(obj);
	if (n == 0) {
		confval_problem(&p->cv, "secrets", "must define at least one secret");
		return;
	}
	if (n > cfg->limits.max_files) {
		confval_problem(&p->cv, "secrets",
		                "too many secrets: %zu, at most %zu (limits.max_files)",
		                n, cfg->limits.max_files);
		return;
	}
	cfg->secrets = calloc(n, sizeof *cfg->secrets);
	if (!cfg->secrets) {
		p->cv.oom = true;
		return;
	}
	json_object_foreach((json_t *)obj, name, v)
	{
		if (strnlen(name, CONFIG_MAX_NAME + 1) > CONFIG_MAX_NAME) {
			/* Named by its start: its key path would not fit a
			 * message, nor would those of its keys. */
			confval_problem(&p->cv, "secrets", "%s is not allowed: %s",
			                confval_quote(q, sizeof q, name),
			                config_name_problem(name));
			continue;
		}
		diag_keypath(kp, sizeof kp, "secrets", name);
		if ((why = config_name_problem(name)))
			confval_problem(&p->cv, kp, "%s is not allowed: %s",
			                confval_quote(q, sizeof q, name), why);
		else if (cfg->mount.type == MOUNT_DIRECTORY &&
		         strncmp(name, "..", 2) == 0)
			confval_problem(
			    &p->cv, kp,
			    "%s is not allowed: names beginning with \"..\" are "
			    "reserved in a directory mount (..data, generations)",
			    confval_quote(q, sizeof q, name));
		if (!json_is_object(v)) {
			confval_problem(&p->cv, kp, "must be an object");
			continue;
		}
		parse_secret(p, name, v, kp, &cfg->secrets[cfg->nsecrets]);
		pack_strings(&cfg->secrets[cfg->nsecrets++]);
	}
	check_clashes(p, obj);
}

static void parse_root(struct parser *p, const json_t *root)
{
	json_t *v;

	if (!json_is_object(root)) {
		confval_problem(&p->cv, NULL, "the top level must be a JSON object");
		return;
	}
	confval_check_keys(&p->cv, root, NULL, top_keys, NULL);
	if ((v = json_object_get(root, "limits")))
		parse_limits(p, v); /* before the secrets it bounds */
	if ((v = confval_get(&p->cv, root, NULL, "mount", true)))
		parse_mount(p, v);
	if ((v = confval_get(&p->cv, root, NULL, "backends", true)))
		parse_backends(p, v);
	if ((v = confval_get(&p->cv, root, NULL, "secrets", true)))
		parse_secrets(p, v);
	if ((v = json_object_get(root, "log")))
		parse_log(p, v);
	if ((v = json_object_get(root, "hardening")))
		parse_hardening(p, v);
	if ((v = json_object_get(root, "startup_timeout")))
		confval_duration(&p->cv, v, "startup_timeout",
		                 &p->cfg->startup_timeout_ms);
	if ((v = json_object_get(root, "shutdown_timeout")))
		confval_duration(&p->cv, v, "shutdown_timeout",
		                 &p->cfg->shutdown_timeout_ms);
	if ((v = json_object_get(root, "audit")) &&
	    audit_config_parse(v, "audit", p->cfg->mount.type == MOUNT_DIRECTORY, p->cv.d,
	                       &p->cfg->audit) < 0)
		p->cv.errors++;
	if (v && p->cfg->mount.fast_open)
		confval_problem(&p->cv, "mount.fast_open",
		                "cannot be used with \"audit\": the audit records each "
		                "open, and with fast_open the kernel opens files without "
		                "asking secretfs (remove mount.fast_open or audit)");
	if ((v = json_object_get(root, "telemetry")) &&
	    telemetry_config_parse(v, "telemetry", p->cv.d, &p->cfg->telemetry) < 0)
		p->cv.errors++;
	if ((v = json_object_get(root, "aws_api")) &&
	    aws_api_config_parse(v, "aws_api", p->cfg, p->cv.d, &p->cfg->aws_api) < 0)
		p->cv.errors++;
}

/* --- entry points ------------------------------------------------------- */

/*
 * Reports a jansson parse error. jansson quotes the token it stopped at,
 * which may be a secret pasted in the wrong place: keep it only when it is
 * a key (duplicate keys) or a single punctuation character.
 */
static void report_json_error(struct diag *d, const json_error_t *e)
{
	char text[JSON_ERROR_TEXT_LENGTH];
	char *near;

	snprintf(text, sizeof text, "%s", e->text);
	near = strstr(text, " near '");
	if (near && strncmp(text, "duplicate object key", 20) != 0) {
		size_t toklen = strlen(near + 7);

		if (!(toklen == 2 && near[8] == '\''))
			*near = '\0';
	}
	diag_add(d, NULL, "line %d, column %d: %s", e->line, e->column, text);
}

static int config_parse_buf(const char *text, size_t len, const char *name,
                            struct diag *d, struct config **out)
{
	struct parser p = {.cv.d = d};
	const char *saved_file = d->file;
	json_error_t jerr;
	json_t *root;
	int rc;

	if (!d->file)
		d->file = name;
	root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		report_json_error(d, &jerr);
		rc = SFS_EINVAL;
		goto out;
	}
	p.cfg = calloc(1, sizeof *p.cfg);
	if (!p.cfg) {
		rc = SFS_ENOMEM;
		goto out;
	}
	p.cfg->file = name ? confval_dup(&p.cv, name) : NULL;
	p.cfg->mount.type = MOUNT_FUSE;
	p.cfg->mount.uid = geteuid();
	p.cfg->mount.gid = getegid();
	p.cfg->mount.mode = 0400;
	p.cfg->mount.dir_mode = 0555;
	p.cfg->log.level = LOG_LVL_INFO;
	p.cfg->startup_timeout_ms = DEFAULT_STARTUP_TIMEOUT_MS;
	p.cfg->shutdown_timeout_ms = DEFAULT_SHUTDOWN_TIMEOUT_MS;
	p.cfg->hardening.seccomp = p.cfg->hardening.landlock = true;
	p.cfg->limits =
	    (struct config_limits){.max_files = CONFIG_DEFAULT_MAX_FILES,
	                           .max_open_handles = CONFIG_DEFAULT_MAX_OPEN_HANDLES};
	parse_root(&p, root);
	if (p.cv.oom) {
		diag_add(d, NULL, "out of memory while reading the configuration");
		rc = SFS_ENOMEM;
	} else if (p.cv.errors) {
		rc = SFS_EINVAL;
	} else {
		*out = p.cfg;
		p.cfg = NULL;
		rc = 0;
	}
out:
	config_free(p.cfg);
	json_decref(p.no_extra);
	json_decref(root);
	d->file = saved_file;
	return rc;
}

int config_parse(const char *text, const char *name, struct diag *d, struct config **out)
{
	return config_parse_buf(text, strlen(text), name, d, out);
}

int config_parse_text(const char *text, size_t len, const char *name, struct diag *d,
                      struct config **out)
{
	return config_parse_buf(text, len, name, d, out);
}

int config_read(const char *path, struct diag *d, unsigned char **text, size_t *len)
{
	const char *saved_file = d->file;
	int rc;

	if (!d->file)
		d->file = path;
	/* To the end of the file, never past the cap: st_size may lie
	 * (pipes, /proc). */
	rc = readfile(path, CONFIG_MAX_FILE, 0, &readfile_heap, text, len);
	if (rc == SFS_ETOOBIG) {
		diag_add(d, NULL, "cannot read: the file is larger than %u MiB",
		         CONFIG_MAX_FILE / (1024 * 1024));
		rc = SFS_EINVAL;
	} else if (rc < 0 && rc != SFS_ENOMEM) {
		diag_add(d, NULL, "cannot read: %s", strerror(errno));
		rc = SFS_EIO;
	}
	d->file = saved_file;
	return rc;
}

int config_load(const char *path, struct diag *d, struct config **out)
{
	const char *saved_file = d->file;
	unsigned char *buf = NULL;
	size_t len = 0;
	int rc;

	rc = config_read(path, d, &buf, &len);
	if (rc == 0) {
		if (!d->file)
			d->file = path;
		rc = config_parse_buf((const char *)buf, len, path, d, out);
		d->file = saved_file;
	}
	free(buf);
	return rc;
}

static void secret_release(struct config_secret *s)
{
	free(s->name); /* packed: the block of all four */
	if (!s->packed) {
		free(s->backend);
		free(s->path);
		free(s->field);
	}
	free(s->template_text);
	free(s->template_file);
	config_ctmpl_release(s);
	onchange_config_free(s->on_change);
	json_decref(s->extra);
}

void config_free(struct config *cfg)
{
	if (!cfg)
		return;
	free(cfg->file);
	free(cfg->mount.path);
	for (size_t i = 0; i < cfg->nbackends; i++) {
		free(cfg->backends[i].name);
		free(cfg->backends[i].type);
		json_decref(cfg->backends[i].json);
	}
	free(cfg->backends);
	for (size_t i = 0; i < cfg->nsecrets; i++)
		secret_release(&cfg->secrets[i]);
	free(cfg->secrets);
	audit_config_free(cfg->audit);
	telemetry_config_free(cfg->telemetry);
	aws_api_config_free(cfg->aws_api);
	free(cfg);
}

const struct config_backend *config_backend_find(const struct config *cfg,
                                                 const char *name)
{
	for (size_t i = 0; i < cfg->nbackends; i++)
		if (cfg->backends[i].name && strcmp(cfg->backends[i].name, name) == 0)
			return &cfg->backends[i];
	return NULL;
}
