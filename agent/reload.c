/*
 * Live configuration reload (see reload.h).
 *
 * A SIGHUP or an inotify event on the config file's directory (the file's
 * own name, or a dot name: the ConfigMap "..data" swap) starts a round:
 * the file is read and hashed, read again a moment later, and once two
 * reads agree it is taken (a writer still at work, or a swap half done,
 * shows as a change or a missing file and the round goes on, bounded).
 * A round that finds the running content again ends there, unless it was a
 * SIGHUP. Then the text is parsed as --check parses it, compared section
 * by section with the running one, the backends that changed are built,
 * and the scheduler applies the difference. Every step that refuses logs
 * why at its key path and keeps the running config.
 *
 * Ownership: the config and backends the daemon started with stay
 * main's; configs and backends made here are freed by reload_free. A
 * backend that a reload replaced is kept (retired) until then, since the
 * revocation queue may still revoke its leases through it; so is a config
 * that an apply stopped half-way left borrowed. The config a reload
 * replaces otherwise is freed at once.
 */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "aws_api.h"
#include "onchange.h"
#include "reload.h"
#include "sandbox.h"
#include "secretfs/diag.h"
#include "secretfs/error.h"
#include "secretfs/log.h"
#include "secretfs/stats.h"
#include "secretfs/timing.h"

#define RELOAD_SETTLE_MS 100 /* between two reads that must agree */
#define RELOAD_MAX_READS 50  /* reads of a round before it gives up */

struct reload {
	struct reload_env env;
	char *watch_name; /* the file's name in its directory */
	int inotify_fd;
	int hup_fd; /* eventfd, written by the SIGHUP handler */

	const struct config *cfg;  /* running */
	struct config *owned_cfg;  /* cfg when a reload made it, else NULL */
	struct backend **backends; /* running, in cfg->backends order */
	bool owned_backends;       /* the array (not its entries) is ours */
	struct backend **made;     /* backends made here, running or retired */
	size_t nmade;
	struct config **pinned; /* half-applied configs, kept to the end */
	size_t npinned;
	json_t *root_json; /* the running text's fixed sections (fixed_sections) */
	unsigned char hash[crypto_generichash_BYTES]; /* of the running text */
	bool have_hash;

	/* The round in progress. */
	bool pending, forced;
	unsigned reads;
	unsigned char seen[crypto_generichash_BYTES];
	bool seen_ok;
	uint64_t due;

	struct stats_set *stats;
};

/* The metric (stats.h). */
static const char *const result_values[] = {"ok", "failed", NULL};
static const struct stats_dim result_dim[] = {{"result", result_values}, {NULL, NULL}};
enum { RELOADS };
enum { RESULT_OK, RESULT_FAILED };
static const struct stats_field reload_fields[] = {
    [RELOADS] = {STATS_COUNTER, "secretfs_config_reloads_total",
                 "Configuration reloads, by result (failed: invalid, refused or "
                 "not applied; the running config stayed)",
                 result_dim},
};
static const struct stats_family reload_family = {
    reload_fields, sizeof reload_fields / sizeof reload_fields[0], NULL};

static volatile sig_atomic_t hup_fd_for_signal = -1;

static void on_hup(int sig)
{
	uint64_t one = 1;
	int saved = errno;
	ssize_t r;

	(void)sig;
	if (hup_fd_for_signal >= 0)
		r = write(hup_fd_for_signal, &one, sizeof one);
	(void)r;
	errno = saved;
}

static void set_hup_handler(int fd)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof sa);
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sa.sa_handler = fd >= 0 ? on_hup : SIG_IGN;
	hup_fd_for_signal = fd;
	sigaction(SIGHUP, &sa, NULL);
}

void reload_catch_signal(struct reload *r)
{
	set_hup_handler(r->hup_fd);
}

static void log_failure(const char *why)
{
	log_event(LOG_LVL_ERROR, &(struct log_fields){.event = "config.reload_failed"},
	          "reload: %s; keeping the running configuration", why);
}

/* Logs the messages of d and counts the failure. */
static void failed(struct reload *r, struct diag *d)
{
	for (size_t i = 0; i < d->count; i++)
		log_failure(d->msgs[i]);
	stats_inc_at(r->stats, RELOADS, RESULT_FAILED);
}

/* ---- what may change ---------------------------------------------------- */

/* The mount as a whole cannot change live: each key that did is named. */
static void check_mount(const struct config_mount *a, const struct config_mount *b,
                        struct diag *d)
{
	static const char why[] = "cannot change while mounted (restart secretfs)";

