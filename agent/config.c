/*
 * The configuration loader: reads the JSON document described in DESIGN.md
 * section 1, checks every key of it in one pass and builds a struct config.
 * Nothing is applied here: the caller gets a complete, valid config or none,
 * and one diag message per problem (file, key path, why).
 *
 * Backend objects and backend-specific per-secret keys are validated by the
 * backend named in their "type" (backend.h); the common keys are checked here.
 *
 * Messages name keys, backend names, types, durations and mount paths; they
 * never echo values that could be secret (template text, command arguments,
 * tokens in a malformed document).
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "secretfs/backend.h"
#include "secretfs/config.h"
#include "secretfs/duration.h"
#include "secretfs/error.h"
#include "secretfs/log.h"
#include "telemetry.h"

#define CONFIG_MAX_FILE (4u * 1024 * 1024) /* bytes of config text */
#define CONFIG_MAX_BACKENDS 256
#define CONFIG_MAX_SECRETS 4096
#define DEFAULT_SHUTDOWN_TIMEOUT_MS 5000
#define CONFIG_MAX_ARGS 256
#define CONFIG_MAX_STR 4096 /* paths, fields, pid files, arguments */
#define CONFIG_MAX_NAME 1024
#define CONFIG_MAX_SEGMENT 255
#define CONFIG_MAX_ID 4294967294u /* (uid_t)-1 means "unchanged" to chown */
#define CONFIG_MAX_MODE 07777
#define DEFAULT_STARTUP_TIMEOUT_MS 30000
#define DEFAULT_DEBOUNCE_MS 1000
#define KP_MAX 2048  /* key paths: a full secret name, escaped, plus a key */
#define QUOTE_MAX 80 /* bytes of a user string echoed in a message */

struct parser {
	struct diag *d;
	struct config *cfg;
	const json_t *backends; /* the "backends" object, when it is one */
	unsigned errors;
	bool oom;
};

static const char *const top_keys[] = {
    "mount",           "backends",         "secrets",   "log",
    "startup_timeout", "shutdown_timeout", "telemetry", NULL};
static const char *const mount_keys[] = {"path",        "type",         "uid",
                                         "gid",         "mode",         "dir_mode",
                                         "allow_other", "keep_on_exit", NULL};
static const char *const log_keys[] = {"level", "format", NULL};
static const char *const secret_keys[] = {"backend",  "path",   "field",     "format",
                                          "template", "decode", "refresh",   "mode",
                                          "uid",      "gid",    "on_change", NULL};
static const char *const onchange_keys[] = {"signal", "pid_file", "command", "debounce",
                                            NULL};
static const char *const no_keys[] = {NULL};

