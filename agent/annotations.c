/*
 * The vault-k8s annotation converter (see annotations.h). The injector's
 * rules, from its annotation reference: a secret is named by
 * agent-inject-secret-<name>; its file is <secret-volume-path>/<name>
 * (the name lower-cased unless preserve-secret-case-<name> is true),
 * renamed by agent-inject-file-<name>, moved by secret-volume-path-<name>;
 * agent-inject-template-<name> replaces the default template, which prints
 * each key of .Data as "key: value" lines (or .Data as JSON with
 * agent-inject-default-template: json).
 *
 * Where secretfs is stricter it says so and carries the intent over:
 * files are read-only (write bits of agent-inject-perms are dropped), TLS
 * verification cannot be switched off, the Vault token is never written
 * into the volume.
 */
#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "annotations.h"
#include "readfile.h"

#define ANNOT_PREFIX "vault.hashicorp.com/"
#define ANNOT_MAX_INPUT (16 * 1024 * 1024)
#define DEFAULT_VOLUME "/vault/secrets"

struct conv {
	json_t *ann;  /* the annotations (borrowed) */
	json_t *done; /* annotation names used: {name: true} */
	FILE *err;
	bool incomplete; /* some annotation not carried over */
};

/* Annotations of the pod's own containers (sidecar image, resources,
 * security context...): they shape the injected container, which is the
 * secretfs container of your manifest now. */
static const char *const container_prefixes[] = {
    "agent-image",
    "agent-init-first",
    "agent-limits-",
    "agent-requests-",
    "agent-run-as-",
    "agent-set-security-context",
    "agent-share-process-namespace",
    "agent-service-account-token-volume-name",
    "agent-copy-volume-mounts",
    "agent-json-patch",
    "agent-init-json-patch",
    "agent-enable-quit",
    "go-max-procs",
    "agent-inject-containers",
    NULL,
};

/* Other annotations that do not carry over, with the reason. */
static const struct {
	const char *prefix;
	const char *why;
} refused[] = {
    {"agent-inject-token", "secretfs never writes the Vault token into the volume"},
    {"agent-cache-", "secretfs has no Vault cache or proxy listener"},
    {"agent-configmap", "a Vault Agent config file does not carry over: convert its "
                        "templates into annotations first"},
    {"agent-extra-secret", "mount the Kubernetes secret into the secretfs container and "
                           "name its files in the config"},
    {"tls-secret", "mount the Kubernetes secret into the secretfs container and set "
                   "backends.vault.tls.ca_file to its CA file"},
    {"auth-config-", "kubernetes auth takes only role and mount in secretfs"},
    {"auth-min-backoff", "secretfs's login backoff is fixed (1 s to 5 min, jittered)"},
    {"auth-max-backoff", "secretfs's login backoff is fixed (1 s to 5 min, jittered)"},
    {"agent-auto-auth-exit-on-err", "secretfs keeps retrying logins with backoff"},
    {"template-config-exit-on-retry-failure",
     "secretfs keeps serving the last good value while retrying"},
    {"template-max-connections-per-host", "secretfs bounds its own connections"},
    {"agent-telemetry-", "use the secretfs \"telemetry\" block (Prometheus /metrics)"},
    {"agent-disable-idle-connections", "secretfs manages its own connections"},
    {"agent-disable-keep-alives", "secretfs manages its own connections"},
    {"agent-metrics-", "use the secretfs \"telemetry\" block"},
    {"ca-key", "secretfs needs only the CA certificate (ca-cert)"},
};

static bool starts_with(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* The value of annotation vault.hashicorp.com/<key>, marked as used. */
static const char *take(struct conv *c, const char *key)
{
	char name[512];
	const char *v;

	snprintf(name, sizeof name, ANNOT_PREFIX "%s", key);
	v = json_string_value(json_object_get(c->ann, name));
	if (v)
		json_object_set_new(c->done, name, json_true());
	return v;
}

static const char *take_for(struct conv *c, const char *key, const char *secret)
{
	char name[512];

	snprintf(name, sizeof name, "%s-%s", key, secret);
	return take(c, name);
}

/* Annotation <annotation>, when set, as obj's string <key>. */
static void carry(struct conv *c, json_t *obj, const char *annotation, const char *key)
{
	const char *v = take(c, annotation);

	if (v)
		json_object_set_new(obj, key, json_string(v));
}

static bool is_true(const char *v)
{
	return v &&
	       (strcmp(v, "true") == 0 || strcmp(v, "1") == 0 || strcmp(v, "t") == 0 ||
	        strcmp(v, "T") == 0 || strcmp(v, "TRUE") == 0 || strcmp(v, "True") == 0);
}

static void not_carried(struct conv *c, const char *name, const char *why)
{
	fprintf(c->err, "not carried over: %s: %s\n", name, why);
	c->incomplete = true;
}

/* Go's strconv.Quote for the ASCII a path holds; other bytes as \xNN. */
static void go_quote(char *out, size_t len, const char *s)
{
	size_t n = 0;

	out[n++] = '"';
	for (; *s && n + 6 < len; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\') {
			out[n++] = '\\';
			out[n++] = (char)ch;
		} else if (ch < 0x20 || ch >= 0x7f) {
			n += (size_t)snprintf(out + n, len - n, "\\x%02x", ch);
		} else {
			out[n++] = (char)ch;
		}
	}
	out[n++] = '"';
	out[n] = '\0';
}

