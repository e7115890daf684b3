/*
 * Sources (see source.h). Secrets that name the same backend, path and
 * backend options share one source, so one read serves all their files.
 * Each source has its own clock and its own backoff, so one failing
 * source never delays another. The fetched value is wiped as soon as the
 * files are rendered (publish.h): between reads no plaintext is held.
 */
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "publish.h"
#include "revoke.h"
#include "source.h"
#include "secretfs/error.h"
#include "secretfs/hash.h"
#include "secretfs/lease.h"
#include "secretfs/log.h"
#include "secretfs/secjson.h"
#include "secretfs/stats.h"
#include "secretfs/store.h"
#include "secretfs/timing.h"

#define BACKOFF_BASE_MS 1000
#define BACKOFF_CAP_MS (5 * 60 * 1000)
#define BACKOFF_FLOOR_MS (10 * 1000) /* the least cap: see backoff_cap */

struct source_set {
	struct backend **backends; /* borrowed */
	size_t nbackends;
	struct publish *publish; /* borrowed */
	struct revoke *revoke;   /* borrowed */
	struct stats *stats;     /* borrowed */
	struct source **v;       /* each owned */
	size_t n;
	/* Open addressing, identity hash -> source (NULL: empty), at most 3/4
	 * full; filled again when sources end: attaching 10 000 files compared
	 * every identity before (quadratic). */
	struct source **by_identity;
	size_t identity_mask; /* size - 1, a power of two; 0 before the first */

	pthread_mutex_t lock; /* guards the fields below and each source's settled */
	pthread_cond_t ready_cond;
	size_t nready, nsettled;
	bool waits_stopped;

	/* The versions of the sources (source_version_set), shared: the file
	 * backend gives every source of a secrets file the same one, and with
	 * 10 000 sources a copy each cost 32 B with its allocator header. */
	pthread_mutex_t version_lock;     /* guards the refs and last_version */
	struct shared_text *last_version; /* the latest set, one ref; or NULL */
};

/* A string shared by counted references, as a source's version. */
struct shared_text {
	size_t refs;
	char s[];
};

/* The metrics of each source (source.h). Failures and the lease's
 * fields are cold (stats.h): 10 000 healthy file-backend sources never
 * move them. */
static const struct stats_dim reason_dim[] = {{"reason", backend_failure_reasons},
                                              {NULL, NULL}};
static const struct stats_field source_fields[] = {
    [SRC_READS] = {STATS_COUNTER, "secretfs_source_reads_total",
                   "Full reads of the source that succeeded"},
    [SRC_READ_FAILURES] = {STATS_COUNTER, "secretfs_source_read_failures_total",
                           "Full reads of the source that failed", .cold = true},
    [SRC_PROBES] = {STATS_COUNTER, "secretfs_source_probes_total",
                    "Cheap version probes of the source"},
    [SRC_PUBLISHES] = {STATS_COUNTER, "secretfs_source_publishes_total",
                       "Times new content of the source's files was published"},
    [SRC_RENEWALS] = {STATS_COUNTER, "secretfs_lease_renewals_total",
                      "Lease renewals that succeeded", .cold = true},
    [SRC_RENEW_FAILURES] = {STATS_COUNTER, "secretfs_lease_renewal_failures_total",
                            "Lease renewals that failed", .cold = true},
    [SRC_REPLACEMENTS] = {STATS_COUNTER, "secretfs_lease_replacements_total",
                          "Leases replaced by a new one", .cold = true},
    [SRC_REVOCATIONS] = {STATS_COUNTER, "secretfs_lease_revocations_total",
                         "Replaced (or, at shutdown, current) leases revoked",
                         .cold = true},
    [SRC_REVOKE_FAILURES] = {STATS_COUNTER, "secretfs_lease_revocation_failures_total",
                             "Lease revocations that failed", .cold = true},
    [SRC_EXPIRIES] = {STATS_COUNTER, "secretfs_lease_expiries_total",
                      "Leases that expired before a replacement was read", .cold = true},
    [SRC_FAILURES] = {STATS_COUNTER, "secretfs_source_failures_total",
                      "Failed reads, probes and renewals of the source, by reason",
                      reason_dim},
    [SRC_LAST_SUCCESS] = {STATS_GAUGE, "secretfs_source_last_success_timestamp_seconds",
                          "When the source was last read, probed or renewed (Unix time)"},
    [SRC_READY] = {STATS_GAUGE, "secretfs_source_ready",
                   "1 once the source was read, 0 before and after its lease expired"},
    [SRC_LEASE_EXPIRY] = {STATS_GAUGE, "secretfs_lease_expiry_timestamp_seconds",
                          "When the source's current lease expires (Unix time); 0: none",
                          .cold = true},
};
static const struct stats_family source_family = {
    source_fields, sizeof source_fields / sizeof source_fields[0], "source"};

