/*
 * The publisher (see publish.h). Plaintext exists here only while a file
 * is rendered, in guarded memory; what leaves is a sealed blob and a keyed
 * hash (under a key of the publisher's, so unchanged content is known
 * without keeping it).
 */
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "ctmpl.h"
#include "onchange.h"
#include "publish.h"
#include "source.h"
#include "secretfs/error.h"
#include "secretfs/fs.h"
#include "secretfs/log.h"
#include "secretfs/render.h"
#include "secretfs/secjson.h"
#include "secretfs/secmem.h"
#include "secretfs/stats.h"
#include "secretfs/store.h"

struct publish {
	const struct config *cfg;  /* borrowed; replaced by publish_set_config */
	struct fs *fs;             /* borrowed */
	struct store *store;       /* borrowed */
	struct stats *stats;       /* borrowed */
	struct monitor *mon;       /* borrowed, may be NULL */
	unsigned char *hash_key;   /* secmem */
	struct sched_file **files; /* each owned; removed ones kept for re-adding */
	size_t nfiles;
	size_t nremoved; /* of files: none to look for while adding 100 000 at start */

	/* Guards the on_change actions, which workers trigger and the
	 * scheduler thread runs. */
	pthread_mutex_t lock;
	/* Guards the consul-template files and the replies their sources
	 * keep: the workers of several sources render the same file. */
	pthread_mutex_t tmpl_lock;
	struct onchange **actions;
	size_t nactions;
};

/* The metrics of each file (stats.h). */
enum { FILE_UPDATES, FILE_RENDER_FAILURES };
static const struct stats_field file_fields[] = {
    [FILE_UPDATES] = {STATS_COUNTER, "secretfs_file_updates_total",
                      "New versions of the file published"},
    [FILE_RENDER_FAILURES] = {STATS_COUNTER, "secretfs_file_render_failures_total",
                              "Times the file could not be rendered from its source"},
};
static const struct stats_family file_family = {
    file_fields, sizeof file_fields / sizeof file_fields[0], "file"};

int publish_new(const struct config *cfg, struct fs *fs, struct store *st,
                struct stats *stats, struct monitor *mon, struct publish **out)
{
	struct publish *p = calloc(1, sizeof *p);

	if (!p)
		return SFS_ENOMEM;
	p->cfg = cfg;
	p->fs = fs;
	p->store = st;
	p->stats = stats;
	p->mon = mon;
	pthread_mutex_init(&p->lock, NULL);
	pthread_mutex_init(&p->tmpl_lock, NULL);
	p->hash_key = secmem_alloc(crypto_generichash_KEYBYTES);
	if (!p->hash_key) {
		publish_free(p);
		return SFS_ENOMEM;
	}
	randombytes_buf(p->hash_key, crypto_generichash_KEYBYTES);
	*out = p;
	return 0;
}

/* Gives f the action its config names, shared with the files that name
 * the same one. */
static int publish_add_action(struct publish *p, struct sched_file *f)
{
	const struct config_onchange *oc = f->cs->on_change;
	struct onchange **grown;

	if (!oc)
		return 0;
	for (size_t i = 0; i < p->nactions; i++) {
		if (onchange_same(p->actions[i], oc)) {
			f->action = p->actions[i];
			return 0;
		}
	}
	grown = realloc(p->actions, (p->nactions + 1) * sizeof *grown);
	if (!grown)
		return SFS_ENOMEM;
	p->actions = grown;
	f->action = onchange_new(oc, p->stats, p->mon);
	if (!f->action)
		return SFS_ENOMEM;
	p->actions[p->nactions++] = f->action;
	return 0;
}

/* Records (or clears, with NULL) why a file could not be rendered. */
static void file_set_problem(struct sched_file *f, const char *why)
{
	free(f->problem);
	f->problem = why ? strdup(why) : NULL;
}

/* The mode and owner of the file of cs: its own, else the mount's. */
static void file_attrs(const struct config *cfg, const struct config_secret *cs,
                       mode_t *mode, uid_t *uid, gid_t *gid)
{
	*mode = cs->has_mode ? cs->mode : cfg->mount.mode;
	*uid = cs->has_uid ? cs->uid : cfg->mount.uid;
	*gid = cs->has_gid ? cs->gid : cfg->mount.gid;
}