	if (a->type != b->type)
		diag_add(d, "mount.type", "%s", why);
	if (strcmp(a->path, b->path) != 0)
		diag_add(d, "mount.path", "%s", why);
	if (a->allow_other != b->allow_other)
		diag_add(d, "mount.allow_other", "%s", why);
	if (a->keep_on_exit != b->keep_on_exit)
		diag_add(d, "mount.keep_on_exit", "%s", why);
	if (a->fast_open != b->fast_open)
		diag_add(d, "mount.fast_open", "%s", why);
	if (a->dir_mode != b->dir_mode)
		diag_add(d, "mount.dir_mode", "%s", why);
	if (a->uid != b->uid || a->gid != b->gid)
		diag_add(d, a->uid != b->uid ? "mount.uid" : "mount.gid",
		         "owns the directories of the mount: %s", why);
}

static bool same_json(const json_t *a, const json_t *b)
{
	return (!a && !b) || (a && b && json_equal((json_t *)a, (json_t *)b));
}

/* The top-level sections a reload cannot change, and why. */
#define OPENED_AT_START                                                                  \
	"cannot change live: it opened its listener or file at start (restart secretfs)"
static const struct {
	const char *key, *why;
} fixed[] = {
    {"telemetry", OPENED_AT_START},
    {"aws_api", OPENED_AT_START},
    {"audit", OPENED_AT_START},
    {"limits", "cannot change live: the bounds are set at start (restart secretfs)"},
    {"hardening",
     "cannot change live: the sandbox is entered at start (restart secretfs)"},
};

/* The sections of the config text that a reload cannot change, parsed, in
 * an object of their own (NULL when it does not parse): the whole document
 * kept cost 1 KiB a secret. */
static json_t *fixed_sections(const unsigned char *text, size_t len)
{
	json_t *root = json_loadb((const char *)text, len, 0, NULL), *out = json_object();

	for (size_t i = 0; root && out && i < sizeof fixed / sizeof fixed[0]; i++) {
		json_t *v = json_object_get(root, fixed[i].key);

		if (v && json_object_set(out, fixed[i].key, v) != 0) {
			json_decref(out);
			out = NULL;
		}
	}
	if (!root) {
		json_decref(out);
		out = NULL;
	}
	json_decref(root);
	return out;
}

/* The listeners and the audit file hold sockets and files opened at start
 * (and the AWS agent API the backend and allow-list it started with). */
static void check_fixed_sections(struct reload *r, const json_t *old_root,
                                 const json_t *new_root, const struct config *cfg,
                                 struct diag *d)
{
	const struct config *old = r->cfg;

	for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
		if (!same_json(json_object_get(old_root, fixed[i].key),
		               json_object_get(new_root, fixed[i].key)))
			diag_add(d, fixed[i].key, "%s", fixed[i].why);
	if (!old->aws_api || !cfg->aws_api)
		return;
	/* Its backend object and allow-list are those it started with. */
	const char *name = old->aws_api->backend;
	const struct config_backend *a = config_backend_find(old, name),
	                            *b = config_backend_find(cfg, name);
	if (!a || !b || !same_json(a->json, b->json))
		diag_add_at(d, "backends", name,
		            "the aws_api listener calls this backend: it cannot change "
		            "live (restart secretfs)");
	for (int pass = 0; pass < 2; pass++) {
		const struct config *x = pass ? cfg : old, *y = pass ? old : cfg;

		for (size_t i = 0; i < x->nsecrets; i++) {
			const struct config_secret *s = &x->secrets[i];
			bool found = false;

			/* A consul-template file (no path) is not of the list. */
			if (strcmp(s->backend, name) != 0 || !s->path)
				continue;
			for (size_t j = 0; j < y->nsecrets && !found; j++)
				found = strcmp(y->secrets[j].backend, name) == 0 &&
				        y->secrets[j].path &&
				        strcmp(y->secrets[j].path, s->path) == 0;
			if (!found)
				diag_add_at(
				    d, "secrets", s->name,
				    "%s a secret of the aws_api listener's allow-list: "
				    "it cannot change live (restart secretfs)",
				    pass ? "adds" : "removes");
		}
	}
}

/* The monitor (monitor.h) runs only the on_change actions of the config
 * the daemon started with: an action no file had then is refused. */
static void check_onchange(const struct config *start, const struct config *cfg,
                           struct diag *d)
{
	for (size_t i = 0; i < cfg->nsecrets; i++) {
		const struct config_onchange *oc = cfg->secrets[i].on_change;
		bool known = false;
		char *kp;

		for (size_t j = 0; oc && j < start->nsecrets && !known; j++)
			known = start->secrets[j].on_change &&
			        onchange_config_same(start->secrets[j].on_change, oc);
		if (!oc || known)
			continue;
		kp = diag_keypath_new("secrets", cfg->secrets[i].name);
		diag_add_at(
		    d, kp ? kp : "secrets", "on_change",
		    "cannot change live: the monitor runs only the actions of the "
		    "configuration secretfs started with (restart secretfs)");
		free(kp);
	}
}