int source_set_new(struct backend **backends, size_t nbackends, struct publish *p,
                   struct revoke *rq, struct stats *stats, struct source_set **out)
{
	struct source_set *set = calloc(1, sizeof *set);

	if (!set)
		return SFS_ENOMEM;
	set->backends = backends;
	set->nbackends = nbackends;
	set->publish = p;
	set->revoke = rq;
	set->stats = stats;
	pthread_mutex_init(&set->lock, NULL);
	pthread_mutex_init(&set->version_lock, NULL);
	pthread_cond_init(&set->ready_cond, NULL);
	*out = set;
	return 0;
}

size_t source_set_count(const struct source_set *set)
{
	return set->n;
}

struct source *source_set_get(struct source_set *set, size_t i)
{
	return set->v[i];
}

/* The empty value of a source's text fields; never freed. */
static const char source_text_empty[1];

/* Replaces the heap string *dst with a copy of s ("" for none); on out of
 * memory *dst becomes "" (a version or lease forgotten costs a full read). */
static void source_text_set(const char **dst, const char *s)
{
	char *copy = NULL;

	if (*dst && strcmp(*dst, s) == 0)
		return;
	if (s[0])
		copy = strdup(s);
	if (*dst && *dst != source_text_empty)
		free((char *)*dst);
	*dst = copy ? copy : source_text_empty;
}

/* The shared_text whose string v is. */
static struct shared_text *shared_text_of(const char *v)
{
	return (struct shared_text *)(void *)(v - offsetof(struct shared_text, s));
}

/* Drops a reference to t (NULL-safe). Version lock held. */
static void shared_text_put(struct shared_text *t)
{
	if (t && --t->refs == 0)
		free(t);
}

/* Sets src's version to v ("" for none), sharing the string with the
 * sources given the same one last; on out of memory the version becomes
 * "" (as source_text_set). Any thread that runs src's step. */
static void source_version_set(struct source_set *set, struct source *src, const char *v)
{
	struct shared_text *t = NULL, *old = NULL;
	size_t len;

	if (strcmp(src->version, v) == 0)
		return;
	pthread_mutex_lock(&set->version_lock);
	if (v[0] && set->last_version && strcmp(set->last_version->s, v) == 0) {
		t = set->last_version;
		t->refs++;
	} else if (v[0] && (t = malloc(sizeof *t + (len = strlen(v) + 1)))) {
		memcpy(t->s, v, len);
		t->refs = 2; /* src's and last_version's */
		shared_text_put(set->last_version);
		set->last_version = t;
	}
	if (src->version != source_text_empty)
		old = shared_text_of(src->version);
	src->version = t ? t->s : source_text_empty;
	shared_text_put(old);
	pthread_mutex_unlock(&set->version_lock);
}

/* Whether key's path is an API path where that reads another secret (a KV
 * v2 path naming "data/", see source_key). */
static bool key_api_data(const struct source_key *key)
{
	return key->api_path && strstr(key->path, "/data/");
}

/* The hash of what makes two secrets one source: backend, path, options,
 * and key_api_data. No identity string is kept: a candidate is compared
 * field by field (same_key). Returns 0 or SFS_ENOMEM. */
