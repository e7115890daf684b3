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

#include "onchange.h"
#include "publish.h"
#include "source.h"
#include "secretfs/error.h"
#include "secretfs/fs.h"
#include "secretfs/log.h"
#include "secretfs/render.h"
#include "secretfs/secmem.h"
#include "secretfs/stats.h"
#include "secretfs/store.h"

struct publish {
	const struct config *cfg; /* borrowed */
	struct fs *fs;            /* borrowed */
	struct store *store;      /* borrowed */
	struct stats *stats;      /* borrowed */
	struct monitor *mon;      /* borrowed, may be NULL */
	unsigned char *hash_key;  /* secmem */
	struct sched_file *files; /* room for cfg->nsecrets */
	size_t nfiles;

	/* Guards the on_change actions, which workers trigger and the
	 * scheduler thread runs. */
	pthread_mutex_t lock;
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
	p->hash_key = secmem_alloc(crypto_generichash_KEYBYTES);
	p->files = calloc(cfg->nsecrets ? cfg->nsecrets : 1, sizeof *p->files);
	if (!p->hash_key || !p->files) {
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

int publish_add_file(struct publish *p, const struct config_secret *cs,
                     struct sched_file **out)
{
	const struct config *cfg = p->cfg;
	struct sched_file *f;
	int rc;

	if (p->nfiles >= cfg->nsecrets)
		return SFS_EINVAL;
	f = &p->files[p->nfiles++];
	f->cs = cs;
	f->stats = stats_register(p->stats, &file_family, cs->name);
	rc = fs_add_file(p->fs, cs->name, cs->has_mode ? cs->mode : cfg->mount.mode,
	                 cs->has_uid ? cs->uid : cfg->mount.uid,
	                 cs->has_gid ? cs->gid : cfg->mount.gid, &f->fs_id);
	if (rc < 0)
		return rc;
	rc = publish_add_action(p, f);
	if (rc < 0)
		return rc;
	*out = f;
	return 0;
}

/* Records (or clears, with NULL) why a file could not be rendered. */
static void file_set_problem(struct sched_file *f, const char *why)
{
	free(f->problem);
	f->problem = why ? strdup(why) : NULL;
}

/* Renders one file from value; on a change seals it into *upd and its
 * keyed hash into hash (kept once published). Returns 1 when changed, 0
 * when the content is the same, negative on failure. */
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
	struct store_blob *blob = NULL;
	struct backend_error err = {0};
	int rc;

	secbuf_init(&out, RENDER_MAX_LEN);
	rc = render(&spec, value, &out, &err);
	if (rc < 0) {
		log_event(LOG_LVL_ERROR,
		          &(struct log_fields){.event = "file.render_failed",
		                               .file = cs->name,
		                               .source = src->label,
		                               .backend = src->be->name},
		          "file %s: cannot render from %s: %s; keeping %s", cs->name,
		          src->label, err.msg[0] ? err.msg : sfs_strerror(rc),
		          f->version ? "the last good content" : "it absent");
		file_set_problem(f, err.msg[0] ? err.msg : sfs_strerror(rc));
		goto out;
	}
	file_set_problem(f, NULL);
	crypto_generichash(hash, HASH_LEN, out.data, out.len, p->hash_key,
	                   crypto_generichash_KEYBYTES);
	if (f->version && sodium_memcmp(hash, f->hash, HASH_LEN) == 0) {
		rc = 0;
		goto out;
	}
	rc = store_seal(p->store, cs->name, f->version + 1, out.data, out.len, &blob);
	if (rc < 0)
		goto out;
	upd->id = f->fs_id;
	upd->blob = blob;
	upd->version = f->version + 1;
	rc = 1;
out:
	secbuf_release(&out);
	return rc;
}

int publish_source(struct publish *p, struct source *src, const json_t *value,
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
		int r = render_file(p, src, src->files[i], value, &upd[n], hashes[n]);
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

void publish_withdraw(struct publish *p, struct source *src)
{
	struct fs_update *upd = calloc(src->nfiles, sizeof *upd);

	if (!upd)
		return;
	for (size_t i = 0; i < src->nfiles; i++)
		upd[i].id = src->files[i]->fs_id;
	fs_publish(p->fs, upd, src->nfiles);
	free(upd);
	for (size_t i = 0; i < src->nfiles; i++)
		__atomic_store_n(&src->files[i]->version, 0, __ATOMIC_RELAXED);
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
		n += __atomic_load_n(&p->files[i].version, __ATOMIC_RELAXED) != 0;
	return n;
}

void publish_free(struct publish *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->nfiles; i++)
		free(p->files[i].problem);
	for (size_t i = 0; i < p->nactions; i++)
		onchange_free(p->actions[i]);
	free(p->actions);
	free(p->files);
	secmem_free(p->hash_key);
	pthread_mutex_destroy(&p->lock);
	free(p);
}