/* A file removed by a reload and named again is the same file (its
 * metrics and fs id); NULL when there is none. */
static struct sched_file *removed_file(struct publish *p, const char *name)
{
	if (!p->nremoved)
		return NULL;
	for (size_t i = 0; i < p->nfiles; i++)
		if (p->files[i]->removed && strcmp(p->files[i]->name, name) == 0)
			return p->files[i];
	return NULL;
}

int publish_add_file(struct publish *p, const struct config_secret *cs,
                     struct sched_file **out)
{
	struct sched_file *f = removed_file(p, cs->name), **grown;
	bool fresh = !f;
	size_t len;
	mode_t mode;
	uid_t uid;
	gid_t gid;
	int rc;

	if (fresh) {
		grown = realloc(p->files, (p->nfiles + 1) * sizeof *grown);
		if (!grown)
			return SFS_ENOMEM;
		p->files = grown;
		/* The name in the same block: one allocation fewer a file. */
		len = strlen(cs->name) + 1;
		f = calloc(1, sizeof *f + len);
		if (!f)
			return SFS_ENOMEM;
		memcpy(f->name, cs->name, len);
		p->files[p->nfiles++] = f;
		f->stats = stats_register(p->stats, &file_family, cs->name);
	}
	f->cs = cs;
	f->action = NULL;
	file_attrs(p->cfg, cs, &mode, &uid, &gid);
	rc = fs_add_file(p->fs, cs->name, mode, uid, gid, &f->fs_id);
	if (rc < 0) {
		p->nremoved += !f->removed;
		f->removed = true;
		f->cs = NULL;
		return rc;
	}
	p->nremoved -= f->removed;
	f->removed = false;
	rc = publish_add_action(p, f);
	if (rc < 0)
		return rc;
	*out = f;
	return 0;
}

void publish_set_config(struct publish *p, const struct config *cfg)
{
	p->cfg = cfg;
}

int publish_remove_file(struct publish *p, struct sched_file *f)
{
	int rc = fs_remove_file(p->fs, f->fs_id);

	if (rc < 0)
		return rc;
	__atomic_store_n(&f->version, 0, __ATOMIC_RELAXED);
	memset(f->hash, 0, sizeof f->hash);
	file_set_problem(f, NULL);
	p->nremoved += !f->removed;
	f->removed = true;
	f->source = NULL;
	f->cs = NULL;
	f->action = NULL;
	return 0;
}

/* Whether two secrets render the same bytes from the same value. */
static bool same_rendering(const struct config_secret *a, const struct config_secret *b)
{
	return a->format == b->format && a->decode_base64 == b->decode_base64 &&
	       (a->field && b->field ? strcmp(a->field, b->field) == 0
	                             : a->field == b->field) &&
	       (a->template_text && b->template_text
	            ? strcmp(a->template_text, b->template_text) == 0
	            : a->template_text == b->template_text);
}

int publish_rebind_file(struct publish *p, const struct config *old_cfg,
                        struct sched_file *f, const struct config_secret *cs)
{
	mode_t m0, m1;
	uid_t u0, u1;
	gid_t g0, g1;
	int rc = 0;

	file_attrs(old_cfg, f->cs, &m0, &u0, &g0);
	file_attrs(p->cfg, cs, &m1, &u1, &g1);
	if (m0 != m1 || u0 != u1 || g0 != g1) {
		rc = fs_set_file_attrs(p->fs, f->fs_id, m1, u1, g1);
		if (rc < 0)
			return rc;
		log_event(
		    LOG_LVL_INFO,
		    &(struct log_fields){.event = "config.file_attrs", .file = cs->name},
		    "file %s: mode %04o owner %u:%u (was %04o %u:%u)", cs->name,
		    (unsigned)m1, (unsigned)u1, (unsigned)g1, (unsigned)m0, (unsigned)u0,
		    (unsigned)g0);
	}
	rc = same_rendering(f->cs, cs) ? 0 : 1;
	f->cs = cs;
	/* The actions borrow their config: each file looks its own up again
	 * (an unchanged one is found among the shared ones). */
	f->action = NULL;
	if (publish_add_action(p, f) < 0)
		return SFS_ENOMEM;
	return rc;
}