static int source_identity_hash(const char *backend, const struct source_key *key,
                                uint64_t *out)
{
	uint64_t h = SFS_FNV_BASIS;
	char *extra = NULL;

	h = sfs_fnv1a(h, backend, strlen(backend) + 1);
	h = sfs_fnv1a(h, key->path, strlen(key->path) + 1);
	h = sfs_fnv1a(h, key_api_data(key) ? "a" : "-", 1);
	if (json_object_size(key->extra)) {
		extra = json_dumps(key->extra, JSON_COMPACT | JSON_SORT_KEYS);
		if (!extra)
			return SFS_ENOMEM;
		h = sfs_fnv1a(h, extra, strlen(extra));
		secjson_free_buf(extra);
	}
	*out = h;
	return 0;
}

/* Whether two keys read the same. A source's key is borrowed from a
 * config alive while files attach (the old one during a reload). */
static bool same_key(const struct source_key *a, const struct source_key *b)
{
	return strcmp(a->path, b->path) == 0 && key_api_data(a) == key_api_data(b) &&
	       json_equal((json_t *)a->extra, (json_t *)b->extra);
}

/* Puts src into the identity table, which has room. */
static void identity_put(struct source_set *set, struct source *src)
{
	size_t slot = src->identity_hash & set->identity_mask;

	while (set->by_identity[slot])
		slot = (slot + 1) & set->identity_mask;
	set->by_identity[slot] = src;
}

/* Whether the identity table has room for n sources. */
static bool identity_room(const struct source_set *set, size_t n)
{
	return set->by_identity && n <= (set->identity_mask + 1) / 4 * 3;
}

/* Fills the identity table again from set->v (after sources ended). */
static void identity_refill(struct source_set *set)
{
	memset(set->by_identity, 0, (set->identity_mask + 1) * sizeof *set->by_identity);
	for (size_t i = 0; i < set->n; i++)
		identity_put(set, set->v[i]);
}

/* Makes a bigger identity table, with room for n sources. Returns 0 or
 * SFS_ENOMEM (the table is kept). */
static int identity_grow(struct source_set *set, size_t n)
{
	size_t size = 16;
	struct source **t;

	while (n > size / 4 * 3)
		size <<= 1;
	t = calloc(size, sizeof *t);
	if (!t)
		return SFS_ENOMEM;
	free(set->by_identity);
	set->by_identity = t;
	set->identity_mask = size - 1;
	identity_refill(set);
	return 0;
}

/* The source of be reading key, of identity hash h, or NULL. */
static struct source *identity_find(const struct source_set *set,
                                    const struct backend *be,
                                    const struct source_key *key, uint64_t h)
{
	if (!set->by_identity)
		return NULL;
	for (size_t slot = h & set->identity_mask; set->by_identity[slot];
	     slot = (slot + 1) & set->identity_mask) {
		struct source *c = set->by_identity[slot];

		if (c->identity_hash == h && c->be == be && same_key(&c->key, key))
			return c;
	}
	return NULL;
}

static struct backend *backend_by_name(struct source_set *set, const char *name)
{
	for (size_t i = 0; i < set->nbackends; i++)
		if (strcmp(set->backends[i]->name, name) == 0)
			return set->backends[i];
	return NULL;
}

static void source_free(struct source_set *set, struct source *src)
{
	if (!src)
		return;
	store_slot_clear(&src->value);
	store_slot_clear(&src->reply);
	if (src->files != &src->file1)
		free(src->files);
	source_text_set(&src->problem, "");
	source_version_set(set, src, "");
	source_text_set(&src->lease_id, "");
	source_text_set(&src->issued_id, "");
	free(src);
}

/* A new source for key of backend be named backend (identity hash h;
 * strings borrowed from the config), appended to set; NULL when out of
 * memory. */