/* The injector's default templates (map: "key: value" lines of .Data). */
static char *default_template(const char *path, bool json)
{
	char quoted[1200];
	char *t;

	go_quote(quoted, sizeof quoted, path);
	if (asprintf(&t,
	             json ? "{{ with secret %s }}{{ .Data | toJSON }}\n{{ end }}"
	                  : "{{ with secret %s }}{{ range $k, $v := .Data }}{{ $k }}: "
	                    "{{ $v }}\n{{ end }}{{ end }}",
	             quoted) < 0)
		return NULL;
	return t;
}

/* The annotations and pod spec of obj: a Pod, a workload with a pod
 * template, a CronJob, or a List of exactly one of them. */
static const char *find_pod(json_t *obj, json_t **ann, json_t **spec)
{
	const char *kind = json_string_value(json_object_get(obj, "kind"));
	json_t *tmpl = NULL;

	if (!json_is_object(obj))
		return "the input is not a JSON object (kubectl get ... -o json)";
	if (kind && strcmp(kind, "List") == 0) {
		json_t *items = json_object_get(obj, "items");
		if (!json_is_array(items) || json_array_size(items) != 1)
			return "a List must hold exactly one object: convert one at a "
			       "time";
		return find_pod(json_array_get(items, 0), ann, spec);
	}
	if (!kind)
		return "no \"kind\": expected a Pod or a workload with a pod template";
	if (strcmp(kind, "Pod") == 0) {
		tmpl = obj;
	} else if (strcmp(kind, "CronJob") == 0) {
		tmpl = json_object_get(
		    json_object_get(
		        json_object_get(json_object_get(obj, "spec"), "jobTemplate"),
		        "spec"),
		    "template");
	} else if (strcmp(kind, "Deployment") == 0 || strcmp(kind, "StatefulSet") == 0 ||
	           strcmp(kind, "DaemonSet") == 0 || strcmp(kind, "ReplicaSet") == 0 ||
	           strcmp(kind, "Job") == 0 || strcmp(kind, "PodTemplate") == 0 ||
	           strcmp(kind, "ReplicationController") == 0) {
		tmpl = strcmp(kind, "PodTemplate") == 0
		           ? json_object_get(obj, "template")
		           : json_object_get(json_object_get(obj, "spec"), "template");
	} else {
		return "unsupported kind: expected Pod, Deployment, StatefulSet, "
		       "DaemonSet, "
		       "ReplicaSet, ReplicationController, Job, CronJob, PodTemplate or "
		       "a "
		       "List of one";
	}
	*ann = json_object_get(json_object_get(tmpl, "metadata"), "annotations");
	*spec = json_object_get(tmpl, "spec");
	if (!json_is_object(*ann))
		return "the pod has no annotations";
	return NULL;
}

/* runAsUser/runAsGroup of the application: the pod's security context,
 * else the first container's. -1 when not set. */
static void app_ids(json_t *spec, json_int_t *uid, json_int_t *gid)
{
	json_t *sc = json_object_get(spec, "securityContext");
	json_t *containers = json_object_get(spec, "containers");
	json_t *u = json_object_get(sc, "runAsUser"),
	       *g = json_object_get(sc, "runAsGroup");

	if (json_is_array(containers) && json_array_size(containers) > 0) {
		json_t *csc =
		    json_object_get(json_array_get(containers, 0), "securityContext");
		if (json_is_integer(json_object_get(csc, "runAsUser")))
			u = json_object_get(csc, "runAsUser");
		if (json_is_integer(json_object_get(csc, "runAsGroup")))
			g = json_object_get(csc, "runAsGroup");
	}
	*uid = json_is_integer(u) ? json_integer_value(u) : -1;
	*gid = json_is_integer(g) ? json_integer_value(g) : -1;
}

