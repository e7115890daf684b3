/*
 * The scheduler (see scheduler.h). One thread runs a loop:
 *   - sources that are due run their next step: a full read (FETCH), a
 *     cheap version probe (PROBE) or a lease renewal (RENEW);
 *   - revocations of replaced leases whose grace period ended run;
 *   - on_change actions that are due run;
 *   - then it sleeps in poll(2) until the next due time, a backend's watch
 *     descriptor (the file backend's inotify) or a wake-up.
 * Each source has its own clock and its own backoff, so one failing source
 * never delays another. Rendering happens here, in guarded memory; only
 * sealed blobs reach the filesystem, and the fetched value is wiped as soon
 * as the files are rendered: between fetches no plaintext is held.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "onchange.h"
#include "scheduler.h"
#include "secretfs/error.h"
#include "secretfs/fs.h"
#include "secretfs/health.h"
#include "secretfs/http.h"
#include "secretfs/lease.h"
#include "secretfs/log.h"
#include "secretfs/render.h"
#include "secretfs/secjson.h"
#include "secretfs/secmem.h"
#include "secretfs/stats.h"
#include "secretfs/store.h"
#include "secretfs/timing.h"

#define SCHED_WORKERS 8 /* concurrent requests to network backends */
#define BACKOFF_BASE_MS 1000
#define BACKOFF_CAP_MS (5 * 60 * 1000)
#define HASH_LEN crypto_generichash_BYTES

enum source_step { STEP_FETCH, STEP_PROBE, STEP_RENEW };

struct sched_file {
	const struct config_secret *cs;
	size_t fs_id;
	uint64_t version;             /* of the published content; 0 = never published */
	unsigned char hash[HASH_LEN]; /* keyed hash of the published content */
	struct onchange *action;      /* shared; NULL when none */
	char *problem;                /* why the last render failed; NULL if it did not */
	struct stats_set *stats;      /* file_family; NULL-safe */
};

struct source {
	char *label; /* "backend:path" for logs */
	struct backend *be;
	struct source_key key;
	char *identity; /* backend + path + options, for sharing */
	struct sched_file **files;
	size_t nfiles;
	uint64_t refresh_ms;
	bool refresh_explicit; /* a file of it sets "refresh" */
	bool issued_logged;    /* "issued once, not again" said */

	enum source_step step;
	uint64_t due;
	unsigned attempt;  /* consecutive failures */
	bool ready;        /* read successfully at least once */
	bool settled;      /* ready, or failed in a way retrying will not cure */
	char problem[320]; /* why the last attempt failed (no secret values) */
	char version[128];

	/* The current lease, if the value is leased. */
	char lease_id[256];
	bool renewable;
	uint64_t lease_ms;      /* as first granted */
	uint64_t lease_expires; /* monotonic ms */
	uint64_t lease_issued;  /* monotonic ms */
	uint64_t auth_gen;      /* login the lease was made under */
	uint64_t deadline;      /* when that login's leases die; UINT64_MAX unknown */

	bool in_flight;          /* a worker runs its step (guarded by work_lock) */
	struct stats_set *stats; /* source_family; NULL-safe */
};

struct revocation {
	struct backend *be;
	struct stats_set *stats; /* of the source the lease came from */
	char lease_id[256];
	char *label;
	uint64_t due;
	struct revocation *next;
};

struct sched {
	const struct config *cfg;
	struct backend **backends;
	size_t nbackends;
	struct fs *fs;
	struct store *store;
	unsigned char *hash_key; /* secmem */

	struct source *sources;
	size_t nsources;
	struct sched_file *files;
	size_t nfiles;
	struct onchange **actions;
	size_t nactions;
	struct revocation *revocations;
	uint64_t *maintain_due; /* per backend */

	pthread_t thread;
	bool started;
	int wake_fd; /* eventfd */

	/* Workers for concurrent backends: a queue of sources to run. */
	pthread_t workers[SCHED_WORKERS];
	size_t nworkers;
	struct source **queue; /* ring of nsources entries */
	size_t qhead, qlen;
	pthread_mutex_t work_lock;
	pthread_cond_t work_cond;
	bool workers_stop;

	/* Guards the on_change actions and the revocation list, which
	 * workers and the scheduler thread both touch. */
	pthread_mutex_t shared_lock;

	pthread_mutex_t lock; /* guards the fields below */
	pthread_cond_t ready_cond;
	size_t nready, nsettled;
	bool stopping;
	struct stats *stats;      /* borrowed */
	uint64_t revoke_deadline; /* after sched_stop began; UINT64_MAX before */
};

/* The metrics of each source and file (stats.h). */
enum {
	SRC_READS,
	SRC_READ_FAILURES,
	SRC_PROBES,
	SRC_PUBLISHES,
	SRC_RENEWALS,
	SRC_RENEW_FAILURES,
	SRC_REPLACEMENTS,
	SRC_REVOCATIONS,
	SRC_REVOKE_FAILURES,
	SRC_EXPIRIES,
	SRC_FAILURES,
	SRC_LAST_SUCCESS,
	SRC_READY,
	SRC_LEASE_EXPIRY,
};
static const struct stats_dim reason_dim[] = {{"reason", backend_failure_reasons},
                                              {NULL, NULL}};