static struct source *source_new(struct source_set *set, struct backend *be,
                                 const char *backend, const struct source_key *key,
                                 uint64_t h)
{
	/* The label in the same block: one allocation fewer a source. */
	size_t blen = strlen(backend), plen = strlen(key->path);
	struct source *src = calloc(1, sizeof *src + blen + plen + 2), **grown;

	grown = realloc(set->v, (set->n + 1) * sizeof *grown);
	if (grown)
		set->v = grown;
	if (!src || !grown ||
	    (!identity_room(set, set->n + 1) && identity_grow(set, set->n + 1) < 0)) {
		free(src);
		return NULL;
	}
	src->identity_hash = h;
	src->problem = src->version = src->lease_id = src->issued_id = source_text_empty;
	src->be = be;
	src->key = *key;
	src->label = (char *)(src + 1);
	memcpy(src->label, backend, blen);
	src->label[blen] = ':';
	memcpy(src->label + blen + 1, key->path, plen + 1);
	src->refresh_ms = UINT64_MAX;
	src->step = STEP_FETCH;
	/* A source of this label that a reload ended counts on in its set. */
	src->stats = stats_register(set->stats, &source_family, src->label);
	pthread_mutex_lock(&set->lock);
	set->v[set->n++] = src;
	pthread_mutex_unlock(&set->lock);
	identity_put(set, src);
	return src;
}

/* The source of key of backend, made on first use, into *out. */
static int source_for(struct source_set *set, const char *backend,
                      const struct source_key *key, struct source **out)
{
	struct backend *be = backend_by_name(set, backend);
	uint64_t h;

	if (!be)
		return SFS_EINVAL;
	if (source_identity_hash(backend, key, &h) < 0)
		return SFS_ENOMEM;
	/* Not a source of a backend a reload replaced (it is ending): the
	 * backend is compared too. */
	*out = identity_find(set, be, key, h);
	if (!*out)
		*out = source_new(set, be, backend, key, h);
	return *out ? 0 : SFS_ENOMEM;
}

bool source_is(const struct source *src, const char *backend,
               const struct source_key *key)
{
	return strcmp(src->be->name, backend) == 0 && same_key(&src->key, key);
}

/* Makes f a file of src, read at least as often as f's refresh asks. */
static int source_add_file(struct source *src, struct sched_file *f)
{
	const struct config_secret *cs = f->cs;
	struct sched_file **grown;
	uint64_t refresh;

	if (cs->refresh_ms)
		src->refresh_explicit = true;
	refresh = cs->refresh_ms ? cs->refresh_ms : src->be->ops->default_refresh_ms;
	if (refresh < src->refresh_ms)
		src->refresh_ms = refresh;
	if (src->nfiles == 0) {
		if (src->files != &src->file1)
			free(src->files);
		src->files = &src->file1;
	} else if (src->files == &src->file1) {
		grown = malloc(2 * sizeof *grown);
		if (!grown)
			return SFS_ENOMEM;
		grown[0] = src->file1;
		src->files = grown;
	} else {
		grown = realloc(src->files, (src->nfiles + 1) * sizeof *grown);
		if (!grown)
			return SFS_ENOMEM;
		src->files = grown;
	}
	src->files[src->nfiles++] = f;
	return 0;
}

int source_set_attach(struct source_set *set, struct sched_file *f)
{
	const struct config_secret *cs = f->cs;
	struct source *src;
	int rc;

	if (cs->format != RENDER_CONSUL_TEMPLATE) {
		struct source_key key = {.path = cs->path, .extra = cs->extra};

		rc = source_for(set, cs->backend, &key, &src);
		if (rc < 0 || (rc = source_add_file(src, f)) < 0)
			return rc;
		f->source = src;
		return 0;
	}
	f->calls = calloc(cs->ncalls, sizeof *f->calls);
	if (!f->calls)
		return SFS_ENOMEM;
	for (size_t i = 0; i < cs->ncalls; i++) {
		struct source_key key = {.path = cs->calls[i].path,
		                         .extra = cs->calls[i].extra,
		                         .api_path = true};

		rc = source_for(set, cs->backend, &key, &src);
		if (rc < 0 || (rc = source_add_file(src, f)) < 0) {
			/* Attached to the calls so far: detach undoes them. */
			f->source = f->calls[0];
			return rc;
		}
		src->feeds_templates = true;
		f->calls[f->ncalls++] = src;
	}
	f->source = f->calls[0];
	return 0;
}