/* ---- backends ----------------------------------------------------------- */

/* Records be as made here (freed by reload_free); false when out of
 * memory. */
static bool track(struct reload *r, struct backend *be)
{
	struct backend **grown = realloc(r->made, (r->nmade + 1) * sizeof *grown);

	if (!grown)
		return false;
	r->made = grown;
	r->made[r->nmade++] = be;
	return true;
}

/* The running backend that serves as cfg's cb unchanged, or NULL. */
static struct backend *kept_backend(struct reload *r, const struct config_backend *cb)
{
	for (size_t i = 0; i < r->cfg->nbackends; i++) {
		const struct config_backend *ob = &r->cfg->backends[i];

		if (strcmp(ob->name, cb->name) == 0 && strcmp(ob->type, cb->type) == 0 &&
		    same_json(ob->json, cb->json))
			return r->backends[i];
	}
	return NULL;
}

/* Frees the backends made since there were nmade_before. */
static void drop_new_backends(struct reload *r, size_t nmade_before)
{
	for (size_t i = nmade_before; i < r->nmade; i++)
		r->made[i]->ops->free(r->made[i]);
	r->nmade = nmade_before;
}

/* The backends of cfg: the running ones it keeps unchanged, new ones for
 * the others. Returns a new array, or NULL (logged). */
static struct backend **build_backends(struct reload *r, const struct config *cfg,
                                       size_t *nbuilt)
{
	struct backend_env env = {
	    .store = r->env.store, .stats = r->env.stats, .envstash = r->env.envstash};
	struct backend **v = calloc(cfg->nbackends ? cfg->nbackends : 1, sizeof *v);
	size_t before = r->nmade;
	char real[PATH_MAX];

	*nbuilt = 0;
	if (!v)
		return NULL;
	/* Relative paths are the config file's, as at start: where it is now
	 * (a ConfigMap's file moves to a new directory at each update). */
	if (realpath(r->env.path, real))
		env.config_dir = dirname(real);
	for (size_t i = 0; i < cfg->nbackends; i++) {
		const struct config_backend *cb = &cfg->backends[i];

		if ((v[i] = kept_backend(r, cb)))
			continue;
		if (backend_start(&env, cb->type, cb->name, cb->json, &v[i]) < 0 ||
		    !track(r, v[i])) {
			if (v[i] && r->nmade == before + *nbuilt)
				v[i]->ops->free(v[i]);
			drop_new_backends(r, before);
			free(v);
			return NULL;
		}
		(*nbuilt)++;
		/* A rebuilt backend counts on in its predecessor's series. */
		backend_calls_register(v[i], r->env.stats);
	}
	return v;
}

/* ---- a round ------------------------------------------------------------ */

static void apply_log(struct reload *r, const struct config *cfg)
{
	if (cfg->log.level == r->cfg->log.level && cfg->log.json == r->cfg->log.json)
		return;
	log_setup(r->env.log_level >= 0 ? (enum log_level)r->env.log_level
	                                : (enum log_level)cfg->log.level,
	          r->env.log_json >= 0 ? r->env.log_json != 0 : cfg->log.json);
}

/* Takes cfg (and its backends v) as the running config. */
static void take_config(struct reload *r, struct config *cfg, struct backend **v)
{
	config_free(r->owned_cfg);
	r->owned_cfg = cfg;
	r->cfg = cfg;
	if (r->owned_backends)
		free(r->backends);
	r->backends = v;
	r->owned_backends = true;
}