static const struct stats_field source_fields[] = {
    [SRC_READS] = {STATS_COUNTER, "secretfs_source_reads_total",
                   "Full reads of the source that succeeded"},
    [SRC_READ_FAILURES] = {STATS_COUNTER, "secretfs_source_read_failures_total",
                           "Full reads of the source that failed"},
    [SRC_PROBES] = {STATS_COUNTER, "secretfs_source_probes_total",
                    "Cheap version probes of the source"},
    [SRC_PUBLISHES] = {STATS_COUNTER, "secretfs_source_publishes_total",
                       "Times new content of the source's files was published"},
    [SRC_RENEWALS] = {STATS_COUNTER, "secretfs_lease_renewals_total",
                      "Lease renewals that succeeded"},
    [SRC_RENEW_FAILURES] = {STATS_COUNTER, "secretfs_lease_renewal_failures_total",
                            "Lease renewals that failed"},
    [SRC_REPLACEMENTS] = {STATS_COUNTER, "secretfs_lease_replacements_total",
                          "Leases replaced by a new one"},
    [SRC_REVOCATIONS] = {STATS_COUNTER, "secretfs_lease_revocations_total",
                         "Replaced (or, at shutdown, current) leases revoked"},
    [SRC_REVOKE_FAILURES] = {STATS_COUNTER, "secretfs_lease_revocation_failures_total",
                             "Lease revocations that failed"},
    [SRC_EXPIRIES] = {STATS_COUNTER, "secretfs_lease_expiries_total",
                      "Leases that expired before a replacement was read"},
    [SRC_FAILURES] = {STATS_COUNTER, "secretfs_source_failures_total",
                      "Failed reads, probes and renewals of the source, by reason",
                      reason_dim},
    [SRC_LAST_SUCCESS] = {STATS_GAUGE, "secretfs_source_last_success_timestamp_seconds",
                          "When the source was last read, probed or renewed (Unix time)"},
    [SRC_READY] = {STATS_GAUGE, "secretfs_source_ready",
                   "1 once the source was read, 0 before and after its lease expired"},
    [SRC_LEASE_EXPIRY] = {STATS_GAUGE, "secretfs_lease_expiry_timestamp_seconds",
                          "When the source's current lease expires (Unix time); 0: none"},
};
static const struct stats_family source_family = {
    source_fields, sizeof source_fields / sizeof source_fields[0], "source"};

enum { FILE_UPDATES, FILE_RENDER_FAILURES };
static const struct stats_field file_fields[] = {
    [FILE_UPDATES] = {STATS_COUNTER, "secretfs_file_updates_total",
                      "New versions of the file published"},
    [FILE_RENDER_FAILURES] = {STATS_COUNTER, "secretfs_file_render_failures_total",
                              "Times the file could not be rendered from its source"},
};
static const struct stats_family file_family = {
    file_fields, sizeof file_fields / sizeof file_fields[0], "file"};

/* The log fields (log.h) naming a source and its current lease, if any,
 * or a revocation; compound literals that live until the end of the
 * enclosing block. */
#define SOURCE_FIELDS(src, ev)                                                           \
	(&(struct log_fields){.event = (ev),                                             \
	                      .source = (src)->label,                                    \
	                      .backend = (src)->be->name,                                \
	                      .lease = (src)->lease_id[0] ? (src)->lease_id : NULL})
#define REVOCATION_FIELDS(r, ev)                                                         \
	(&(struct log_fields){.event = (ev),                                             \
	                      .source = (r)->label,                                      \
	                      .backend = (r)->be->name,                                  \
	                      .lease = (r)->lease_id})

static char *source_identity(const struct config_secret *cs)
{
	char *extra = json_dumps(cs->extra, JSON_COMPACT | JSON_SORT_KEYS);
	char *id = NULL;

	if (extra && asprintf(&id, "%s\n%s\n%s", cs->backend, cs->path, extra) < 0)
		id = NULL;
	secjson_free_buf(extra);
	return id;
}

static struct backend *backend_by_name(struct sched *s, const char *name)
{
	for (size_t i = 0; i < s->nbackends; i++)
		if (strcmp(s->backends[i]->name, name) == 0)
			return s->backends[i];
	return NULL;
}

static int sched_add_action(struct sched *s, struct sched_file *f)
{
	const struct config_onchange *oc = f->cs->on_change;
	struct onchange **grown;

	if (!oc)
		return 0;
	for (size_t i = 0; i < s->nactions; i++) {
		if (onchange_same(s->actions[i], oc)) {
			f->action = s->actions[i];
			return 0;
		}
	}
	grown = realloc(s->actions, (s->nactions + 1) * sizeof *grown);
	if (!grown)
		return SFS_ENOMEM;
	s->actions = grown;
	f->action = onchange_new(oc, s->cfg->mount.path, s->stats);
	if (!f->action)
		return SFS_ENOMEM;
	s->actions[s->nactions++] = f->action;
	return 0;
}

/* Finds or creates the source for a secret and attaches the file to it. */
static int sched_attach(struct sched *s, struct sched_file *f)
{
	const struct config_secret *cs = f->cs;
	struct source *src = NULL;
	struct sched_file **grown;
	char *id = source_identity(cs);
	uint64_t refresh;

	if (!id)
		return SFS_ENOMEM;
	for (size_t i = 0; i < s->nsources; i++) {
		if (strcmp(s->sources[i].identity, id) == 0) {
			src = &s->sources[i];
			free(id);
			break;
		}
	}
	if (!src) {
		src = &s->sources[s->nsources++];
		src->identity = id;
		src->be = backend_by_name(s, cs->backend);
		src->key.path = cs->path;
		src->key.extra = cs->extra;
		if (asprintf(&src->label, "%s:%s", cs->backend, cs->path) < 0) {
			src->label = NULL;
			return SFS_ENOMEM;
		}
		if (!src->be)
			return SFS_EINVAL;
		src->refresh_ms = UINT64_MAX;
		src->step = STEP_FETCH;
		src->stats = stats_register(s->stats, &source_family, src->label);
	}
	if (cs->refresh_ms)
		src->refresh_explicit = true;
	refresh = cs->refresh_ms ? cs->refresh_ms : src->be->ops->default_refresh_ms;
	if (refresh < src->refresh_ms)
		src->refresh_ms = refresh;
	grown = realloc(src->files, (src->nfiles + 1) * sizeof *grown);
	if (!grown)
		return SFS_ENOMEM;
	src->files = grown;
	src->files[src->nfiles++] = f;
	return 0;
}