void source_set_set_backends(struct source_set *set, struct backend **backends,
                             size_t nbackends)
{
	set->backends = backends;
	set->nbackends = nbackends;
}

/* Takes f off the files of src. */
static void source_drop_file(struct source *src, struct sched_file *f)
{
	for (size_t i = 0; i < src->nfiles; i++) {
		if (src->files[i] != f)
			continue;
		memmove(&src->files[i], &src->files[i + 1],
		        (src->nfiles - i - 1) * sizeof src->files[0]);
		src->nfiles--;
		break;
	}
}

void source_set_detach(struct source_set *set, struct sched_file *f)
{
	(void)set;
	if (f->calls) {
		for (size_t i = 0; i < f->ncalls; i++)
			source_drop_file(f->calls[i], f);
		free(f->calls);
		f->calls = NULL;
		f->ncalls = 0;
	} else if (f->source) {
		source_drop_file(f->source, f);
	}
	f->source = NULL;
}

/* Queues the issued value src served (src->issued_id) to be revoked after
 * the grace period, logging why. */
static void source_revoke_issued(struct source_set *set, struct source *src, uint64_t now,
                                 const char *why)
{
	if (revoke_add_issued(set->revoke, src->be, src->label, src->issued_id,
	                      src->stats, now + src->be->revoke_grace_ms) == 0)
		log_event(LOG_LVL_INFO, SOURCE_FIELDS(src, "issued.replaced"),
		          "source %s: %s; revoking issued %s in %llu ms", src->label, why,
		          src->issued_id, (unsigned long long)src->be->revoke_grace_ms);
}

/* Ends src, which no file uses any more: its lease is revoked after the
 * grace period. */
static void source_end(struct source_set *set, struct source *src, uint64_t now)
{
	if (src->lease_id[0] && src->be->ops->revoke) {
		if (revoke_add(set->revoke, src->be, src->label, src->lease_id,
		               src->stats, now + src->be->revoke_grace_ms) == 0)
			log_event(
			    LOG_LVL_INFO, SOURCE_FIELDS(src, "lease.unused"),
			    "source %s: no file uses it any more; revoking lease %s "
			    "in %llu ms",
			    src->label, src->lease_id,
			    (unsigned long long)src->be->revoke_grace_ms);
	} else if (!src->issued_id[0]) {
		log_event(LOG_LVL_INFO, SOURCE_FIELDS(src, "source.unused"),
		          "source %s: no file uses it any more", src->label);
	}
	if (src->issued_id[0])
		source_revoke_issued(set, src, now, "no file uses it any more");
	stats_set_value(src->stats, SRC_READY, 0);
	stats_set_value(src->stats, SRC_LEASE_EXPIRY, 0);
	source_free(set, src);
}

size_t source_set_prune(struct source_set *set, uint64_t now)
{
	size_t kept = 0, ended = 0;

	pthread_mutex_lock(&set->lock);
	for (size_t i = 0; i < set->n; i++) {
		struct source *src = set->v[i];

		if (src->nfiles) {
			set->v[kept++] = src;
			continue;
		}
		set->nready -= src->ready;
		set->nsettled -= src->settled;
		/* Logged and queued outside the lock: nothing waits on it now. */
		set->v[i] = NULL;
		pthread_mutex_unlock(&set->lock);
		source_end(set, src, now);
		ended++;
		pthread_mutex_lock(&set->lock);
	}
	set->n = kept;
	pthread_mutex_unlock(&set->lock);
	if (ended)
		identity_refill(set);
	return ended;
}

/* The key f reads from src, borrowed from f's config. */
static struct source_key file_key(const struct sched_file *f, const struct source *src)
{
	const struct config_secret *cs = f->cs;