static const struct {
	const char *name;
	int number;
} signal_names[] = {
    {"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT}, {"USR1", SIGUSR1},
    {"USR2", SIGUSR2}, {"TERM", SIGTERM}, {"ALRM", SIGALRM}, {"WINCH", SIGWINCH},
    {"CONT", SIGCONT}, {"PIPE", SIGPIPE}, {"TTIN", SIGTTIN}, {"TTOU", SIGTTOU},
};

/* --- small helpers ------------------------------------------------------ */

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static void problem(struct parser *p, const char *kp, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void problem(struct parser *p, const char *kp, const char *fmt, ...)
{
	char reason[1024];
	va_list ap;

	va_start(ap, fmt);
	if (vsnprintf(reason, sizeof reason, fmt, ap) < 0)
		reason[0] = '\0';
	va_end(ap);
	p->errors++;
	diag_add(p->d, kp, "%s", reason);
}

static char *dup_str(struct parser *p, const char *s)
{
	char *c = strdup(s);

	if (!c)
		p->oom = true;
	return c;
}

/*
 * Writes s into buf as a double-quoted string with quotes, backslashes and
 * control characters escaped, cut after QUOTE_MAX bytes. Returns buf.
 */
static const char *quote(char *buf, size_t len, const char *s)
{
	size_t pos = 0, n = 0;

	if (len < 8)
		return "\"\"";
	buf[pos++] = '"';
	for (const unsigned char *c = (const unsigned char *)s; *c; c++, n++) {
		if (n == QUOTE_MAX || pos + 8 >= len) {
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

static bool in_list(const char *const *list, const char *key)
{
	for (; list && *list; list++)
		if (strcmp(*list, key) == 0)
			return true;
	return false;
}

/* Joins the names of a and b (either may be NULL) with ", " into buf. */
static const char *join(char *buf, size_t len, const char *const *a, const char *const *b)
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

/* Reports every key of obj missing from allowed (and from extra). */
static void check_keys(struct parser *p, const json_t *obj, const char *kp,
                       const char *const *allowed, const char *const *extra)
{
	char ckp[KP_MAX], q[QUOTE_MAX * 4 + 8], list[512];
	const char *key;
	json_t *v;

	json_object_foreach((json_t *)obj, key, v)
	{
		if (in_list(allowed, key) || in_list(extra, key))
			continue;
		problem(p, diag_keypath(ckp, sizeof ckp, kp, key),
		        "unknown key %s (%s takes: %s)", quote(q, sizeof q, key),
		        kp && kp[0] ? kp : "the top level",
		        join(list, sizeof list, allowed, extra));
	}
}

/* The value of key in obj; reports it when required and absent. */
static json_t *get(struct parser *p, const json_t *obj, const char *kp, const char *key,
                   bool required)
{
	json_t *v = json_object_get(obj, key);

	if (!v && required)
		problem(p, kp, "missing required key \"%s\"", key);
	return v;
}

/*
 * A non-empty string of at most maxlen bytes. Returns 1 and sets *out when
 * valid, 0 when absent, -1 when invalid (reported).
 */
static int get_str(struct parser *p, const json_t *obj, const char *kp, const char *key,
                   bool required, size_t maxlen, const char **out)
{
	char ckp[KP_MAX];
	json_t *v = get(p, obj, kp, key, required);

	if (!v)
		return 0;
	diag_keypath(ckp, sizeof ckp, kp, key);
	if (!json_is_string(v)) {
		problem(p, ckp, "must be a string");
		return -1;
	}
	if (json_string_length(v) == 0) {
		problem(p, ckp, "must not be empty");
		return -1;
	}
	if (json_string_length(v) > maxlen) {
		problem(p, ckp, "must be at most %zu bytes", maxlen);
		return -1;
	}
	*out = json_string_value(v);
	return 1;
}

/* A uid or gid: an integer from 0 to CONFIG_MAX_ID. */
static int parse_id(struct parser *p, const json_t *v, const char *kp, uint32_t *out)
{
	json_int_t i;

	if (!json_is_integer(v) || (i = json_integer_value(v)) < 0 || i > CONFIG_MAX_ID) {
		problem(p, kp, "must be an integer from 0 to %u", CONFIG_MAX_ID);
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
		problem(p, kp, "setuid, setgid and sticky bits are not allowed");
		return -1;
	}
	if (file && (m & 0222)) {
		problem(p, kp, "must not include write bits: the mount is read-only");
		return -1;
	}
	*out = (mode_t)m;
	return 0;
bad:
	problem(p, kp, "must be an octal mode like \"0400\"");
	return -1;
}

static int parse_bool(struct parser *p, const json_t *v, const char *kp, bool *out)
{
	if (!json_is_boolean(v)) {
		problem(p, kp, "must be true or false");
		return -1;
	}
	*out = json_is_true(v);
	return 0;
}

/* --- durations ---------------------------------------------------------- */

static int parse_duration(struct parser *p, const json_t *v, const char *kp,
                          uint64_t *out)
{
	char q[QUOTE_MAX * 4 + 8];
	const char *reason;

	if (json_is_string(v)) {
		reason = duration_from_string(json_string_value(v), out);
		if (reason) {
			problem(p, kp, "invalid duration %s: %s",
			        quote(q, sizeof q, json_string_value(v)), reason);
			return -1;
		}
		return 0;
	}
	if (json_is_number(v)) {
		reason = duration_from_seconds(json_number_value(v), out);
		if (reason) {
			problem(p, kp, "invalid duration: %s", reason);
			return -1;
		}
		return 0;
	}
	problem(p, kp,
	        "must be a duration: a number of seconds or a string like \"90s\"");
	return -1;
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
	char ckp[KP_MAX];
	json_t *v;

	if (!json_is_object(obj)) {
		problem(p, kp, "must be an object");
		return;
	}
	check_keys(p, obj, kp, mount_keys, NULL);
	if (get_str(p, obj, kp, "path", true, CONFIG_MAX_STR, &s) == 1)
		m->path = dup_str(p, s);
	if (get_str(p, obj, kp, "type", false, 64, &s) == 1) {
		if (strcmp(s, "fuse") == 0)
			m->type = MOUNT_FUSE;
		else if (strcmp(s, "directory") == 0)
			m->type = MOUNT_DIRECTORY;
		else
			problem(p, "mount.type", "must be \"fuse\" or \"directory\"");
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
		parse_bool(p, v, diag_keypath(ckp, sizeof ckp, kp, "allow_other"),
		           &m->allow_other);
	if ((v = json_object_get(obj, "keep_on_exit")))
		parse_bool(p, v, diag_keypath(ckp, sizeof ckp, kp, "keep_on_exit"),
		           &m->keep_on_exit);
	if (m->type == MOUNT_DIRECTORY) {
		if (json_object_get(obj, "allow_other"))
			problem(p, "mount.allow_other",
			        "only for \"type\": \"fuse\" (a directory's files are "
			        "governed by their modes and owners)");
		if (m->path && strncmp(m->path, "/dev/fd/", 8) == 0)
			problem(p, "mount.path",
			        "a /dev/fd/N descriptor is only for \"type\": \"fuse\"");
	} else if (json_object_get(obj, "keep_on_exit")) {
		problem(p, "mount.keep_on_exit", "only for \"type\": \"directory\"");
	}
}

static void parse_log(struct parser *p, const json_t *obj)
{
	enum log_level level;
	const char *s;

	if (!json_is_object(obj)) {
		problem(p, "log", "must be an object");
		return;
	}
	check_keys(p, obj, "log", log_keys, NULL);
	if (get_str(p, obj, "log", "level", false, 64, &s) == 1) {
		if (log_level_parse(s, &level) == 0)
			p->cfg->log.level = (int)level;
		else
			problem(p, "log.level", "must be one of " LOG_LEVEL_CHOICES);
	}
	if (get_str(p, obj, "log", "format", false, 64, &s) == 1 &&
	    log_format_parse(s, &p->cfg->log.json) < 0)
		problem(p, "log.format", "must be " LOG_FORMAT_CHOICES);
}

static void parse_backends(struct parser *p, const json_t *obj)
{
	struct config *cfg = p->cfg;
	char kp[KP_MAX], tkp[KP_MAX], q[QUOTE_MAX * 4 + 8];
	const char *name, *type;
	size_t n;
	json_t *v;

	if (!json_is_object(obj)) {
		problem(p, "backends", "must be an object");
		return;
	}
	n = json_object_size(obj);
	if (n == 0) {
		problem(p, "backends", "must define at least one backend");
		return;
	}
	if (n > CONFIG_MAX_BACKENDS) {
		problem(p, "backends", "too many backends (at most %d)",
		        CONFIG_MAX_BACKENDS);
		return;
	}
	cfg->backends = calloc(n, sizeof *cfg->backends);
	if (!cfg->backends) {
		p->oom = true;
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

		diag_keypath(kp, sizeof kp, "backends", name);
		if (!name_ok)
			problem(p, kp,
			        "backend names must be non-empty and use only letters, "
			        "digits, '_', '.' and '-'");
		if (!json_is_object(v)) {
			problem(p, kp, "must be an object");
			continue;
		}
		if (get_str(p, v, kp, "type", true, 64, &type) != 1)
			continue;
		ops = backend_find(type);
		if (!ops) {
			problem(p, diag_keypath(tkp, sizeof tkp, kp, "type"),
			        "unknown backend type %s (known: %s)",
			        quote(q, sizeof q, type), backend_type_names());
			continue;
		}
		before = diag_problems(p->d);
		if (ops->check(v, kp, p->d) != 0 || diag_problems(p->d) != before)
			p->errors++;
		if (!name_ok)
			continue;
		be = &cfg->backends[cfg->nbackends++];
		be->name = dup_str(p, name);
		be->type = dup_str(p, type);
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
	const char *names = backend_type_names();
	char type[64];

	while (*names) {
		size_t n = strcspn(names, ", ");

		if (n > 0 && n < sizeof type) {
			const struct backend_ops *ops;

			memcpy(type, names, n);
			type[n] = '\0';
			ops = backend_find(type);
			if (ops && in_list(ops->secret_keys, key))
				return true;
		}
		names += n;
		names += strspn(names, ", ");
	}
	return false;
}

static int signal_parse(const char *s)
{
	if (strncasecmp(s, "SIG", 3) == 0)
		s += 3;
	for (size_t i = 0; i < sizeof signal_names / sizeof signal_names[0]; i++)
		if (strcasecmp(s, signal_names[i].name) == 0)
			return signal_names[i].number;
	return 0;
}

static void argv_free(char **argv)
{
	for (size_t i = 0; argv && argv[i]; i++)
		free(argv[i]);
	free(argv);
}

/* An argv array; *out is set only when every element is valid. */
static void parse_command(struct parser *p, const json_t *v, const char *kp, char ***out)
{
	char ekp[KP_MAX];
	char **argv = NULL;
	size_t n = 0;
	bool ok = true;

	if (!json_is_array(v) || (n = json_array_size(v)) == 0) {
		problem(p, kp, "must be a non-empty array of strings");
		return;
	}
	if (n > CONFIG_MAX_ARGS) {
		problem(p, kp, "must have at most %d elements", CONFIG_MAX_ARGS);
		return;
	}
	argv = calloc(n + 1, sizeof *argv);
	if (!argv) {
		p->oom = true;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		const json_t *e = json_array_get(v, i);
		const char *s;

		snprintf(ekp, sizeof ekp, "%s[%zu]", kp, i);
		if (!json_is_string(e)) {
			problem(p, ekp, "must be a string");
			ok = false;
			continue;
		}
		s = json_string_value(e);
		if (json_string_length(e) == 0) {
			problem(p, ekp, "must not be empty");
			ok = false;
		} else if (json_string_length(e) > CONFIG_MAX_STR) {
			problem(p, ekp, "must be at most %d bytes", CONFIG_MAX_STR);
			ok = false;
		} else if (i == 0 && s[0] != '/' && strchr(s, '/')) {
			problem(
			    p, ekp,
			    "must be an absolute path or a command name without \"/\"");
			ok = false;
		} else if (ok) {
			argv[i] = dup_str(p, s);
			ok = argv[i] != NULL;
		}
	}
	if (ok)
		*out = argv;
	else
		argv_free(argv);
}

static void parse_onchange(struct parser *p, const json_t *obj, const char *kp,
                           struct config_secret *s)
{
	struct config_onchange *oc;
	char ckp[KP_MAX], q[QUOTE_MAX * 4 + 8];
	json_t *sig, *cmd, *pid, *v;
	const char *str;

	if (!json_is_object(obj)) {
		problem(p, kp, "must be an object");
		return;
	}
	check_keys(p, obj, kp, onchange_keys, NULL);
	oc = calloc(1, sizeof *oc);
	if (!oc) {
		p->oom = true;
		return;
	}
	s->on_change = oc;
	oc->debounce_ms = DEFAULT_DEBOUNCE_MS;
	sig = json_object_get(obj, "signal");
	cmd = json_object_get(obj, "command");
	pid = json_object_get(obj, "pid_file");
	if (sig && cmd)
		problem(p, kp, "give either \"signal\" or \"command\", not both");
	else if (!sig && !cmd)
		problem(
		    p, kp,
		    "missing required key \"signal\" (with \"pid_file\") or \"command\"");
	if (sig && get_str(p, obj, kp, "signal", false, 64, &str) == 1) {
		oc->signal = signal_parse(str);
		if (!oc->signal)
			problem(
			    p, diag_keypath(ckp, sizeof ckp, kp, "signal"),
			    "unknown signal %s (known: HUP, INT, QUIT, USR1, USR2, TERM, "
			    "ALRM, WINCH, CONT, PIPE, TTIN, TTOU)",
			    quote(q, sizeof q, str));
	}
	if (sig && !cmd && !pid)
		problem(p, kp,
		        "missing required key \"pid_file\" (needed with \"signal\")");
	if (pid && !sig)
		problem(p, diag_keypath(ckp, sizeof ckp, kp, "pid_file"),
		        "is only valid with \"signal\"");
	else if (pid && get_str(p, obj, kp, "pid_file", false, CONFIG_MAX_STR, &str) == 1)
		oc->pid_file = dup_str(p, str);
	if (cmd)
		parse_command(p, cmd, diag_keypath(ckp, sizeof ckp, kp, "command"),
		              &oc->argv);
	if ((v = json_object_get(obj, "debounce")))
		parse_duration(p, v, diag_keypath(ckp, sizeof ckp, kp, "debounce"),
		               &oc->debounce_ms);
}

static void parse_secret(struct parser *p, const char *name, const json_t *obj,
                         const char *kp, struct config_secret *s)
{
	const struct backend_ops *ops = NULL;
	char ckp[KP_MAX], q[QUOTE_MAX * 4 + 8], list[512], why[256];
	bool format_ok = true;
	const char *key, *str;
	json_t *v, *tv;
	size_t before;

	s->name = dup_str(p, name);
	s->extra = json_object();
	if (!s->extra) {
		p->oom = true;
		return;
	}

	if (get_str(p, obj, kp, "backend", true, 256, &str) == 1) {
		s->backend = dup_str(p, str);
		/* Without a valid backends section every reference would be
		 * reported again; that problem is reported once already. */
		if (p->backends && !json_object_get(p->backends, str)) {
			problem(p, diag_keypath(ckp, sizeof ckp, kp, "backend"),
			        "backend %s is not defined in backends",
			        quote(q, sizeof q, str));
		} else if (p->backends) {
			const struct config_backend *be =
			    config_backend_find(p->cfg, str);

			if (be)
				ops = backend_find(be->type);
		}
	}

	json_object_foreach((json_t *)obj, key, v)
	{
		if (in_list(secret_keys, key))
			continue;
		if (ops && in_list(ops->secret_keys, key)) {
			if (json_object_set(s->extra, key, v) != 0)
				p->oom = true;
			continue;
		}
		if (!ops && any_backend_key(key))
			continue;
		problem(p, diag_keypath(ckp, sizeof ckp, kp, key),
		        "unknown key %s (secrets take: %s)", quote(q, sizeof q, key),
		        join(list, sizeof list, secret_keys,
		             ops ? ops->secret_keys : no_keys));
	}

	if (get_str(p, obj, kp, "path", true, CONFIG_MAX_STR, &str) == 1)
		s->path = dup_str(p, str);
	if (get_str(p, obj, kp, "field", false, CONFIG_MAX_STR, &str) == 1)
		s->field = dup_str(p, str);

	s->format = RENDER_RAW;
	if ((v = json_object_get(obj, "format"))) {
		format_ok = false;
		if (get_str(p, obj, kp, "format", false, 64, &str) == 1) {
			format_ok = render_format_parse(str, &s->format) == 0;
			if (!format_ok)
				problem(p, diag_keypath(ckp, sizeof ckp, kp, "format"),
				        "must be one of %s",
				        render_format_names(list, sizeof list));
		}
	}

	tv = json_object_get(obj, "template");
	if (format_ok && s->format == RENDER_TEMPLATE && !tv)
		problem(p, kp,
		        "missing required key \"template\" (format is \"template\")");
	else if (format_ok && s->format != RENDER_TEMPLATE && tv)
		problem(p, diag_keypath(ckp, sizeof ckp, kp, "template"),
		        "is only valid with format \"template\"");
	else if (tv &&
	         get_str(p, obj, kp, "template", false, RENDER_MAX_LEN, &str) == 1) {
		s->template_text = dup_str(p, str);
		/* The renderer's own parser: --check refuses what it cannot render. */
		if (format_ok && render_template_check(str, why, sizeof why) < 0)
			problem(p, diag_keypath(ckp, sizeof ckp, kp, "template"), "%s",
			        why);
	}

	if ((v = json_object_get(obj, "decode"))) {
		diag_keypath(ckp, sizeof ckp, kp, "decode");
		if (!json_is_string(v) || strcmp(json_string_value(v), "base64") != 0)
			problem(p, ckp, "must be \"base64\"");
		else if (format_ok && s->format != RENDER_RAW)
			problem(p, ckp, "is only valid with format \"raw\"");
		else
			s->decode_base64 = true;
	}

	if ((v = json_object_get(obj, "refresh"))) {
		diag_keypath(ckp, sizeof ckp, kp, "refresh");
		if (parse_duration(p, v, ckp, &s->refresh_ms) == 0 && s->refresh_ms == 0)
			problem(p, ckp, "must be greater than zero");
	}
	if ((v = json_object_get(obj, "mode")))
		s->has_mode = parse_mode(p, v, diag_keypath(ckp, sizeof ckp, kp, "mode"),
		                         true, &s->mode) == 0;
	if ((v = json_object_get(obj, "uid")))
		s->has_uid = parse_id(p, v, diag_keypath(ckp, sizeof ckp, kp, "uid"),
		                      &s->uid) == 0;
	if ((v = json_object_get(obj, "gid")))
		s->has_gid = parse_id(p, v, diag_keypath(ckp, sizeof ckp, kp, "gid"),
		                      &s->gid) == 0;
	if ((v = json_object_get(obj, "on_change")))
		parse_onchange(p, v, diag_keypath(ckp, sizeof ckp, kp, "on_change"), s);

	if (ops && ops->check_secret) {
		before = diag_problems(p->d);
		if (ops->check_secret(s->extra, kp, p->d) != 0 ||
		    diag_problems(p->d) != before)
			p->errors++;
	}
	/* A refresh on a write that issues a new value each time (a PKI
	 * certificate) is honoured, but rarely what the user wants. */
	if (ops && ops->issues_on_read && s->refresh_ms &&
	    (str = ops->issues_on_read(s->extra))) {
		bool whole = s->refresh_ms % 1000 == 0;
		diag_note(
		    p->d, kp,
		    "its %s is re-issued every %llu %s (\"refresh\"); without "
		    "\"refresh\" it is issued once and replaced only as its own "
		    "validity ends",
		    str,
		    (unsigned long long)(whole ? s->refresh_ms / 1000 : s->refresh_ms),
		    whole ? "s" : "ms");
	}
}

/*
 * Reports each secret that is also a directory of another ("db" and
 * "db/password"), once per such secret.
 */
static void check_clashes(struct parser *p, const json_t *secrets)
{
	char prefix[CONFIG_MAX_NAME + 1], kp[KP_MAX], q1[QUOTE_MAX * 4 + 8],
	    q2[QUOTE_MAX * 4 + 8];
	json_t *reported = json_object(), *v;
	const char *name;

	if (!reported) {
		p->oom = true;
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
			problem(p, diag_keypath(kp, sizeof kp, "secrets", prefix),
			        "%s is a file but %s needs it to be a directory",
			        quote(q1, sizeof q1, prefix), quote(q2, sizeof q2, name));
			if (json_object_setn_new(reported, name, n, json_true()) != 0)
				p->oom = true;
		}
	}
	json_decref(reported);
}

static void parse_secrets(struct parser *p, const json_t *obj)
{
	struct config *cfg = p->cfg;
	char kp[KP_MAX], q[QUOTE_MAX * 4 + 8];
	const char *name, *why;
	size_t n;
	json_t *v;

	if (!json_is_object(obj)) {
		problem(p, "secrets", "must be an object");
		return;
	}
	n = json_object_size(obj);
	if (n == 0) {
		problem(p, "secrets", "must define at least one secret");
		return;
	}
	if (n > CONFIG_MAX_SECRETS) {
		problem(p, "secrets", "too many secrets (at most %d)",
		        CONFIG_MAX_SECRETS);
		return;
	}
	cfg->secrets = calloc(n, sizeof *cfg->secrets);
	if (!cfg->secrets) {
		p->oom = true;
		return;
	}
	json_object_foreach((json_t *)obj, name, v)
	{
		diag_keypath(kp, sizeof kp, "secrets", name);
		if ((why = config_name_problem(name)))
			problem(p, kp, "%s is not allowed: %s", quote(q, sizeof q, name),
			        why);
		else if (cfg->mount.type == MOUNT_DIRECTORY &&
		         strncmp(name, "..", 2) == 0)
			problem(p, kp,
			        "%s is not allowed: names beginning with \"..\" are "
			        "reserved in a directory mount (..data, generations)",
			        quote(q, sizeof q, name));
		if (!json_is_object(v)) {
			problem(p, kp, "must be an object");
			continue;
		}
		parse_secret(p, name, v, kp, &cfg->secrets[cfg->nsecrets++]);
	}
	check_clashes(p, obj);
}

static void parse_root(struct parser *p, const json_t *root)
{
	json_t *v;

	if (!json_is_object(root)) {
		problem(p, NULL, "the top level must be a JSON object");
		return;
	}
	check_keys(p, root, NULL, top_keys, NULL);
	if ((v = get(p, root, NULL, "mount", true)))
		parse_mount(p, v);
	if ((v = get(p, root, NULL, "backends", true)))
		parse_backends(p, v);
	if ((v = get(p, root, NULL, "secrets", true)))
		parse_secrets(p, v);
	if ((v = json_object_get(root, "log")))
		parse_log(p, v);
	if ((v = json_object_get(root, "startup_timeout")))
		parse_duration(p, v, "startup_timeout", &p->cfg->startup_timeout_ms);
	if ((v = json_object_get(root, "shutdown_timeout")))
		parse_duration(p, v, "shutdown_timeout", &p->cfg->shutdown_timeout_ms);
	if ((v = json_object_get(root, "telemetry")) &&
	    telemetry_config_parse(v, "telemetry", p->d, &p->cfg->telemetry) < 0)
		p->errors++;
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
	struct parser p = {.d = d};
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
	p.cfg->file = name ? dup_str(&p, name) : NULL;
	p.cfg->mount.type = MOUNT_FUSE;
	p.cfg->mount.uid = geteuid();
	p.cfg->mount.gid = getegid();
	p.cfg->mount.mode = 0400;
	p.cfg->mount.dir_mode = 0555;
	p.cfg->log.level = LOG_LVL_INFO;
	p.cfg->startup_timeout_ms = DEFAULT_STARTUP_TIMEOUT_MS;
	p.cfg->shutdown_timeout_ms = DEFAULT_SHUTDOWN_TIMEOUT_MS;
	parse_root(&p, root);
	if (p.oom) {
		diag_add(d, NULL, "out of memory while reading the configuration");
		rc = SFS_ENOMEM;
	} else if (p.errors) {
		rc = SFS_EINVAL;
	} else {
		*out = p.cfg;
		p.cfg = NULL;
		rc = 0;
	}
out:
	config_free(p.cfg);
	json_decref(root);
	d->file = saved_file;
	return rc;
}

int config_parse(const char *text, const char *name, struct diag *d, struct config **out)
{
	return config_parse_buf(text, strlen(text), name, d, out);
}

int config_load(const char *path, struct diag *d, struct config **out)
{
	const char *saved_file = d->file;
	size_t len = 0, cap = 64 * 1024;
	char *buf = NULL, *grown;
	int fd = -1, rc;
	ssize_t n;

	if (!d->file)
		d->file = path;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		goto io_error;
	buf = malloc(cap);
	if (!buf) {
		rc = SFS_ENOMEM;
		goto out;
	}
	/* Read to EOF, never past the cap: st_size may lie (pipes, /proc). */
	for (;;) {
		if (len == cap) {
			if (cap > CONFIG_MAX_FILE) {
				diag_add(d, NULL,
				         "cannot read: the file is larger than %u MiB",
				         CONFIG_MAX_FILE / (1024 * 1024));
				rc = SFS_EINVAL;
				goto out;
			}
			cap =
			    cap * 2 > CONFIG_MAX_FILE + 1 ? CONFIG_MAX_FILE + 1 : cap * 2;
			grown = realloc(buf, cap);
			if (!grown) {
				rc = SFS_ENOMEM;
				goto out;
			}
			buf = grown;
		}
		n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto io_error;
		if (n == 0)
			break;
		len += (size_t)n;
	}
	rc = config_parse_buf(buf, len, path, d, out);
	goto out;
io_error:
	diag_add(d, NULL, "cannot read: %s", strerror(errno));
	rc = SFS_EIO;
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	d->file = saved_file;
	return rc;
}

static void secret_release(struct config_secret *s)
{
	free(s->name);
	free(s->backend);
	free(s->path);
	free(s->field);
	free(s->template_text);
	if (s->on_change) {
		free(s->on_change->pid_file);
		argv_free(s->on_change->argv);
		free(s->on_change);
	}
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
	telemetry_config_free(cfg->telemetry);
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