int sched_new(const struct config *cfg, struct backend **backends, struct fs *fs,
              struct store *st, struct stats *stats, struct sched **out)
{
	struct sched *s = calloc(1, sizeof *s);
	int rc = SFS_ENOMEM;

	if (!s)
		return SFS_ENOMEM;
	s->cfg = cfg;
	s->backends = backends;
	s->nbackends = cfg->nbackends;
	s->fs = fs;
	s->store = st;
	s->stats = stats;
	s->wake_fd = -1;
	s->revoke_deadline = UINT64_MAX;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->ready_cond, NULL);
	pthread_mutex_init(&s->work_lock, NULL);
	pthread_cond_init(&s->work_cond, NULL);
	pthread_mutex_init(&s->shared_lock, NULL);
	s->hash_key = secmem_alloc(crypto_generichash_KEYBYTES);
	s->sources = calloc(cfg->nsecrets ? cfg->nsecrets : 1, sizeof *s->sources);
	s->files = calloc(cfg->nsecrets ? cfg->nsecrets : 1, sizeof *s->files);
	s->maintain_due =
	    calloc(cfg->nbackends ? cfg->nbackends : 1, sizeof *s->maintain_due);
	s->queue = calloc(cfg->nsecrets ? cfg->nsecrets : 1, sizeof *s->queue);
	if (!s->hash_key || !s->sources || !s->files || !s->maintain_due || !s->queue)
		goto out;
	randombytes_buf(s->hash_key, crypto_generichash_KEYBYTES);
	s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->wake_fd < 0) {
		rc = SFS_EIO;
		goto out;
	}
	for (size_t i = 0; i < cfg->nsecrets; i++) {
		const struct config_secret *cs = &cfg->secrets[i];
		struct sched_file *f = &s->files[s->nfiles++];

		f->cs = cs;
		f->stats = stats_register(s->stats, &file_family, cs->name);
		rc = fs_add_file(fs, cs->name, cs->has_mode ? cs->mode : cfg->mount.mode,
		                 cs->has_uid ? cs->uid : cfg->mount.uid,
		                 cs->has_gid ? cs->gid : cfg->mount.gid, &f->fs_id);
		if (rc < 0)
			goto out;
		rc = sched_attach(s, f);
		if (rc < 0)
			goto out;
		rc = sched_add_action(s, f);
		if (rc < 0)
			goto out;
	}
	*out = s;
	s = NULL;
	rc = 0;
out:
	sched_free(s);
	return rc;
}

size_t sched_source_count(const struct sched *s)
{
	return s->nsources;
}