	for (size_t i = 0; i < f->ncalls; i++)
		if (f->calls[i] == src)
			return (struct source_key){.path = cs->calls[i].path,
			                           .extra = cs->calls[i].extra,
			                           .api_path = true};
	return (struct source_key){.path = cs->path, .extra = cs->extra};
}

void source_set_rebind(struct source_set *set)
{
	for (size_t i = 0; i < set->n; i++) {
		struct source *src = set->v[i];

		src->key = file_key(src->files[0], src);
		src->refresh_ms = UINT64_MAX;
		src->refresh_explicit = false;
		src->feeds_templates = false;
		for (size_t j = 0; j < src->nfiles; j++) {
			const struct config_secret *cs = src->files[j]->cs;
			uint64_t r = cs->refresh_ms ? cs->refresh_ms
			                            : src->be->ops->default_refresh_ms;

			src->refresh_explicit |= cs->refresh_ms != 0;
			src->feeds_templates |= src->files[j]->calls != NULL;
			if (r < src->refresh_ms)
				src->refresh_ms = r;
		}
	}
}

static void source_mark_ready(struct source_set *set, struct source *src)
{
	source_text_set(&src->problem, "");
	stats_set_value(src->stats, SRC_READY, 1);
	if (src->ready)
		return;
	src->ready = true;
	pthread_mutex_lock(&set->lock);
	set->nready++;
	if (!src->settled)
		set->nsettled++;
	src->settled = true;
	pthread_cond_broadcast(&set->ready_cond);
	pthread_mutex_unlock(&set->lock);
}

/* A failure of a source never read yet that retrying will not cure (not
 * found, denied, malformed) settles it for sched_wait_settled. */
static void source_mark_settled(struct source_set *set, struct source *src, int rc)
{
	if (src->settled || rc == SFS_ETRANSIENT)
		return;
	pthread_mutex_lock(&set->lock);
	src->settled = true;
	set->nsettled++;
	pthread_cond_broadcast(&set->ready_cond);
	pthread_mutex_unlock(&set->lock);
}

/* Hands the lease of src, just replaced (or, at shutdown, current), to
 * the revocation queue. */
static void source_revoke_lease(struct source_set *set, struct source *src, uint64_t now,
                                bool shutdown)
{
	if (revoke_add(set->revoke, src->be, src->label, src->lease_id, src->stats,
	               now + src->be->revoke_grace_ms) < 0)
		return;
	if (!shutdown)
		log_event(LOG_LVL_INFO, SOURCE_FIELDS(src, "lease.replaced"),
		          "source %s: lease %s replaced; revoking it in %llu ms",
		          src->label, src->lease_id,
		          (unsigned long long)src->be->revoke_grace_ms);
}

/* The backoff cap of src: its refresh interval (at least
 * BACKOFF_FLOOR_MS, at most BACKOFF_CAP_MS). A source retries no more often
 * than a healthy one probes once the backoff has grown, and is current
 * again within about one interval of the backend's recovery (with a fixed
 * 5 min cap, a fleet at a 10 s refresh took 4 minutes to recover from a
 * 60 s outage: bench/fleet). */
static uint64_t backoff_cap(const struct source *src)
{
	uint64_t cap =
	    src->refresh_ms < BACKOFF_FLOOR_MS ? BACKOFF_FLOOR_MS : src->refresh_ms;

	return cap < BACKOFF_CAP_MS ? cap : BACKOFF_CAP_MS;
}

/* After a failure: back off, and make files absent once a lease has truly
 * expired (they would only hand out dead credentials). */