/* agent-inject-perms (octal, as the injector's): read bits only. */
static json_t *perms_of(struct conv *c, const char *name, const char *v)
{
	char *end;
	long m = strtol(v, &end, 8);
	char buf[8];

	if (!*v || *end || m < 0 || m > 07777) {
		char ann[300];
		snprintf(ann, sizeof ann, ANNOT_PREFIX "agent-inject-perms-%s", name);
		not_carried(c, ann, "not an octal mode");
		return NULL;
	}
	if (m & 07222)
		fprintf(
		    c->err,
		    "note: agent-inject-perms-%s %04lo carried over as %04lo: secretfs "
		    "files are read-only\n",
		    name, m, m & 0555);
	snprintf(buf, sizeof buf, "%04lo", m & 0555);
	return json_string(buf);
}

/* The file's key in "secrets": <volume>/<file> relative to the mount. */
static int file_key(struct conv *c, const char *mount, const char *name, char *out,
                    size_t len)
{
	const char *file = take_for(c, "agent-inject-file", name);
	const char *vol = take_for(c, "secret-volume-path", name);
	char lname[256];
	size_t ml = strlen(mount);

	snprintf(lname, sizeof lname, "%s", name);
	if (!is_true(take_for(c, "preserve-secret-case", name)))
		for (char *p = lname; *p; p++)
			*p = (char)tolower((unsigned char)*p);
	if (!file || !*file)
		file = lname;
	while (*file == '/')
		file++;
	if (vol && strcmp(vol, mount) != 0) {
		if (strncmp(vol, mount, ml) != 0 || vol[ml] != '/') {
			char ann[300];
			snprintf(ann, sizeof ann, ANNOT_PREFIX "secret-volume-path-%s",
			         name);
			not_carried(
			    c, ann,
			    "outside the secret volume path: secretfs serves one mount "
			    "(give this secret its own secretfs, or move it under the "
			    "mount)");
			return -1;
		}
		snprintf(out, len, "%s/%s", vol + ml + 1, file);
	} else {
		snprintf(out, len, "%s", file);
	}
	return 0;
}

static json_t *one_secret(struct conv *c, const char *name, const char *path,
                          const char *refresh, json_t *mode_default, bool json_default)
{
	const char *tmpl = take_for(c, "agent-inject-template", name);
	const char *tfile = take_for(c, "agent-inject-template-file", name);
	const char *perms = take_for(c, "agent-inject-perms", name);
	const char *cmd = take_for(c, "agent-inject-command", name);
	json_t *s = json_object();

	json_object_set_new(s, "backend", json_string("vault"));
	json_object_set_new(s, "format", json_string("consul-template"));
	if (tmpl) {
		json_object_set_new(s, "template", json_string(tmpl));
	} else if (tfile) {
		json_object_set_new(s, "template_file", json_string(tfile));
		fprintf(c->err,
		        "note: agent-inject-template-file-%s: the template file must be "
		        "readable by secretfs at %s\n",
		        name, tfile);
	} else {
		char *t = default_template(path, json_default);
		json_object_set_new(s, "template", t ? json_string(t) : json_null());
		free(t);
	}
	if (perms) {
		json_t *m = perms_of(c, name, perms);
		if (m)
			json_object_set_new(s, "mode", m);
	} else if (mode_default) {
		json_object_set(s, "mode", mode_default);
	}
	if (refresh)
		json_object_set_new(s, "refresh", json_string(refresh));
	if (cmd) {
		/* The injector runs it with sh -c. */
		json_t *argv = json_pack("[sss]", "/bin/sh", "-c", cmd);
		json_object_set_new(s, "on_change", json_pack("{so}", "command", argv));
	}
	return s;
}