void publish_rebind_actions(struct publish *p)
{
	/* An action no file names any more is dropped; the others take the
	 * config of the first file naming them. */
	size_t kept = 0;

	pthread_mutex_lock(&p->lock);
	for (size_t i = 0; i < p->nactions; i++) {
		const struct config_onchange *oc = NULL;

		for (size_t j = 0; j < p->nfiles && !oc; j++)
			if (p->files[j]->action == p->actions[i])
				oc = p->files[j]->cs->on_change;
		if (!oc) {
			onchange_free(p->actions[i]);
			continue;
		}
		onchange_rebind(p->actions[i], oc);
		p->actions[kept++] = p->actions[i];
	}
	p->nactions = kept;
	pthread_mutex_unlock(&p->lock);
}

/* Logs and records why f could not be rendered from src. */
static void render_failed(struct sched_file *f, const struct source *src, int rc,
                          const char *msg)
{
	const char *why = msg[0] ? msg : sfs_strerror(rc);

	log_event(LOG_LVL_ERROR,
	          &(struct log_fields){.event = "file.render_failed",
	                               .file = f->cs->name,
	                               .source = src->label,
	                               .backend = src->be->name},
	          "file %s: cannot render from %s: %s; keeping %s", f->cs->name,
	          src->label, why, f->version ? "the last good content" : "it absent");
	file_set_problem(f, why);
}

/* The rendered content out of f: when it changed, seals it into *upd and
 * its keyed hash into hash (kept once published). Returns 1 when changed,
 * 0 when the content is the same, negative on failure. */
static int seal_if_changed(struct publish *p, struct sched_file *f,
                           const struct secbuf *out, struct fs_update *upd,
                           unsigned char *hash)
{
	struct store_blob *blob = NULL;
	int rc;

	crypto_generichash(hash, HASH_LEN, out->data, out->len, p->hash_key,
	                   crypto_generichash_KEYBYTES);
	if (f->version && sodium_memcmp(hash, f->hash, HASH_LEN) == 0)
		return 0;
	rc =
	    store_seal(p->store, f->cs->name, f->version + 1, out->data, out->len, &blob);
	if (rc < 0)
		return rc;
	upd->id = f->fs_id;
	upd->blob = blob;
	upd->version = f->version + 1;
	return 1;
}

/* Renders one file from value (seal_if_changed). */
static int render_file(struct publish *p, struct source *src, struct sched_file *f,
                       const json_t *value, struct fs_update *upd, unsigned char *hash)
{
	const struct config_secret *cs = f->cs;
	struct render_spec spec = {
	    .format = cs->format,
	    .field = cs->field,
	    .template_text = cs->template_text,
	    .decode_base64 = cs->decode_base64,
	};
	struct secbuf out;
	struct backend_error err = {0};
	int rc;

	secbuf_init(&out, RENDER_MAX_LEN);
	rc = render(&spec, value, &out, &err);
	if (rc < 0) {
		render_failed(f, src, rc, err.msg);
	} else {
		file_set_problem(f, NULL);
		rc = seal_if_changed(p, f, &out, upd, hash);
	}
	secbuf_release(&out);
	return rc;
}

/* Keeps json (may be NULL: forgets it) sealed in slot of src; false when
 * it could not (logged, the slot emptied). */
static bool keep_json(struct publish *p, struct source *src, struct store_slot *slot,
                      const json_t *json, const char *what)
{
	char *text;
	int rc;

	if (!json) {
		store_slot_clear(slot);
		return true;
	}
	text = json_dumps(json, JSON_COMPACT | JSON_ENCODE_ANY);
	rc = text ? store_slot_put(p->store, slot, src->label, text, strlen(text))
	          : SFS_ENOMEM;
	secjson_free_buf(text);
	if (rc < 0) {
		store_slot_clear(slot);
		log_warn("source %s: cannot keep the %s sealed: %s", src->label, what,
		         sfs_strerror(rc));
		return false;
	}
	return true;
}

/* What slot of src keeps, parsed, into *out (NULL when it keeps nothing).
 * Returns 0 or a negative SFS_ code. */