size_t sched_published_count(const struct sched *s)
{
	size_t n = 0;

	for (size_t i = 0; i < s->nfiles; i++)
		n += s->files[i].version != 0;
	return n;
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
static int render_file(struct sched *s, struct source *src, struct sched_file *f,
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
	char err[256] = "";
	int rc;

	secbuf_init(&out, RENDER_MAX_LEN);
	rc = render(&spec, value, &out, err, sizeof err);
	if (rc < 0) {
		log_event(LOG_LVL_ERROR,
		          &(struct log_fields){.event = "file.render_failed",
		                               .file = cs->name,
		                               .source = src->label,
		                               .backend = src->be->name},
		          "file %s: cannot render from %s: %s; keeping %s", cs->name,
		          src->label, err[0] ? err : sfs_strerror(rc),
		          f->version ? "the last good content" : "it absent");
		file_set_problem(f, err[0] ? err : sfs_strerror(rc));
		goto out;
	}
	file_set_problem(f, NULL);
	crypto_generichash(hash, HASH_LEN, out.data, out.len, s->hash_key,
	                   crypto_generichash_KEYBYTES);
	if (f->version && sodium_memcmp(hash, f->hash, HASH_LEN) == 0) {
		rc = 0;
		goto out;
	}
	rc = store_seal(s->store, cs->name, f->version + 1, out.data, out.len, &blob);
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

/* Renders and publishes every file of src from value, atomically.
 * Returns 0, or SFS_EIO when the changed files could not be published
 * (nothing of them changed; the caller retries). */
static int source_publish(struct sched *s, struct source *src, const json_t *value,
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
		int r = render_file(s, src, src->files[i], value, &upd[n], hashes[n]);
		if (r < 0)
			stats_inc(src->files[i]->stats, FILE_RENDER_FAILURES);
		if (r == 1)
			changed[n++] = src->files[i];
	}
	rc = 0;
	if (n == 0)
		goto out;
	if (fs_publish(s->fs, upd, n) < 0) {
		log_event(LOG_LVL_ERROR, SOURCE_FIELDS(src, "source.publish_failed"),
		          "source %s: cannot publish %zu files", src->label, n);
		rc = SFS_EIO;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		struct sched_file *f = changed[i];
		bool first = f->version == 0;

		f->version = upd[i].version;
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
			pthread_mutex_lock(&s->shared_lock);
			onchange_trigger(f->action, f->cs->name, now);
			pthread_mutex_unlock(&s->shared_lock);
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

static void source_mark_ready(struct sched *s, struct source *src)
{
	src->problem[0] = '\0';
	stats_set_value(src->stats, SRC_READY, 1);
	if (src->ready)
		return;
	src->ready = true;
	pthread_mutex_lock(&s->lock);
	s->nready++;
	if (!src->settled)
		s->nsettled++;
	src->settled = true;
	pthread_cond_broadcast(&s->ready_cond);
	pthread_mutex_unlock(&s->lock);
}

/* A failure of a source never read yet that retrying will not cure (not
 * found, denied, malformed) settles it for sched_wait_settled. */
static void source_mark_settled(struct sched *s, struct source *src, int rc)
{
	if (src->settled || rc == SFS_ETRANSIENT)
		return;
	pthread_mutex_lock(&s->lock);
	src->settled = true;
	s->nsettled++;
	pthread_cond_broadcast(&s->ready_cond);
	pthread_mutex_unlock(&s->lock);
}

static void schedule_revocation(struct sched *s, struct source *src, uint64_t now,
                                bool shutdown)
{
	struct revocation *r = calloc(1, sizeof *r);

	if (!r || !(r->label = strdup(src->label))) {
		free(r);
		log_error("source %s: out of memory; lease %s will not be revoked",
		          src->label, src->lease_id);
		return;
	}
	r->be = src->be;
	r->stats = src->stats;
	snprintf(r->lease_id, sizeof r->lease_id, "%s", src->lease_id);
	r->due = now + src->be->revoke_grace_ms;
	pthread_mutex_lock(&s->shared_lock);
	r->next = s->revocations;
	s->revocations = r;
	pthread_mutex_unlock(&s->shared_lock);
	if (!shutdown)
		log_event(LOG_LVL_INFO, SOURCE_FIELDS(src, "lease.replaced"),
		          "source %s: lease %s replaced; revoking it in %llu ms",
		          src->label, src->lease_id,
		          (unsigned long long)src->be->revoke_grace_ms);
}

/* After a failure: back off, and make files absent once a lease has truly
 * expired (they would only hand out dead credentials). */
static void source_failed(struct sched *s, struct source *src, int rc,
                          const struct backend_error *err, const char *what,
                          const char *event, uint64_t now)
{
	uint64_t delay = timing_backoff(src->attempt, BACKOFF_BASE_MS, BACKOFF_CAP_MS,
	                                err->retry_after_ms, timing_random());

	/* Cut by the stop: nothing failed, and nothing is to change. */
	if (rc == SFS_ECANCELED) {
		log_debug("source %s: %s cancelled (stopping)", src->label, what);
		return;
	}

	src->attempt++;
	stats_inc_at(src->stats, SRC_FAILURES, backend_failure_reason(rc));
	src->due = now + delay;
	snprintf(src->problem, sizeof src->problem, "%s%s%s", sfs_strerror(rc),
	         err->msg[0] ? ": " : "", err->msg);
	source_mark_settled(s, src, rc);
	log_event(LOG_LVL_WARN, SOURCE_FIELDS(src, event),
	          "source %s: %s failed (attempt %u): %s%s%s; retrying in %llu ms%s",
	          src->label, what, src->attempt, sfs_strerror(rc),
	          err->msg[0] ? ": " : "", err->msg, (unsigned long long)delay,
	          src->ready ? "; serving the last good value" : "");

	if (src->lease_id[0] && now >= src->lease_expires) {
		struct fs_update *upd = calloc(src->nfiles, sizeof *upd);
		log_event(
		    LOG_LVL_ERROR, SOURCE_FIELDS(src, "lease.expired"),
		    "source %s: lease %s expired; its files are removed until a new "
		    "value is read",
		    src->label, src->lease_id);
		if (upd) {
			for (size_t i = 0; i < src->nfiles; i++)
				upd[i].id = src->files[i]->fs_id;
			fs_publish(s->fs, upd, src->nfiles);
			free(upd);
			for (size_t i = 0; i < src->nfiles; i++)
				src->files[i]->version = 0;
		}
		src->lease_id[0] = '\0';
		src->step = STEP_FETCH;
		stats_inc(src->stats, SRC_EXPIRIES);
		stats_set_value(src->stats, SRC_READY, 0);
		stats_set_value(src->stats, SRC_LEASE_EXPIRY, 0);
	}
	/* A renewal that keeps failing must not outlive the lease: replace. */
	if (src->step == STEP_RENEW && src->lease_id[0] &&
	    src->due + BACKOFF_BASE_MS >= src->lease_expires)
		src->step = STEP_FETCH;
}

/*
 * Plans the next step of a leased source that has left ms of lease from
 * now (lease.h): renew while a renewal still buys enough time, else fetch
 * a replacement before the end; the login that made the lease ending
 * first caps it too.
 */
static void lease_plan(struct source *src, uint64_t now, uint64_t left, bool capped)
{
	struct lease_terms terms = {
	    .issued = src->lease_issued,
	    .life_ms = src->lease_ms,
	    .renewable = src->renewable && src->be->ops->renew,
	    .capped = capped,
	};

	if (src->deadline != UINT64_MAX && src->deadline > now &&
	    src->deadline - now < left) {
		left = src->deadline - now;
		terms.capped = true;
	}
	src->lease_expires = now + left;
	stats_set_value(src->stats, SRC_LEASE_EXPIRY,
	                timing_unix_s_of(src->lease_expires));
	src->step =
	    lease_next(&terms, now, left, timing_random(), &src->due) == LEASE_RENEW
	        ? STEP_RENEW
	        : STEP_FETCH;
}

/* Leases die with the login that made them: when a backend learns when
 * that is, bring the replacement forward. Scheduler thread, source idle. */
static void lease_check_deadline(struct source *src, uint64_t now)
{
	uint64_t dl;

	if (!src->lease_id[0] || !src->be->ops->lease_deadline)
		return;
	dl = src->be->ops->lease_deadline(src->be, src->auth_gen);
	if (dl == src->deadline)
		return;
	src->deadline = dl;
	if (dl == UINT64_MAX || dl >= src->lease_expires)
		return;
	log_event(
	    LOG_LVL_INFO, SOURCE_FIELDS(src, "lease.login_ending"),
	    "source %s: lease %s ends with its login in %llu ms; replacing it first",
	    src->label, src->lease_id, (unsigned long long)(dl > now ? dl - now : 0));
	lease_plan(src, now, src->lease_expires > now ? src->lease_expires - now : 0,
	           true);
}

/* Next check of a static (unleased) source, after interval ms. */
static void source_schedule_static(struct source *src, uint64_t now, uint64_t interval)
{
	src->step = src->be->ops->probe && src->version[0] ? STEP_PROBE : STEP_FETCH;
	src->due = now + interval;
}

/*
 * Next read of a value that each read issues anew (fetch_result.issued): a
 * refresh would only re-issue it, so it is read again at ~2/3 of its own
 * validity (with jitter, never after its end), at the refresh the user set
 * if that comes first, else never while secretfs runs.
 */
static void source_schedule_issued(struct source *src, uint64_t now, uint64_t valid_ms)
{
	uint64_t after = UINT64_MAX;

	if (valid_ms)
		after = timing_renew_after(valid_ms, timing_random());
	if (src->refresh_explicit && src->refresh_ms < after)
		after = src->refresh_ms;
	src->step = STEP_FETCH;
	if (after == UINT64_MAX) {
		src->due = UINT64_MAX;
		if (!src->issued_logged)
			log_info("source %s: issued without a lease or a validity; not "
			         "issued again while secretfs runs (set \"refresh\" to "
			         "re-issue it periodically)",
			         src->label);
		src->issued_logged = true;
		return;
	}
	/* Even a value issued already expired is not re-issued in a loop. */
	src->due = now + (after < BACKOFF_BASE_MS ? BACKOFF_BASE_MS : after);
	log_debug("source %s: issued value valid for %llu ms; issuing a new one in "
	          "%llu ms",
	          src->label, (unsigned long long)valid_ms,
	          (unsigned long long)(src->due - now));
}

static void source_fetch(struct sched *s, struct source *src, uint64_t now)
{
	struct backend_error err = {0};
	struct fetch_result res = {0};
	bool had_lease = src->lease_id[0] != '\0';
	int rc, published;

	rc = backend_fetch(src->be, &src->key, &res, &err);
	if (rc < 0) {
		stats_inc(src->stats, SRC_READ_FAILURES);
		source_failed(s, src, rc, &err, "read", "source.read_failed", now);
		return;
	}
	stats_inc(src->stats, SRC_READS);
	stats_set_value(src->stats, SRC_LAST_SUCCESS, (int64_t)time(NULL));
	published = source_publish(s, src, res.value, now);
	src->attempt = published < 0 ? src->attempt + 1 : 0;
	snprintf(src->version, sizeof src->version, "%s", res.version);

	if (had_lease && strcmp(res.lease_id, src->lease_id) != 0) {
		stats_inc(src->stats, SRC_REPLACEMENTS);
		if (src->be->ops->revoke)
			schedule_revocation(s, src, now, false);
	}
	stats_set_value(src->stats, SRC_LEASE_EXPIRY, 0);
	if (res.lease_id[0]) {
		snprintf(src->lease_id, sizeof src->lease_id, "%s", res.lease_id);
		src->renewable = res.renewable;
		src->lease_ms = res.lease_ms;
		src->auth_gen = res.auth_generation;
		src->deadline = UINT64_MAX;
		src->lease_issued = now;
		lease_plan(src, now, res.lease_ms, false);
		log_event(LOG_LVL_DEBUG, SOURCE_FIELDS(src, "lease.granted"),
		          "source %s: lease %s for %llu ms, %s", src->label,
		          src->lease_id, (unsigned long long)res.lease_ms,
		          src->step == STEP_RENEW ? "renewable" : "to be replaced");
	} else if (res.issued) {
		src->lease_id[0] = '\0';
		source_schedule_issued(src, now, res.valid_ms);
	} else {
		src->lease_id[0] = '\0';
		source_schedule_static(
		    src, now,
		    src->ready ? src->refresh_ms
		               : timing_first_refresh(src->refresh_ms, timing_random()));
	}
	fetch_result_release(&res);
	source_mark_ready(s, src);
	if (published < 0) {
		/* The files could not be written (a full disk, say): read again
		 * soon, with backoff; the unchanged hash makes it publish. */
		uint64_t delay = timing_backoff(src->attempt - 1, BACKOFF_BASE_MS,
		                                BACKOFF_CAP_MS, 0, timing_random());
		if (now + delay < src->due || src->step != STEP_FETCH) {
			src->step = STEP_FETCH;
			src->due = now + delay;
		}
		log_warn("source %s: reading it again in %llu ms to publish", src->label,
		         (unsigned long long)(src->due - now));
	}
}

static void source_probe(struct sched *s, struct source *src, uint64_t now)
{
	struct backend_error err = {0};
	char version[sizeof src->version];
	int rc;

	stats_inc(src->stats, SRC_PROBES);
	rc = backend_probe(src->be, &src->key, version, sizeof version, &err);
	if (rc < 0) {
		source_failed(s, src, rc, &err, "version probe", "source.probe_failed",
		              now);
		return;
	}
	src->attempt = 0;
	stats_set_value(src->stats, SRC_LAST_SUCCESS, (int64_t)time(NULL));
	if (strcmp(version, src->version) == 0) {
		source_schedule_static(src, now, src->refresh_ms);
		return;
	}
	log_event(LOG_LVL_INFO, SOURCE_FIELDS(src, "source.changed"),
	          "source %s: version %s -> %s", src->label, src->version, version);
	source_fetch(s, src, now);
}

static void source_renew(struct sched *s, struct source *src, uint64_t now)
{
	struct backend_error err = {0};
	uint64_t left = 0;
	int rc;

	rc = backend_renew(src->be, src->lease_id, src->lease_ms, &left, &err);
	if (rc == SFS_ENOTFOUND || rc == SFS_EEXPIRED) {
		stats_inc(src->stats, SRC_RENEW_FAILURES);
		log_event(
		    LOG_LVL_WARN, SOURCE_FIELDS(src, "lease.unrenewable"),
		    "source %s: lease %s can no longer be renewed (%s); replacing it",
		    src->label, src->lease_id, err.msg);
		src->lease_id[0] = '\0';
		source_fetch(s, src, now);
		return;
	}
	if (rc < 0) {
		stats_inc(src->stats, SRC_RENEW_FAILURES);
		source_failed(s, src, rc, &err, "lease renewal", "lease.renew_failed",
		              now);
		return;
	}
	stats_inc(src->stats, SRC_RENEWALS);
	stats_set_value(src->stats, SRC_LAST_SUCCESS, (int64_t)time(NULL));
	src->attempt = 0;
	/* Vault grants the increment asked for unless max TTL caps it. */
	lease_plan(src, now, left, left + 1000 < src->lease_ms);
	if (src->step == STEP_FETCH) {
		log_event(LOG_LVL_INFO, SOURCE_FIELDS(src, "lease.renewed"),
		          "source %s: lease %s renewed for only %llu ms; replacing it in "
		          "%llu ms",
		          src->label, src->lease_id, (unsigned long long)left,
		          (unsigned long long)(src->due - now));
	} else {
		log_event(LOG_LVL_DEBUG, SOURCE_FIELDS(src, "lease.renewed"),
		          "source %s: lease %s renewed for %llu ms", src->label,
		          src->lease_id, (unsigned long long)left);
	}
}

static void source_run(struct sched *s, struct source *src, uint64_t now)
{
	switch (src->step) {
	case STEP_PROBE:
		source_probe(s, src, now);
		break;
	case STEP_RENEW:
		source_renew(s, src, now);
		break;
	case STEP_FETCH:
	default:
		source_fetch(s, src, now);
		break;
	}
}

/* Hands a due source of a concurrent backend to the workers. */
static void dispatch(struct sched *s, struct source *src)
{
	pthread_mutex_lock(&s->work_lock);
	if (!src->in_flight && s->qlen < s->nsources) {
		src->in_flight = true;
		s->queue[(s->qhead + s->qlen++) % s->nsources] = src;
		pthread_cond_signal(&s->work_cond);
	}
	pthread_mutex_unlock(&s->work_lock);
}

static bool source_busy(struct sched *s, struct source *src)
{
	bool busy;

	pthread_mutex_lock(&s->work_lock);
	busy = src->in_flight;
	pthread_mutex_unlock(&s->work_lock);
	return busy;
}

static void *worker_main(void *arg)
{
	struct sched *s = arg;
	uint64_t one = 1;

	pthread_mutex_lock(&s->work_lock);
	for (;;) {
		struct source *src;
		ssize_t r;

		while (!s->qlen && !s->workers_stop)
			pthread_cond_wait(&s->work_cond, &s->work_lock);
		if (s->workers_stop)
			break;
		src = s->queue[s->qhead];
		s->qhead = (s->qhead + 1) % s->nsources;
		s->qlen--;
		pthread_mutex_unlock(&s->work_lock);

		source_run(s, src, timing_now_ms());
		secmem_wipe_stack();

		pthread_mutex_lock(&s->work_lock);
		src->in_flight = false;
		/* Wake the scheduler: this source has a new due time. */
		r = write(s->wake_fd, &one, sizeof one);
		(void)r;
	}
	pthread_mutex_unlock(&s->work_lock);
	return NULL;
}

/* Runs every due source: network backends' on the workers, the others
 * here, bracketing each backend's round of reads. */
static void run_due_sources(struct sched *s, uint64_t now)
{
	for (size_t b = 0; b < s->nbackends; b++) {
		struct backend *be = s->backends[b];
		bool begun = false;

		for (size_t i = 0; i < s->nsources; i++) {
			struct source *src = &s->sources[i];
			if (src->be != be || source_busy(s, src))
				continue;
			lease_check_deadline(src, now);
			if (src->due > now)
				continue;
			if (be->ops->concurrent && s->nworkers) {
				dispatch(s, src);
				continue;
			}
			if (!begun && be->ops->batch_begin)
				be->ops->batch_begin(be);
			begun = true;
			source_run(s, src, now);
		}
		if (begun && be->ops->batch_end)
			be->ops->batch_end(be);
	}
}

static void revoke_one(struct sched *s, struct revocation *r)
{
	struct backend_error err = {0};
	bool stopping = s->revoke_deadline != UINT64_MAX;
	int rc;

	if (stopping && timing_now_ms() >= s->revoke_deadline) {
		backend_error_set(&err,
		                  "the shutdown budget (shutdown_timeout, %llu ms) "
		                  "was spent",
		                  (unsigned long long)s->cfg->shutdown_timeout_ms);
		rc = SFS_ECANCELED;
	} else {
		rc = backend_revoke(r->be, r->lease_id, &err);
	}
	if (rc < 0) {
		stats_inc(r->stats, SRC_REVOKE_FAILURES);
		log_event(LOG_LVL_WARN, REVOCATION_FIELDS(r, "lease.revoke_failed"),
		          stopping ? "source %s: lease %s not revoked: %s%s%s"
		                   : "source %s: cannot revoke lease %s: %s%s%s",
		          r->label, r->lease_id, sfs_strerror(rc), err.msg[0] ? ": " : "",
		          err.msg);
	} else {
		stats_inc(r->stats, SRC_REVOCATIONS);
		log_event(LOG_LVL_INFO, REVOCATION_FIELDS(r, "lease.revoked"),
		          "source %s: revoked lease %s", r->label, r->lease_id);
	}
}

/* Runs due revocations (all when force); returns the next due time. */
static uint64_t run_revocations(struct sched *s, uint64_t now, bool force)
{
	struct revocation **pp, *due = NULL;
	uint64_t next = UINT64_MAX;
	size_t left = 0;

	pthread_mutex_lock(&s->shared_lock);
	pp = &s->revocations;
	while (*pp) {
		struct revocation *r = *pp;
		if (force || r->due <= now) {
			*pp = r->next;
			r->next = due;
			due = r;
			continue;
		}
		if (r->due < next)
			next = r->due;
		pp = &r->next;
	}
	pthread_mutex_unlock(&s->shared_lock);
	for (struct revocation *q = due; q; q = q->next)
		left++;
	/* The network calls happen outside the lock. */
	for (; due; left--) {
		struct revocation *r = due;

		/* At shutdown each gets its share of what is left of the
		 * budget, so one hung revoke cannot starve the others. */
		now = timing_now_ms();
		if (s->revoke_deadline != UINT64_MAX && now < s->revoke_deadline)
			http_allow_until(now + (s->revoke_deadline - now) / left);
		due = r->next;
		revoke_one(s, r);
		free(r->label);
		free(r);
	}
	return next;
}

static bool sched_stopping(struct sched *s)
{
	bool v;

	pthread_mutex_lock(&s->lock);
	v = s->stopping;
	pthread_mutex_unlock(&s->lock);
	return v;
}

static void *sched_main(void *arg)
{
	struct sched *s = arg;
	struct pollfd *pfd = calloc(s->nbackends + 1, sizeof *pfd);
	struct backend **watched = calloc(s->nbackends + 1, sizeof *watched);

	if (!pfd || !watched) {
		log_error("scheduler: out of memory");
		goto out;
	}
	while (!sched_stopping(s)) {
		uint64_t now = timing_now_ms(), next = UINT64_MAX, t;
		size_t npfd = 1;
		int timeout;

		/* Backends first: a new login changes which leases must move. */
		for (size_t b = 0; b < s->nbackends; b++) {
			struct backend *be = s->backends[b];
			if (be->ops->maintain && s->maintain_due[b] <= now)
				s->maintain_due[b] = be->ops->maintain(be, now);
		}
		run_due_sources(s, now);
		secmem_wipe_stack();
		now = timing_now_ms();
		t = run_revocations(s, now, false);
		next = t < next ? t : next;
		pthread_mutex_lock(&s->shared_lock);
		for (size_t i = 0; i < s->nactions; i++) {
			t = onchange_poll(s->actions[i], now);
			next = t < next ? t : next;
		}
		pthread_mutex_unlock(&s->shared_lock);
		for (size_t i = 0; i < s->nsources; i++)
			if (!source_busy(s, &s->sources[i]) && s->sources[i].due < next)
				next = s->sources[i].due;
		for (size_t b = 0; b < s->nbackends; b++)
			if (s->backends[b]->ops->maintain && s->maintain_due[b] < next)
				next = s->maintain_due[b];

		pfd[0].fd = s->wake_fd;
		pfd[0].events = POLLIN;
		for (size_t b = 0; b < s->nbackends; b++) {
			struct backend *be = s->backends[b];
			int fd = be->ops->watch_fd ? be->ops->watch_fd(be) : -1;
			if (fd < 0)
				continue;
			pfd[npfd].fd = fd;
			pfd[npfd].events = POLLIN;
			watched[npfd++] = be;
		}
		now = timing_now_ms();
		if (next == UINT64_MAX)
			timeout = -1;
		else if (next <= now)
			timeout = 0;
		else
			timeout =
			    next - now > 3600 * 1000 ? 3600 * 1000 : (int)(next - now);
		timeout = health_sched_beat(timeout);
		if (poll(pfd, npfd, timeout) < 0 && errno != EINTR) {
			log_error("scheduler: poll: %s", strerror(errno));
			break;
		}
		if (pfd[0].revents & POLLIN) {
			uint64_t v;
			ssize_t r = read(s->wake_fd, &v, sizeof v);
			(void)r;
		}
		now = timing_now_ms();
		for (size_t i = 1; i < npfd; i++) {
			struct backend *be = watched[i];
			if (!(pfd[i].revents & (POLLIN | POLLERR | POLLHUP)))
				continue;
			if (be->ops->on_watch(be) != 1)
				continue;
			/* A change notification: read every source of it now. */
			for (size_t j = 0; j < s->nsources; j++) {
				if (s->sources[j].be != be ||
				    s->sources[j].step == STEP_RENEW ||
				    source_busy(s, &s->sources[j]))
					continue;
				s->sources[j].step = STEP_FETCH;
				s->sources[j].due = now;
			}
		}
	}
out:
	free(pfd);
	free(watched);
	return NULL;
}

int sched_start(struct sched *s)
{
	sigset_t all, old;
	int rc;

	for (size_t i = 0; i < s->nsources; i++)
		s->sources[i].due = 0;
	/* Signals go to the main thread (the FUSE loop), never here. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	rc = pthread_create(&s->thread, NULL, sched_main, s);
	for (size_t b = 0; rc == 0 && b < s->nbackends; b++) {
		if (!s->backends[b]->ops->concurrent || s->nworkers)
			continue;
		for (; s->nworkers < SCHED_WORKERS; s->nworkers++)
			if (pthread_create(&s->workers[s->nworkers], NULL, worker_main,
			                   s) != 0)
				break;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		log_error("scheduler: cannot start thread: %s", strerror(rc));
		return SFS_EIO;
	}
	s->started = true;
	return 0;
}

/* Waits until *count reaches the number of sources, or timeout_ms;
 * returns how many are short. */
static size_t sched_wait_count(struct sched *s, const size_t *count, uint64_t timeout_ms)
{
	struct timespec deadline;
	size_t left;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += (time_t)(timeout_ms / 1000);
	deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (deadline.tv_nsec >= 1000000000) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&s->lock);
	while (*count < s->nsources && !s->stopping)
		if (pthread_cond_timedwait(&s->ready_cond, &s->lock, &deadline) ==
		    ETIMEDOUT)
			break;
	left = s->nsources - *count;
	pthread_mutex_unlock(&s->lock);
	return left;
}

size_t sched_wait_ready(struct sched *s, uint64_t timeout_ms)
{
	return sched_wait_count(s, &s->nready, timeout_ms);
}

size_t sched_wait_settled(struct sched *s, uint64_t timeout_ms)
{
	return sched_wait_count(s, &s->nsettled, timeout_ms);
}

size_t sched_report_missing(struct sched *s, sched_report_fn report, void *arg)
{
	size_t missing = 0;

	for (size_t i = 0; i < s->nsources; i++) {
		const struct source *src = &s->sources[i];

		for (size_t j = 0; j < src->nfiles; j++) {
			const struct sched_file *f = src->files[j];
			const char *why = f->problem        ? f->problem
			                  : src->problem[0] ? src->problem
			                  : src->ready      ? "absent (lease expired)"
			                                    : "not read yet";
			if (f->version)
				continue;
			report(arg, f->cs->name, src->label, why);
			missing++;
		}
	}
	return missing;
}

void sched_stop(struct sched *s)
{
	uint64_t one = 1;
	ssize_t r;

	if (!s || !s->started)
		return;
	/* Requests in flight end now (the signal handler may have done so
	 * already); the threads then have nothing left to wait for. */
	http_stop();
	pthread_mutex_lock(&s->lock);
	s->stopping = true;
	pthread_cond_broadcast(&s->ready_cond);
	pthread_mutex_unlock(&s->lock);
	r = write(s->wake_fd, &one, sizeof one);
	(void)r;
	pthread_join(s->thread, NULL);
	pthread_mutex_lock(&s->work_lock);
	s->workers_stop = true;
	pthread_cond_broadcast(&s->work_cond);
	pthread_mutex_unlock(&s->work_lock);
	for (size_t i = 0; i < s->nworkers; i++)
		pthread_join(s->workers[i], NULL);
	s->nworkers = 0;
	s->started = false;
	/* The only network work left: revocations, all within the budget
	 * (run_revocations opens the window for each). */
	s->revoke_deadline = timing_now_ms() + s->cfg->shutdown_timeout_ms;
	/* Leases already replaced are of no use to anyone: revoke them now,
	 * and the current ones where the operator asked for it. */
	for (size_t i = 0; i < s->nsources; i++) {
		struct source *src = &s->sources[i];
		if (!src->lease_id[0] || !src->be->revoke_on_shutdown ||
		    !src->be->ops->revoke)
			continue;
		schedule_revocation(s, src, 0, true);
		src->lease_id[0] = '\0';
	}
	run_revocations(s, UINT64_MAX, true);
}

void sched_free(struct sched *s)
{
	if (!s)
		return;
	sched_stop(s);
	while (s->revocations) {
		struct revocation *r = s->revocations;
		s->revocations = r->next;
		free(r->label);
		free(r);
	}
	for (size_t i = 0; i < s->nfiles; i++)
		free(s->files[i].problem);
	for (size_t i = 0; i < s->nsources; i++) {
		free(s->sources[i].label);
		free(s->sources[i].identity);
		free(s->sources[i].files);
	}
	for (size_t i = 0; i < s->nactions; i++)
		onchange_free(s->actions[i]);
	free(s->actions);
	free(s->sources);
	free(s->files);
	free(s->maintain_due);
	free(s->queue);
	secmem_free(s->hash_key);
	if (s->wake_fd >= 0)
		close(s->wake_fd);
	pthread_cond_destroy(&s->ready_cond);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->work_cond);
	pthread_mutex_destroy(&s->work_lock);
	pthread_mutex_destroy(&s->shared_lock);
	free(s);
}