/* Parses, checks and applies text (len bytes, hashed as hash). */
static void reload_text(struct reload *r, const unsigned char *text, size_t len,
                        const unsigned char *hash, const char *why)
{
	struct config *cfg = NULL;
	struct backend **v = NULL;
	struct sched_applied done;
	char real[PATH_MAX];
	json_t *old_root = NULL, *new_root = NULL;
	size_t nbuilt = 0, nmade_before = r->nmade;
	struct diag d;
	uint64_t started = timing_now_ms();
	int rc;

	log_event(LOG_LVL_INFO, &(struct log_fields){.event = "config.reloading"},
	          "reload: reading %s (%s)", r->env.path, why);
	diag_init(&d, r->env.path);
	if (config_parse_text((const char *)text, len, r->env.path, &d, &cfg) < 0) {
		failed(r, &d);
		goto out;
	}
	/* It parsed above: the sections compare as JSON. */
	new_root = fixed_sections(text, len);
	old_root = json_incref(r->root_json);
	check_mount(&r->cfg->mount, &cfg->mount, &d);
	check_fixed_sections(r, old_root, new_root, cfg, &d);
	check_onchange(r->env.cfg, cfg, &d);
	if (realpath(r->env.path, real))
		sandbox_check_config(cfg, dirname(real), &d);
	sched_check_config(r->env.sched, r->cfg, cfg, &d);
	if (diag_problems(&d)) {
		failed(r, &d);
		goto out;
	}
	v = build_backends(r, cfg, &nbuilt);
	if (!v) {
		diag_add(&d, "backends", "a backend could not be built (see above)");
		failed(r, &d);
		goto out;
	}
	rc = sched_apply_config(r->env.sched, r->cfg, cfg, v, cfg->nbackends, &done);
	if (rc < 0) {
		/* Part-way: the files borrow from both configs; keep both. */
		struct config **grown =
		    realloc(r->pinned, (r->npinned + 1) * sizeof *grown);
		log_event(LOG_LVL_ERROR,
		          &(struct log_fields){.event = "config.reload_partial"},
		          "reload: stopped part-way: %s; some changes are applied",
		          sfs_strerror(rc));
		if (grown && r->owned_cfg) {
			r->pinned = grown;
			r->pinned[r->npinned++] = r->owned_cfg;
			r->owned_cfg = NULL;
		}
		/* Nor is it known which backends array the scheduler holds:
		 * the old one is left (not freed). */
		r->owned_backends = false;
		stats_inc_at(r->stats, RELOADS, RESULT_FAILED);
	} else {
		stats_inc_at(r->stats, RELOADS, RESULT_OK);
	}
	apply_log(r, cfg);
	take_config(r, cfg, v);
	cfg = NULL;
	json_decref(r->root_json);
	r->root_json = json_incref(new_root);
	memcpy(r->hash, hash, sizeof r->hash);
	r->have_hash = true;
	if (rc == 0)
		log_event(LOG_LVL_INFO, &(struct log_fields){.event = "config.reloaded"},
		          "reload: applied in %llu ms: %zu files added, %zu removed, %zu "
		          "changed; %zu sources kept (nothing read again), %zu new, %zu "
		          "ended; %zu backends rebuilt",
		          (unsigned long long)(timing_now_ms() - started), done.added,
		          done.removed, done.changed, done.sources_kept, done.sources_new,
		          done.sources_ended, nbuilt);
	nmade_before = r->nmade;
out:
	if (cfg) {
		if (r->nmade > nmade_before)
			drop_new_backends(r, nmade_before);
		free(v);
		config_free(cfg);
	}
	json_decref(old_root);
	json_decref(new_root);
	diag_release(&d);
}

/* Reads the file and hashes it; *text is a new heap block, or NULL when
 * it cannot be read (d says why). */
static int read_config(struct reload *r, struct diag *d, unsigned char **text,
                       size_t *len, unsigned char *hash)
{
	int rc = config_read(r->env.path, d, text, len);

	if (rc == 0)
		crypto_generichash(hash, crypto_generichash_BYTES, *text, *len, NULL, 0);
	return rc;
}

/* Drains the watch; true when an event may concern the config file: its
 * own name, a dot name (a ConfigMap's ..data swap), or an overflow. */
static bool watch_hit(struct reload *r)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	bool hit = false;
	ssize_t n;

	if (r->inotify_fd < 0)
		return false;
	while ((n = read(r->inotify_fd, buf, sizeof buf)) > 0) {
		for (char *p = buf; p < buf + n;) {
			struct inotify_event *ev = (struct inotify_event *)p;

			if ((ev->mask & IN_Q_OVERFLOW) || ev->len == 0 ||
			    strcmp(ev->name, r->watch_name) == 0 || ev->name[0] == '.')
				hit = true;
			p += sizeof *ev + ev->len;
		}
	}
	return hit;
}

static bool hup_seen(struct reload *r)
{
	uint64_t v;

	return read(r->hup_fd, &v, sizeof v) == (ssize_t)sizeof v;
}

/* One read of a round: the content is taken once it reads the same twice
 * RELOAD_SETTLE_MS apart. Returns the next due time. */