static int kept_json(struct publish *p, const struct source *src,
                     const struct store_slot *slot, json_t **out)
{
	char *text = NULL;
	int rc = store_slot_get(p->store, slot, src->label, &text);

	*out = NULL;
	if (rc == SFS_ENOTFOUND)
		return 0;
	if (rc < 0)
		return rc;
	/* jansson's parse errors quote the input: not passed on. */
	*out = json_loads(text, JSON_DECODE_ANY, NULL);
	secmem_free(text);
	return *out ? 0 : SFS_EPARSE;
}

/*
 * Renders a consul-template file from the replies its sources keep
 * (seal_if_changed); src is the one being published. Returns 0 without
 * rendering while one of the others has none yet. Under the template
 * lock.
 */
static int render_ctmpl_file(struct publish *p, struct source *src, struct sched_file *f,
                             struct fs_update *upd, unsigned char *hash)
{
	const json_t **secrets = calloc(f->ncalls, sizeof *secrets);
	json_t **kept = calloc(f->ncalls, sizeof *kept);
	char msg[sizeof((struct backend_error *)0)->msg] = "";
	const struct source *failed = src;
	struct secbuf out;
	int rc = SFS_ENOMEM;

	secbuf_init(&out, RENDER_MAX_LEN);
	if (!secrets || !kept)
		goto out;
	for (size_t i = 0; i < f->ncalls; i++) {
		if ((rc = kept_json(p, f->calls[i], &f->calls[i]->reply, &kept[i])) < 0) {
			failed = f->calls[i];
			snprintf(msg, sizeof msg, "its kept reply cannot be read");
			goto out;
		}
		secrets[i] = kept[i];
		if (!secrets[i] && f->calls[i] == src) {
			snprintf(msg, sizeof msg, "the backend gave no reply to render");
			rc = SFS_EPARSE;
			goto out;
		}
		if (!secrets[i]) {
			rc = 0; /* rendered once that source is read */
			goto out;
		}
	}
	rc = ctmpl_render(f->cs->ctmpl, secrets, &out, msg, sizeof msg);
	if (rc == 0) {
		file_set_problem(f, NULL);
		rc = seal_if_changed(p, f, &out, upd, hash);
	}
out:
	if (rc < 0)
		render_failed(f, failed, rc, msg);
	secbuf_release(&out);
	for (size_t i = 0; kept && i < f->ncalls; i++)
		json_decref(kept[i]);
	free(kept);
	free(secrets);
	return rc;
}

/* Renders and publishes the files of src from value and the kept replies
 * (publish_source without keeping them). Under the template lock when src
 * feeds templates. */
static int publish_files(struct publish *p, struct source *src, const json_t *value,
                         uint64_t now)
{
	struct fs_update *upd = calloc(src->nfiles, sizeof *upd);
	struct sched_file **changed = calloc(src->nfiles, sizeof *changed);
	unsigned char(*hashes)[HASH_LEN] = calloc(src->nfiles, sizeof *hashes);
	size_t n = 0;
	int rc = SFS_EIO;

	if (!upd || !changed || !hashes) {
		log_error("source %s: out of memory while publishing", src->label);
		goto out;
	}
	for (size_t i = 0; i < src->nfiles; i++) {
		struct sched_file *f = src->files[i];
		int r = f->calls ? render_ctmpl_file(p, src, f, &upd[n], hashes[n])
		                 : render_file(p, src, f, value, &upd[n], hashes[n]);
		if (r < 0)
			stats_inc(src->files[i]->stats, FILE_RENDER_FAILURES);
		if (r == 1)
			changed[n++] = src->files[i];
	}
	rc = 0;
	if (n == 0)
		goto out;
	if (fs_publish(p->fs, upd, n) < 0) {
		log_event(LOG_LVL_ERROR, SOURCE_FIELDS(src, "source.publish_failed"),
		          "source %s: cannot publish %zu files", src->label, n);
		rc = SFS_EIO;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		struct sched_file *f = changed[i];
		bool first = f->version == 0;

		__atomic_store_n(&f->version, upd[i].version, __ATOMIC_RELAXED);
		stats_inc(f->stats, FILE_UPDATES);
		/* Only now: a failed publish must be tried again next time. */
		memcpy(f->hash, hashes[i], HASH_LEN);
		upd[i].blob = NULL; /* the fs owns it now */
		log_event(LOG_LVL_INFO,
		          &(struct log_fields){
		              .event = (first ? "file.published" : "file.updated"),
		              .file = f->cs->name,
		              .source = src->label,
		              .backend = src->be->name,
		              .version = f->version},
		          "file %s: %s version %llu from %s", f->cs->name,
		          first ? "published" : "updated to",
		          (unsigned long long)f->version, src->label);
		if (!first && f->action) {
			pthread_mutex_lock(&p->lock);
			onchange_trigger(f->action, f->cs->name, now);
			pthread_mutex_unlock(&p->lock);
		}
	}
	stats_inc(src->stats, SRC_PUBLISHES);
out:
	if (upd)
		for (size_t i = 0; i < n; i++)
			store_blob_free(upd[i].blob);
	free(upd);
	free(changed);
	free(hashes);
	return rc;
}

