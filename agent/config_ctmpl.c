/*
 * consul-template files in the config (config_ctmpl.h). The template names
 * its Vault paths itself, as Vault Agent templates do: each distinct
 * `secret "path" "k=v"...` call becomes the key of a source, a read when it
 * has no parameters and a POST with them as the body otherwise (as
 * consul-template writes), so the scheduler shares, renews and replaces it
 * like any other source. Messages name keys and constructs, never the
 * template's text.
 */
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_ctmpl.h"
#include "ctmpl.h"
#include "readfile.h"
#include "secretfs/error.h"

const char *const config_ctmpl_refused_keys[] = {"path",   "field",   "decode", "method",
                                                 "params", "version", NULL};
const char *const config_ctmpl_call_keys[] = {"revoke_on_replace", NULL};

/* template_file's path: as is when absolute, else beside the config. */
static char *template_path(const char *file, const char *config_file)
{
	char *dir, *dirbuf, *out = NULL;

	if (file[0] == '/' || !config_file)
		return strdup(file);
	dirbuf = strdup(config_file);
	if (!dirbuf)
		return NULL;
	dir = dirname(dirbuf);
	if (asprintf(&out, "%s/%s", dir, file) < 0)
		out = NULL;
	free(dirbuf);
	return out;
}

/* The text of template_file into *text (free()), its path into *used
 * (free()). Returns 0, or -1 when reported. */
static int read_template_file(struct confval *cv, const char *file,
                              const char *config_file, const char *tkp, char **text,
                              size_t *len, char **used)
{
	char *path = template_path(file, config_file);
	unsigned char *buf = NULL;
	int rc;

	if (!path) {
		cv->oom = true;
		return -1;
	}
	rc = readfile(path, CTMPL_MAX_TEXT, READFILE_REGULAR, &readfile_heap, &buf, len);
	if (rc == SFS_ETOOBIG)
		confval_problem(cv, tkp, "%s is larger than %d KiB", path,
		                CTMPL_MAX_TEXT / 1024);
	else if (rc == SFS_ENOTFOUND)
		confval_problem(cv, tkp, "cannot read %s: no such file", path);
	else if (rc == SFS_ENOMEM)
		cv->oom = true;
	else if (rc < 0 && errno == EACCES)
		/* A reload reads it inside the sandbox entered at start. */
		confval_problem(
		    cv, tkp,
		    "cannot read %s: %s (a running secretfs reads only what "
		    "its sandbox allowed at start: restart secretfs to apply)",
		    path, strerror(errno));
	else if (rc < 0)
		confval_problem(cv, tkp, "cannot read %s: %s", path, strerror(errno));
	if (rc < 0) {
		free(path);
		return -1;
	}
	*text = (char *)buf;
	*used = path;
	return 0;
}

/* The extra of secret call i of s->ctmpl: {} for a read; for a write,
 * {"method": "POST", "params": {k: v...}} and the file's call keys. */
static json_t *call_extra(const struct config_secret *s, size_t i, const char **path)
{
	const char *const *params;
	json_t *extra = json_object(), *body;
	size_t np;

	if (!extra || ctmpl_secret_at(s->ctmpl, i, path, &params, &np) < 0)
		goto fail;
	if (np == 0)
		return extra;
	body = json_object();
	if (!body || json_object_set_new(extra, "params", body) != 0 ||
	    json_object_set_new(extra, "method", json_string("POST")) != 0)
		goto fail;
	for (size_t j = 0; j < np; j++) {
		const char *eq = strchr(params[j], '=');

		if (json_object_setn_new(body, params[j], (size_t)(eq - params[j]),
		                         json_string(eq + 1)) != 0)
			goto fail;
	}
	for (const char *const *k = config_ctmpl_call_keys; *k; k++) {
		json_t *v = json_object_get(s->extra, *k);
		if (v && json_object_set(extra, *k, v) != 0)
			goto fail;
	}
	return extra;
fail:
	json_decref(extra);
	return NULL;
}

void config_ctmpl_parse(struct confval *cv, const json_t *obj, const char *kp,
                        const char *config_file, struct config_secret *s)
{
	const json_t *tv = json_object_get(obj, "template");
	const json_t *fv = json_object_get(obj, "template_file");
	char tkp[CONFVAL_KP_MAX], err[256];
	char *text = NULL;
	const char *str;
	size_t len = 0;
	int rc;

	if (tv && fv) {
		confval_problem(cv, kp,
		                "give \"template\" or \"template_file\", not both");
		return;
	}
	if (!tv && !fv) {
		confval_problem(cv, kp,
		                "missing required key \"template\" or \"template_file\" "
		                "(format is \"consul-template\")");
		return;
	}
	confval_keypath(tkp, kp, tv ? "template" : "template_file");
	if (tv) {
		if (confval_get_str(cv, obj, kp, "template", false, CTMPL_MAX_TEXT,
		                    &str) != 1)
			return;
		len = json_string_length(tv);
		text = malloc(len + 1);
		if (!text) {
			cv->oom = true;
			return;
		}
		memcpy(text, str, len + 1);
	} else if (confval_get_str(cv, obj, kp, "template_file", false, CONFVAL_MAX_STR,
	                           &str) != 1 ||
	           read_template_file(cv, str, config_file, tkp, &text, &len,
	                              &s->template_file) < 0) {
		return;
	}
	rc = ctmpl_parse(text, len, &s->ctmpl, err, sizeof err);
	/* Kept: a reload compares it to tell a changed template. */
	s->template_text = text;
	if (rc == SFS_ENOMEM) {
		cv->oom = true;
		return;
	}
	if (rc < 0) {
		confval_problem(cv, tkp, "%s", err);
		return;
	}
	s->ncalls = ctmpl_secret_count(s->ctmpl);
	if (s->ncalls == 0) {
		/* Nothing would ever be read, so nothing would render it. */
		confval_problem(cv, tkp,
		                "names no secret ({{ with secret \"path\" }}): "
		                "nothing to render it from");
		return;
	}
	s->calls = calloc(s->ncalls, sizeof *s->calls);
	if (!s->calls) {
		cv->oom = true;
		return;
	}
	for (size_t i = 0; i < s->ncalls; i++) {
		const char *path = NULL;

		s->calls[i].extra = call_extra(s, i, &path);
		if (!s->calls[i].extra) {
			cv->oom = true;
			return;
		}
		s->calls[i].path = confval_dup(cv, path);
	}
}

void config_ctmpl_release(struct config_secret *s)
{
	for (size_t i = 0; s->calls && i < s->ncalls; i++) {
		free(s->calls[i].path);
		json_decref(s->calls[i].extra);
	}
	free(s->calls);
	ctmpl_free(s->ctmpl);
}