static void source_failed(struct source_set *set, struct source *src, int rc,
                          const struct backend_error *err, const char *what,
                          const char *event, uint64_t now)
{
	uint64_t delay =
	    timing_backoff_steady(src->attempt, BACKOFF_BASE_MS, backoff_cap(src),
	                          err->retry_after_ms, timing_random());
	char problem[320];

	/* Cut by the stop: nothing failed, and nothing is to change. */
	if (rc == SFS_ECANCELED) {
		log_debug("source %s: %s cancelled (stopping)", src->label, what);
		return;
	}

	src->attempt++;
	stats_inc_at(src->stats, SRC_FAILURES, backend_failure_reason(rc));
	src->due = now + delay;
	snprintf(problem, sizeof problem, "%s%s%s", sfs_strerror(rc),
	         err->msg[0] ? ": " : "", err->msg);
	source_text_set(&src->problem, problem);
	source_mark_settled(set, src, rc);
	log_event(LOG_LVL_WARN, SOURCE_FIELDS(src, event),
	          "source %s: %s failed (attempt %u): %s%s%s; retrying in %llu ms%s",
	          src->label, what, src->attempt, sfs_strerror(rc),
	          err->msg[0] ? ": " : "", err->msg, (unsigned long long)delay,
	          src->ready ? "; serving the last good value" : "");

	if (src->lease_id[0] && now >= src->lease_expires) {
		log_event(
		    LOG_LVL_ERROR, SOURCE_FIELDS(src, "lease.expired"),
		    "source %s: lease %s expired; its files are removed until a new "
		    "value is read",
		    src->label, src->lease_id);
		publish_withdraw(set->publish, src);
		source_text_set(&src->lease_id, "");
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
void source_check_lease_deadline(struct source *src, uint64_t now)
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

static void source_fetch(struct source_set *set, struct source *src, uint64_t now)
{
	struct backend_error err = {0};
	struct fetch_result res = {0};
	bool had_lease = src->lease_id[0] != '\0';
	int rc, published;

	rc = backend_fetch(src->be, &src->key, &res, &err);
	if (rc < 0) {
		stats_inc(src->stats, SRC_READ_FAILURES);
		source_failed(set, src, rc, &err, "read", "source.read_failed", now);
		return;
	}
	stats_inc(src->stats, SRC_READS);
	stats_set_value(src->stats, SRC_LAST_SUCCESS, (int64_t)time(NULL));
	published = publish_source(set->publish, src, &res, now);
	src->attempt = published < 0 ? src->attempt + 1 : 0;
	source_version_set(set, src, res.version);

	/* The issued value served until now goes once the new one is. */
	if (published >= 0 && strcmp(res.revoke_id, src->issued_id) != 0) {
		if (src->issued_id[0])
			source_revoke_issued(set, src, now, "replaced");
		source_text_set(&src->issued_id, res.revoke_id);
	}
	if (had_lease && strcmp(res.lease_id, src->lease_id) != 0) {
		stats_inc(src->stats, SRC_REPLACEMENTS);
		if (src->be->ops->revoke)
			source_revoke_lease(set, src, now, false);
	}
	stats_set_value(src->stats, SRC_LEASE_EXPIRY, 0);
	if (res.lease_id[0]) {
		source_text_set(&src->lease_id, res.lease_id);
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
		source_text_set(&src->lease_id, "");
		source_schedule_issued(src, now, res.valid_ms);
	} else {
		source_text_set(&src->lease_id, "");
		source_schedule_static(
		    src, now,
		    src->ready ? src->refresh_ms
		               : timing_first_refresh(src->refresh_ms, timing_random()));
	}
	fetch_result_release(&res);
	source_mark_ready(set, src);
	if (published < 0) {
		/* The files could not be written (a full disk, say): read again
		 * soon, with backoff; the unchanged hash makes it publish. */
		uint64_t delay =
		    timing_backoff_steady(src->attempt - 1, BACKOFF_BASE_MS,
		                          backoff_cap(src), 0, timing_random());
		if (now + delay < src->due || src->step != STEP_FETCH) {
			src->step = STEP_FETCH;
			src->due = now + delay;
		}
		log_warn("source %s: reading it again in %llu ms to publish", src->label,
		         (unsigned long long)(src->due - now));
	}
}

static void source_probe(struct source_set *set, struct source *src, uint64_t now)
{
	struct backend_error err = {0};
	char version[BACKEND_VERSION_MAX];
	int rc;

	stats_inc(src->stats, SRC_PROBES);
	rc = backend_probe(src->be, &src->key, version, sizeof version, &err);
	if (rc < 0) {
		source_failed(set, src, rc, &err, "version probe", "source.probe_failed",
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
	source_fetch(set, src, now);
}

static void source_renew(struct source_set *set, struct source *src, uint64_t now)
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
		source_text_set(&src->lease_id, "");
		source_fetch(set, src, now);
		return;
	}
	if (rc < 0) {
		stats_inc(src->stats, SRC_RENEW_FAILURES);
		source_failed(set, src, rc, &err, "lease renewal", "lease.renew_failed",
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

void source_run(struct source_set *set, struct source *src, uint64_t now)
{
	/* A source backing off makes one try per attempt. */
	backend_single_try(src->attempt > 0);
	switch (src->step) {
	case STEP_PROBE:
		source_probe(set, src, now);
		break;
	case STEP_RENEW:
		source_renew(set, src, now);
		break;
	case STEP_FETCH:
	default:
		source_fetch(set, src, now);
		break;
	}
	backend_single_try(false);
}

void source_read_now(struct source *src, uint64_t now)
{
	if (src->step == STEP_RENEW)
		return;
	src->step = STEP_FETCH;
	src->due = now;
}

size_t source_set_wait(struct source_set *set, bool settled, uint64_t timeout_ms)
{
	const size_t *count = settled ? &set->nsettled : &set->nready;
	struct timespec deadline;
	size_t left;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += (time_t)(timeout_ms / 1000);
	deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (deadline.tv_nsec >= 1000000000) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&set->lock);
	while (*count < set->n && !set->waits_stopped)
		if (pthread_cond_timedwait(&set->ready_cond, &set->lock, &deadline) ==
		    ETIMEDOUT)
			break;
	left = set->n - *count;
	pthread_mutex_unlock(&set->lock);
	return left;
}

void source_set_stop_waits(struct source_set *set)
{
	pthread_mutex_lock(&set->lock);
	set->waits_stopped = true;
	pthread_cond_broadcast(&set->ready_cond);
	pthread_mutex_unlock(&set->lock);
}

void source_set_revoke_leases(struct source_set *set)
{
	for (size_t i = 0; i < set->n; i++) {
		struct source *src = set->v[i];
		if (!src->lease_id[0] || !src->be->revoke_on_shutdown ||
		    !src->be->ops->revoke)
			continue;
		source_revoke_lease(set, src, 0, true);
		source_text_set(&src->lease_id, "");
	}
}

/* The source a missing file is reported under: its own, or for a
 * consul-template file (a file of several sources) the first of them not
 * ready, else the first. */
static const struct source *report_source(const struct sched_file *f)
{
	for (size_t i = 0; i < f->ncalls; i++)
		if (!f->calls[i]->ready)
			return f->calls[i];
	return f->calls[0];
}

size_t source_set_report_missing(const struct source_set *set, bool with_reasons,
                                 sched_report_fn report, void *arg)
{
	size_t missing = 0;

	for (size_t i = 0; i < set->n; i++) {
		const struct source *src = set->v[i];

		for (size_t j = 0; j < src->nfiles; j++) {
			const struct sched_file *f = src->files[j];
			const char *why;

			if (__atomic_load_n(&f->version, __ATOMIC_RELAXED) ||
			    (f->ncalls && report_source(f) != src))
				continue;
			why = !with_reasons     ? NULL
			      : f->problem      ? f->problem
			      : src->problem[0] ? src->problem
			      : src->ready      ? "absent (lease expired)"
			                        : "not read yet";
			report(arg, f->cs->name, src->label, why);
			missing++;
		}
	}
	return missing;
}

void source_set_free(struct source_set *set)
{
	if (!set)
		return;
	for (size_t i = 0; i < set->n; i++)
		source_free(set, set->v[i]);
	free(set->v);
	free(set->by_identity);
	shared_text_put(set->last_version);
	pthread_mutex_destroy(&set->version_lock);
	pthread_cond_destroy(&set->ready_cond);
	pthread_mutex_destroy(&set->lock);
	free(set);
}