static json_t *backend_of(struct conv *c)
{
	const char *service = take(c, "service"), *role = take(c, "role");
	const char *path = take(c, "auth-path"), *type = take(c, "auth-type");
	const char *skip = take(c, "tls-skip-verify");
	const char *revoke = take(c, "agent-revoke-on-shutdown");
	const char *grace = take(c, "agent-revoke-grace");
	json_t *be = json_object(), *auth = json_object(), *tls = json_object();

	json_object_set_new(be, "type", json_string("vault"));
	if (service)
		json_object_set_new(be, "address", json_string(service));
	else
		fprintf(c->err, "note: no vault.hashicorp.com/service: the Vault address "
		                "comes from VAULT_ADDR in the secretfs container\n");
	carry(c, be, "namespace", "namespace");
	carry(c, be, "proxy-address", "proxy");
	carry(c, tls, "ca-cert", "ca_file");
	carry(c, tls, "tls-server-name", "server_name");
	carry(c, tls, "client-cert", "client_cert");
	carry(c, tls, "client-key", "client_key");
	if (json_object_size(tls))
		json_object_set(be, "tls", tls);
	json_decref(tls);
	if (is_true(skip))
		not_carried(
		    c, ANNOT_PREFIX "tls-skip-verify",
		    "secretfs always verifies Vault's certificate: give its CA with "
		    "vault.hashicorp.com/ca-cert (tls.ca_file)");
	if (type && strcmp(type, "kubernetes") != 0)
		not_carried(
		    c, ANNOT_PREFIX "auth-type",
		    "only kubernetes auth carries over from annotations; set "
		    "backends.vault.auth by hand (token, approle, jwt, cert, aws)");
	json_object_set_new(auth, "method", json_string("kubernetes"));
	if (role)
		json_object_set_new(auth, "role", json_string(role));
	else
		not_carried(c, ANNOT_PREFIX "role",
		            "missing: the kubernetes auth role is required; set "
		            "backends.vault.auth.role");
	if (path) {
		const char *m = starts_with(path, "auth/") ? path + 5 : path;
		char mount[256];
		size_t n;

		snprintf(mount, sizeof mount, "%s", m);
		n = strlen(mount);
		while (n > 0 && mount[n - 1] == '/')
			mount[--n] = '\0';
		if (strcmp(mount, "kubernetes") != 0)
			json_object_set_new(auth, "mount", json_string(mount));
	}
	json_object_set_new(be, "auth", auth);
	if (revoke)
		json_object_set_new(be, "revoke_on_shutdown",
		                    json_boolean(is_true(revoke)));
	if (grace) {
		char g[64];
		snprintf(g, sizeof g, "%ss", grace);
		json_object_set_new(be, "revoke_grace", json_string(g));
	}
	return be;
}

static json_t *log_of(struct conv *c)
{
	const char *level = take(c, "log-level"), *format = take(c, "log-format");
	json_t *log = json_object();

	if (level) {
		const char *l =
		    strcmp(level, "trace") == 0 || strcmp(level, "debug") == 0 ? "debug"
		    : strcmp(level, "warn") == 0 || strcmp(level, "warning") == 0 ? "warn"
		    : strcmp(level, "err") == 0 || strcmp(level, "error") == 0 ? "error"
		                                                               : "info";
		json_object_set_new(log, "level", json_string(l));
	}
	if (format)
		json_object_set_new(
		    log, "format",
		    json_string(strcmp(format, "json") == 0 ? "json" : "text"));
	return log;
}

/* Every vault.hashicorp.com/ annotation not taken: listed with why. */
static void report_rest(struct conv *c)
{
	const char *name;
	json_t *v;

	json_object_foreach(c->ann, name, v)
	{
		const char *key = name + strlen(ANNOT_PREFIX);
		const char *why = "not known to the converter";

		if (!starts_with(name, ANNOT_PREFIX) || json_object_get(c->done, name))
			continue;
		if (starts_with(key, "agent-inject-") ||
		    starts_with(key, "secret-volume-path-") ||
		    starts_with(key, "preserve-secret-case-"))
			why = "names no secret declared by agent-inject-secret-<name>";
		for (size_t i = 0; container_prefixes[i]; i++)
			if (starts_with(key, container_prefixes[i]))
				why = "shapes the injected container: set it on the "
				      "secretfs "
				      "container in your manifest";
		for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
			if (starts_with(key, refused[i].prefix))
				why = refused[i].why;
		not_carried(c, name, why);
	}
}