static uint64_t round_step(struct reload *r, uint64_t now)
{
	unsigned char hash[crypto_generichash_BYTES], *text = NULL;
	size_t len = 0;
	struct diag d;
	bool ok;

	diag_init(&d, r->env.path);
	ok = read_config(r, &d, &text, &len, hash) == 0;
	r->reads++;
	if (!ok || !r->seen_ok || sodium_memcmp(hash, r->seen, sizeof hash) != 0) {
		r->seen_ok = ok;
		if (ok)
			memcpy(r->seen, hash, sizeof hash);
		if (r->reads < RELOAD_MAX_READS) {
			free(text);
			diag_release(&d);
			r->due = now + RELOAD_SETTLE_MS;
			return r->due;
		}
		/* Never stable: a file that cannot be read fails the round; one
		 * that keeps changing is taken as last read. */
		if (!ok) {
			r->pending = false;
			failed(r, &d);
			diag_release(&d);
			return UINT64_MAX;
		}
	}
	r->pending = false;
	if (!r->forced && r->have_hash && sodium_memcmp(hash, r->hash, sizeof hash) == 0)
		log_debug("reload: %s unchanged", r->env.path);
	else
		reload_text(r, text, len, hash,
		            r->forced ? "SIGHUP" : "the file changed");
	free(text);
	diag_release(&d);
	return UINT64_MAX;
}

/* The scheduler's hook. */
static uint64_t reload_run(void *arg, uint64_t now)
{
	struct reload *r = arg;
	bool hup = hup_seen(r), hit = watch_hit(r);

	if (hup || hit) {
		if (!r->pending) {
			r->pending = true;
			r->forced = false;
			r->reads = 0;
			r->seen_ok = false;
			r->due = now;
		}
		r->forced |= hup;
	}
	if (!r->pending)
		return UINT64_MAX;
	if (r->due > now)
		return r->due;
	return round_step(r, now);
}

static int watch_setup(struct reload *r)
{
	char buf[PATH_MAX], *dir;

	if (snprintf(buf, sizeof buf, "%s", r->env.path) >= (int)sizeof buf)
		return SFS_EINVAL;
	r->watch_name = strdup(basename(buf));
	if (!r->watch_name)
		return SFS_ENOMEM;
	snprintf(buf, sizeof buf, "%s", r->env.path);
	dir = dirname(buf);
	r->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (r->inotify_fd < 0 ||
	    inotify_add_watch(r->inotify_fd, dir,
	                      /* Not IN_MODIFY: a file being written is read once
	                       * it is closed. */
	                      IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE |
	                          IN_ATTRIB) < 0) {
		log_warn("reload: cannot watch %s (%s); reloads on SIGHUP only", dir,
		         strerror(errno));
		if (r->inotify_fd >= 0)
			close(r->inotify_fd);
		r->inotify_fd = -1;
	}
	return 0;
}

int reload_new(const struct reload_env *env, struct reload **out)
{
	struct reload *r = calloc(1, sizeof *r);
	unsigned char *text = NULL;
	size_t len = 0;
	struct diag d;
	int rc = SFS_ENOMEM;

	if (!r)
		return SFS_ENOMEM;
	r->env = *env;
	r->cfg = env->cfg;
	r->backends = env->backends;
	r->inotify_fd = -1;
	r->hup_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (r->hup_fd < 0) {
		rc = SFS_EIO;
		goto out;
	}
	rc = watch_setup(r);
	if (rc < 0)
		goto out;
	/* The running text: what the next rounds compare with. It was read a
	 * moment ago; a change since then is caught by the first event. */
	diag_init(&d, env->path);
	if (read_config(r, &d, &text, &len, r->hash) == 0) {
		r->have_hash = true;
		r->root_json = fixed_sections(text, len);
	}
	free(text);
	diag_release(&d);
	r->stats = stats_register(env->stats, &reload_family, NULL);
	sched_set_hook(env->sched, &(struct sched_hook){.fd = {r->hup_fd, r->inotify_fd},
	                                                .run = reload_run,
	                                                .arg = r});
	*out = r;
	return 0;
out:
	reload_free(r);
	return rc;
}

void reload_free(struct reload *r)
{
	if (!r)
		return;
	if (hup_fd_for_signal == r->hup_fd)
		set_hup_handler(-1);
	if (r->hup_fd >= 0)
		close(r->hup_fd);
	if (r->inotify_fd >= 0)
		close(r->inotify_fd);
	for (size_t i = 0; i < r->nmade; i++)
		r->made[i]->ops->free(r->made[i]);
	free(r->made);
	if (r->owned_backends)
		free(r->backends);
	config_free(r->owned_cfg);
	for (size_t i = 0; i < r->npinned; i++)
		config_free(r->pinned[i]);
	free(r->pinned);
	json_decref(r->root_json);
	free(r->watch_name);
	free(r);
}