int publish_source(struct publish *p, struct source *src, const struct fetch_result *res,
                   uint64_t now)
{
	int rc;

	/* Every reply is kept: a reload may give the source a consul-template
	 * file, rendered then without reading it again. */
	if (src->feeds_templates)
		pthread_mutex_lock(&p->tmpl_lock);
	keep_json(p, src, &src->reply, res->reply, "reply");
	rc = publish_files(p, src, res->value, now);
	if (src->feeds_templates)
		pthread_mutex_unlock(&p->tmpl_lock);
	/* A reload that changes how a file renders reads it again when the
	 * value could not be kept. */
	keep_json(p, src, &src->value, res->value, "value");
	return rc;
}

int publish_source_again(struct publish *p, struct source *src, uint64_t now)
{
	json_t *value;
	int rc = kept_json(p, src, &src->value, &value);

	if (rc < 0)
		return rc;
	if (!value || (src->feeds_templates && !src->reply.blob)) {
		json_decref(value);
		return SFS_ENOTFOUND;
	}
	if (src->feeds_templates)
		pthread_mutex_lock(&p->tmpl_lock);
	rc = publish_files(p, src, value, now);
	if (src->feeds_templates)
		pthread_mutex_unlock(&p->tmpl_lock);
	json_decref(value);
	return rc;
}

void publish_withdraw(struct publish *p, struct source *src)
{
	struct fs_update *upd = calloc(src->nfiles, sizeof *upd);

	if (src->feeds_templates)
		pthread_mutex_lock(&p->tmpl_lock);
	keep_json(p, src, &src->reply, NULL, "reply");
	if (upd) {
		for (size_t i = 0; i < src->nfiles; i++)
			upd[i].id = src->files[i]->fs_id;
		fs_publish(p->fs, upd, src->nfiles);
		free(upd);
		for (size_t i = 0; i < src->nfiles; i++)
			__atomic_store_n(&src->files[i]->version, 0, __ATOMIC_RELAXED);
	}
	if (src->feeds_templates)
		pthread_mutex_unlock(&p->tmpl_lock);
}

uint64_t publish_run_actions(struct publish *p, uint64_t now)
{
	uint64_t next = UINT64_MAX, t;

	pthread_mutex_lock(&p->lock);
	for (size_t i = 0; i < p->nactions; i++) {
		t = onchange_poll(p->actions[i], now);
		next = t < next ? t : next;
	}
	pthread_mutex_unlock(&p->lock);
	return next;
}

size_t publish_count(const struct publish *p)
{
	size_t n = 0;

	for (size_t i = 0; i < p->nfiles; i++)
		n += __atomic_load_n(&p->files[i]->version, __ATOMIC_RELAXED) != 0;
	return n;
}

void publish_free(struct publish *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->nfiles; i++) {
		free(p->files[i]->problem);
		free(p->files[i]->calls);
		free(p->files[i]);
	}
	for (size_t i = 0; i < p->nactions; i++)
		onchange_free(p->actions[i]);
	free(p->actions);
	free(p->files);
	secmem_free(p->hash_key);
	pthread_mutex_destroy(&p->lock);
	pthread_mutex_destroy(&p->tmpl_lock);
	free(p);
}