static int convert(struct conv *c, json_t *spec, FILE *out)
{
	const char *inject = take(c, "agent-inject");
	const char *vol = take(c, "secret-volume-path");
	const char *refresh = take(c, "template-static-secret-render-interval");
	const char *preonly = take(c, "agent-pre-populate-only");
	const char *eomk = take(c, "error-on-missing-key");
	const char *deftmpl = take(c, "agent-inject-default-template");
	bool json_default = deftmpl && strcmp(deftmpl, "json") == 0;
	json_t *cfg = json_object(), *mount = json_object(), *secrets = json_object();
	json_t *mode_default = NULL, *log;
	json_int_t uid, gid;
	const char *name;
	json_t *v;
	char *text;

	take(c, "agent-inject-status");
	take(c, "agent-pre-populate");
	if (!is_true(inject))
		fprintf(c->err,
		        "note: vault.hashicorp.com/agent-inject is not \"true\": the "
		        "injector would ignore this pod\n");
	if (!vol || !*vol)
		vol = DEFAULT_VOLUME;
	json_object_set_new(mount, "path", json_string(vol));
	json_object_set_new(mount, "type",
	                    json_string(is_true(preonly) ? "directory" : "fuse"));
	if (is_true(preonly))
		fprintf(c->err,
		        "advice: agent-pre-populate-only: run this config with "
		        "`secretfs --once` as an init container (it writes the files "
		        "into the directory and exits)\n");
	json_object_set_new(mount, "allow_other", json_true());
	app_ids(spec, &uid, &gid);
	if (uid >= 0) {
		json_object_set_new(mount, "uid", json_integer(uid));
		if (gid >= 0)
			json_object_set_new(mount, "gid", json_integer(gid));
	} else {
		/* The injector's files are 0644 in a shared emptyDir. */
		mode_default = json_string("0444");
		fprintf(c->err,
		        "note: no runAsUser in the pod spec: files are 0444, readable "
		        "by every user in the pod as the injector's are; set mount.uid "
		        "to the application's uid for 0400 files\n");
	}
	if (is_true(eomk))
		not_carried(c, ANNOT_PREFIX "error-on-missing-key",
		            "secretfs renders a missing key as \"<no value>\", as "
		            "consul-template's default");
	json_object_foreach(c->ann, name, v)
	{
		const char *sname = name + strlen(ANNOT_PREFIX "agent-inject-secret-");
		char key[1024];

		if (!starts_with(name, ANNOT_PREFIX "agent-inject-secret-") || !*sname ||
		    !json_is_string(v))
			continue;
		json_object_set_new(c->done, name, json_true());
		if (file_key(c, vol, sname, key, sizeof key) < 0)
			continue;
		if (json_object_get(secrets, key)) {
			not_carried(c, name, "two secrets render to the same file");
			continue;
		}
		json_object_set_new(secrets, key,
		                    one_secret(c, sname, json_string_value(v), refresh,
		                               mode_default, json_default));
	}
	json_decref(mode_default);
	if (json_object_size(secrets) == 0) {
		fprintf(c->err,
		        "secretfs: no vault.hashicorp.com/agent-inject-secret-<name> "
		        "annotation: nothing to convert\n");
		json_decref(cfg);
		json_decref(mount);
		json_decref(secrets);
		return ANNOT_INVALID;
	}
	json_object_set_new(cfg, "mount", mount);
	json_object_set_new(cfg, "backends", json_pack("{so}", "vault", backend_of(c)));
	json_object_set_new(cfg, "secrets", secrets);
	log = log_of(c);
	if (json_object_size(log))
		json_object_set(cfg, "log", log);
	json_decref(log);
	report_rest(c);
	text = json_dumps(cfg, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(cfg);
	if (!text)
		return ANNOT_INVALID;
	fprintf(out, "%s\n", text);
	free(text);
	return c->incomplete ? ANNOT_INCOMPLETE : ANNOT_COMPLETE;
}

int annotations_convert(const char *path, FILE *out, FILE *err)
{
	const char *file = strcmp(path, "-") == 0 ? "/dev/stdin" : path;
	unsigned char *buf = NULL;
	struct conv c = {.err = err};
	json_t *doc, *spec = NULL;
	json_error_t jerr;
	const char *why;
	size_t len;
	int rc;

	if (readfile(file, ANNOT_MAX_INPUT, 0, &readfile_heap, &buf, &len) < 0) {
		fprintf(err, "secretfs: %s: cannot read it (or larger than %d MiB)\n",
		        path, ANNOT_MAX_INPUT >> 20);
		return ANNOT_INVALID;
	}
	doc = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES, &jerr);
	free(buf);
	if (!doc) {
		fprintf(err,
		        "secretfs: %s: line %d, column %d: not JSON (%s); give "
		        "`kubectl get ... -o json` output\n",
		        path, jerr.line, jerr.column, jerr.text);
		return ANNOT_INVALID;
	}
	why = find_pod(doc, &c.ann, &spec);
	if (why) {
		fprintf(err, "secretfs: %s: %s\n", path, why);
		json_decref(doc);
		return ANNOT_INVALID;
	}
	c.done = json_object();
	rc = convert(&c, spec, out);
	json_decref(c.done);
	json_decref(doc);
	return rc;
}
