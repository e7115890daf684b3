/*
 * The scheduler (see scheduler.h). One thread runs a loop:
 *   - the hook (reload.h), which may apply a new config between steps
 *     (sched_apply_config: the workers are idle meanwhile, and the shape
 *     lock keeps other threads' counts and reports out);
 *   - backends' housekeeping (token and credential refresh) that is due;
 *   - sources that are due run their next step (source.h): those of
 *     concurrent (network) backends on a pool of workers, the others here;
 *   - revocations of replaced leases whose grace period ended run
 *     (revoke.h);
 *   - on_change actions that are due run (publish.h);
 *   - then it sleeps in poll(2) until the next due time, a backend's watch
 *     descriptor (the file backend's inotify) or a wake-up.
 * What a step reads is rendered, sealed and published by publish.h; only
 * sealed blobs reach the filesystem.
 */
#include <errno.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "publish.h"
#include "revoke.h"
#include "sandbox.h"
#include "scheduler.h"
#include "source.h"
#include "secretfs/error.h"
#include "secretfs/fs.h"
#include "secretfs/health.h"
#include "secretfs/http.h"
#include "secretfs/log.h"
#include "secretfs/secmem.h"
#include "secretfs/timing.h"

#define SCHED_WORKERS 8      /* concurrent requests to network backends */
#define SCHED_TRIM_AFTER 256 /* sources run in one round: malloc_trim after it */

/* The workers for concurrent backends: a queue of sources to run. */
struct sched_pool {
	pthread_mutex_t lock; /* guards the fields below, each source's in_flight
	                       * and the scheduler's stopping */
	pthread_cond_t cond;
	pthread_cond_t idle; /* busy fell to 0 */
	pthread_t threads[SCHED_WORKERS];
	size_t n;
	struct source **queue; /* ring of cap entries, at least one per source */
	size_t cap, head, len;
	size_t busy; /* workers running a step */
	bool stop;
};

struct sched {
	struct backend **backends; /* borrowed */
	size_t nbackends;
	struct fs *fs; /* borrowed */
	/* Taken for writing while a reload changes the sources and files, for
	 * reading by the other threads' counts and reports. */
	pthread_rwlock_t shape;
	struct sched_hook hook;
	uint64_t *maintain_due;     /* per backend */
	struct publish *publish;    /* the files: render, seal, publish, on_change */
	struct revoke *revoke;      /* replaced leases waiting for their grace */
	struct source_set *sources; /* stepped with the two above */

	pthread_t thread;
	bool started;
	bool stopping; /* pool.lock */
	int wake_fd;   /* eventfd */
	struct sched_pool pool;
};

/* Room in the queue for n sources; only while it is empty. */
static int pool_fit(struct sched_pool *pool, size_t n)
{
	struct source **q;

	if (n <= pool->cap && pool->queue)
		return 0;
	q = realloc(pool->queue, (n ? n : 1) * sizeof *q);
	if (!q)
		return SFS_ENOMEM;
	pool->queue = q;
	pool->cap = n ? n : 1;
	pool->head = 0;
	return 0;
}

int sched_new(const struct config *cfg, struct backend **backends, struct fs *fs,
              struct store *st, struct stats *stats, struct monitor *mon,
              struct sched **out)
{
	struct sched *s = calloc(1, sizeof *s);
	int rc = SFS_ENOMEM;

	if (!s)
		return SFS_ENOMEM;
	s->backends = backends;
	s->nbackends = cfg->nbackends;
	s->fs = fs;
	s->wake_fd = -1;
	pthread_rwlock_init(&s->shape, NULL);
	pthread_mutex_init(&s->pool.lock, NULL);
	pthread_cond_init(&s->pool.cond, NULL);
	pthread_cond_init(&s->pool.idle, NULL);
	s->maintain_due =
	    calloc(cfg->nbackends ? cfg->nbackends : 1, sizeof *s->maintain_due);
	if (!s->maintain_due)
		goto out;
	rc = publish_new(cfg, fs, st, stats, mon, &s->publish);
	if (rc < 0)
		goto out;
	rc = revoke_new(cfg->shutdown_timeout_ms, &s->revoke);
	if (rc < 0)
		goto out;
	rc = source_set_new(backends, cfg->nbackends, s->publish, s->revoke, stats,
	                    &s->sources);
	if (rc < 0)
		goto out;
	s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->wake_fd < 0) {
		rc = SFS_EIO;
		goto out;
	}
	for (size_t i = 0; i < cfg->nsecrets; i++) {
		struct sched_file *f;

		rc = publish_add_file(s->publish, &cfg->secrets[i], &f);
		if (rc < 0)
			goto out;
		rc = source_set_attach(s->sources, f);
		if (rc < 0)
			goto out;
	}
	rc = pool_fit(&s->pool, source_set_count(s->sources));
	if (rc < 0)
		goto out;
	*out = s;
	s = NULL;
	rc = 0;
out:
	sched_free(s);
	return rc;
}

enum sched_count { COUNT_SOURCES, COUNT_PUBLISHED, COUNT_FILES };

/* A count of the running config, read under the shape lock: a reload may
 * change what it counts. */
static size_t sched_count(struct sched *s, enum sched_count what)
{
	size_t n = 0;

	pthread_rwlock_rdlock(&s->shape);
	if (what == COUNT_SOURCES)
		n = source_set_count(s->sources);
	else if (what == COUNT_PUBLISHED)
		n = publish_count(s->publish);
	else
		for (size_t i = 0; i < source_set_count(s->sources); i++)
			n += source_set_get(s->sources, i)->nfiles;
	pthread_rwlock_unlock(&s->shape);
	return n;
}

size_t sched_source_count(struct sched *s)
{
	return sched_count(s, COUNT_SOURCES);
}

size_t sched_published_count(struct sched *s)
{
	return sched_count(s, COUNT_PUBLISHED);
}

size_t sched_file_count(struct sched *s)
{
	return sched_count(s, COUNT_FILES);
}

/* Hands a due source of a concurrent backend to the workers. */
static void dispatch(struct sched *s, struct source *src)
{
	struct sched_pool *pool = &s->pool;

	pthread_mutex_lock(&pool->lock);
	if (!src->in_flight && pool->len < pool->cap) {
		src->in_flight = true;
		pool->queue[(pool->head + pool->len++) % pool->cap] = src;
		pthread_cond_signal(&pool->cond);
	}
	pthread_mutex_unlock(&pool->lock);
}

static bool source_busy(struct sched *s, struct source *src)
{
	bool busy;

	pthread_mutex_lock(&s->pool.lock);
	busy = src->in_flight;
	pthread_mutex_unlock(&s->pool.lock);
	return busy;
}

static void *worker_main(void *arg)
{
	struct sched *s = arg;
	struct sched_pool *pool = &s->pool;
	uint64_t one = 1;

	pthread_mutex_lock(&pool->lock);
	for (;;) {
		struct source *src;
		ssize_t r;

		while (!pool->len && !pool->stop)
			pthread_cond_wait(&pool->cond, &pool->lock);
		if (pool->stop)
			break;
		src = pool->queue[pool->head];
		pool->head = (pool->head + 1) % pool->cap;
		pool->len--;
		pool->busy++;
		pthread_mutex_unlock(&pool->lock);
		sandbox_thread_enter();

		source_run(s->sources, src, timing_now_ms());
		secmem_wipe_stack();

		pthread_mutex_lock(&pool->lock);
		src->in_flight = false;
		if (--pool->busy == 0 && pool->len == 0)
			pthread_cond_broadcast(&pool->idle);
		/* Wake the scheduler: this source has a new due time. */
		r = write(s->wake_fd, &one, sizeof one);
		(void)r;
	}
	pthread_mutex_unlock(&pool->lock);
	return NULL;
}

/* Runs every due source: network backends' on the workers, the others
 * here, bracketing each backend's round of reads. Returns how many ran
 * here. */
static size_t run_due_sources(struct sched *s, uint64_t now)
{
	size_t ran = 0;

	for (size_t b = 0; b < s->nbackends; b++) {
		struct backend *be = s->backends[b];
		bool begun = false;

		for (size_t i = 0; i < source_set_count(s->sources); i++) {
			struct source *src = source_set_get(s->sources, i);
			if (src->be != be || source_busy(s, src))
				continue;
			source_check_lease_deadline(src, now);
			if (src->due > now)
				continue;
			if (be->ops->concurrent && s->pool.n) {
				dispatch(s, src);
				continue;
			}
			if (!begun && be->ops->batch_begin)
				be->ops->batch_begin(be);
			begun = true;
			source_run(s->sources, src, now);
			ran++;
		}
		if (begun && be->ops->batch_end)
			be->ops->batch_end(be);
	}
	return ran;
}

static bool sched_stopping(struct sched *s)
{
	bool v;

	pthread_mutex_lock(&s->pool.lock);
	v = s->stopping;
	pthread_mutex_unlock(&s->pool.lock);
	return v;
}

/* Room for the descriptors polled: the wake-up, the hook's and one per
 * backend (a reload may add backends). */
static int poll_fit(struct sched *s, struct pollfd **pfd, struct backend ***watched,
                    size_t *cap)
{
	size_t n = s->nbackends + 1 + SCHED_HOOK_FDS;
	struct pollfd *p;
	struct backend **w;

	if (n <= *cap)
		return 0;
	p = realloc(*pfd, n * sizeof *p);
	if (p)
		*pfd = p;
	w = realloc(*watched, n * sizeof *w);
	if (w)
		*watched = w;
	if (!p || !w)
		return SFS_ENOMEM;
	*cap = n;
	return 0;
}

static void *sched_main(void *arg)
{
	struct sched *s = arg;
	struct pollfd *pfd = NULL;
	struct backend **watched = NULL;
	size_t pfd_cap = 0;
	uint64_t hook_due = 0;

	while (!sched_stopping(s)) {
		uint64_t now = timing_now_ms(), next = UINT64_MAX, t;
		size_t npfd = 1;
		int timeout;

		/* A reload applies between steps, never during one. */
		if (s->hook.run && hook_due <= now)
			hook_due = s->hook.run(s->hook.arg, now);
		if (poll_fit(s, &pfd, &watched, &pfd_cap) < 0) {
			log_error("scheduler: out of memory");
			break;
		}
		now = timing_now_ms();
		/* Backends first: a new login changes which leases must move. */
		for (size_t b = 0; b < s->nbackends; b++) {
			struct backend *be = s->backends[b];
			if (be->ops->maintain && s->maintain_due[b] <= now)
				s->maintain_due[b] = be->ops->maintain(be, now);
		}
		/* A big round (the start, a changed secrets file) leaves this
		 * thread's malloc arena full of parsed documents, freed but kept:
		 * 3 MiB of RSS with 10 000 files. */
		if (run_due_sources(s, now) >= SCHED_TRIM_AFTER)
			malloc_trim(0);
		secmem_wipe_stack();
		now = timing_now_ms();
		t = revoke_run(s->revoke, now, false);
		next = t < next ? t : next;
		t = publish_run_actions(s->publish, now);
		next = t < next ? t : next;
		for (size_t i = 0; i < source_set_count(s->sources); i++) {
			struct source *src = source_set_get(s->sources, i);
			if (!source_busy(s, src) && src->due < next)
				next = src->due;
		}
		for (size_t b = 0; b < s->nbackends; b++)
			if (s->backends[b]->ops->maintain && s->maintain_due[b] < next)
				next = s->maintain_due[b];
		if (s->hook.run && hook_due < next)
			next = hook_due;

		pfd[0].fd = s->wake_fd;
		pfd[0].events = POLLIN;
		for (size_t i = 0; i < SCHED_HOOK_FDS; i++) {
			if (s->hook.fd[i] < 0)
				continue;
			pfd[npfd].fd = s->hook.fd[i];
			pfd[npfd].events = POLLIN;
			watched[npfd++] = NULL;
		}
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
		/* Before this step touches a file (it may be the first since
		 * the sandbox was entered while it waited). */
		sandbox_thread_enter();
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
			if (!be) {
				hook_due = 0; /* the hook reads its descriptors */
				continue;
			}
			if (be->ops->on_watch(be) != 1)
				continue;
			/* A change notification: read every source of it now. */
			for (size_t j = 0; j < source_set_count(s->sources); j++) {
				struct source *src = source_set_get(s->sources, j);
				if (src->be == be && !source_busy(s, src))
					source_read_now(src, now);
			}
		}
	}
	free(pfd);
	free(watched);
	return NULL;
}

/* Starts the workers once a concurrent backend needs them (at start, or
 * after a reload added one). Signals blocked; scheduler thread or before
 * it runs. */
static void start_workers(struct sched *s)
{
	struct sched_pool *pool = &s->pool;
	size_t n = pool->n;

	for (size_t b = 0; b < s->nbackends && !n; b++) {
		if (!s->backends[b]->ops->concurrent)
			continue;
		for (; n < SCHED_WORKERS; n++)
			if (pthread_create(&pool->threads[n], NULL, worker_main, s) != 0)
				break;
	}
	pthread_mutex_lock(&pool->lock);
	pool->n = n;
	pthread_mutex_unlock(&pool->lock);
}

int sched_start(struct sched *s)
{
	sigset_t all, old;
	int rc;

	for (size_t i = 0; i < source_set_count(s->sources); i++)
		source_set_get(s->sources, i)->due = 0;
	/* Signals go to the main thread (the FUSE loop), never here. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	start_workers(s);
	rc = pthread_create(&s->thread, NULL, sched_main, s);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		log_error("scheduler: cannot start thread: %s", strerror(rc));
		return SFS_EIO;
	}
	s->started = true;
	return 0;
}

size_t sched_wait_ready(struct sched *s, uint64_t timeout_ms)
{
	return source_set_wait(s->sources, false, timeout_ms);
}

size_t sched_wait_settled(struct sched *s, uint64_t timeout_ms)
{
	return source_set_wait(s->sources, true, timeout_ms);
}

size_t sched_report_missing(struct sched *s, bool with_reasons, sched_report_fn report,
                            void *arg)
{
	size_t n;

	pthread_rwlock_rdlock(&s->shape);
	n = source_set_report_missing(s->sources, with_reasons, report, arg);
	pthread_rwlock_unlock(&s->shape);
	return n;
}

void sched_set_hook(struct sched *s, const struct sched_hook *hook)
{
	s->hook = *hook;
}

/* ---- reloads ------------------------------------------------------------ */

/* Waits until no worker runs a step and none is queued; the scheduler
 * thread (the only one that queues) is here, so none will be. */
static void pool_wait_idle(struct sched_pool *pool)
{
	pthread_mutex_lock(&pool->lock);
	while (pool->busy || pool->len)
		pthread_cond_wait(&pool->idle, &pool->lock);
	pthread_mutex_unlock(&pool->lock);
}

/* A config's secrets sorted by name: a reload looks up every name of one
 * config in the other, each of up to limits.max_files secrets (a linear
 * search per name was quadratic). */
struct secret_index {
	const struct config_secret **v;
	size_t n;
};

static int by_name(const void *a, const void *b)
{
	const struct config_secret *const *x = a, *const *y = b;

	return strcmp((*x)->name, (*y)->name);
}

static int index_secrets(const struct config *cfg, struct secret_index *ix)
{
	ix->n = cfg->nsecrets;
	ix->v = malloc((ix->n ? ix->n : 1) * sizeof *ix->v);
	if (!ix->v)
		return SFS_ENOMEM;
	for (size_t i = 0; i < ix->n; i++)
		ix->v[i] = &cfg->secrets[i];
	qsort(ix->v, ix->n, sizeof *ix->v, by_name);
	return 0;
}

static const struct config_secret *secret_named(const struct secret_index *ix,
                                                const char *name)
{
	const struct config_secret key = {.name = (char *)name}, *kp = &key;
	const struct config_secret *const *hit =
	    bsearch(&kp, ix->v, ix->n, sizeof *ix->v, by_name);

	return hit ? *hit : NULL;
}

static bool backend_in(struct backend *be, struct backend **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (v[i] == be)
			return true;
	return false;
}

/* Whether cs names the same sources as f reads now: the same backend
 * object, path and options (for a consul-template file, those of each
 * secret call, in order). */
static bool same_sources(const struct sched_file *f, const struct config_secret *cs)
{
	/* The sources' keys are borrowed from the old config, alive until the
	 * apply ends. */
	if (f->calls || cs->format == RENDER_CONSUL_TEMPLATE) {
		if (!f->calls || f->ncalls != cs->ncalls)
			return false;
		for (size_t i = 0; i < cs->ncalls; i++) {
			struct source_key key = {.path = cs->calls[i].path,
			                         .extra = cs->calls[i].extra,
			                         .api_path = true};

			if (!source_is(f->calls[i], cs->backend, &key))
				return false;
		}
		return true;
	}
	return source_is(f->source, cs->backend,
	                 &(struct source_key){.path = cs->path, .extra = cs->extra});
}

/* Whether a source of f is of a backend not in v (rebuilt or gone). */
static bool on_backend_gone(const struct sched_file *f, struct backend **v, size_t n)
{
	for (size_t i = 0; i < f->ncalls; i++)
		if (!backend_in(f->calls[i]->be, v, n))
			return true;
	return !backend_in(f->source->be, v, n);
}

int sched_check_config(struct sched *s, const struct config *old,
                       const struct config *cfg, struct diag *d)
{
	int problems = 0;
	bool resize = !fs_can_change_files(s->fs);
	struct secret_index olds = {0}, news = {0};

	if (index_secrets(old, &olds) < 0 || index_secrets(cfg, &news) < 0) {
		free(olds.v);
		return SFS_ENOMEM;
	}
	for (size_t i = 0; i < cfg->nsecrets; i++) {
		const struct config_secret *cs = &cfg->secrets[i];

		if (secret_named(&olds, cs->name))
			continue;
		if (resize) {
			diag_add_at(d, "secrets", cs->name,
			            "a new file cannot be added live with a directory "
			            "mount (restart secretfs)");
			problems++;
		} else if (fs_check_name(s->fs, cs->name) < 0) {
			diag_add_at(d, "secrets", cs->name,
			            "clashes with a file or directory of the running "
			            "mount (a name that was a file cannot become a "
			            "directory live, nor the reverse; restart secretfs)");
			problems++;
		}
	}
	for (size_t i = 0; resize && i < old->nsecrets; i++) {
		const struct config_secret *os = &old->secrets[i], *cs;

		if (!(cs = secret_named(&news, os->name))) {
			diag_add_at(
			    d, "secrets", os->name,
			    "a file cannot be removed live with a directory mount "
			    "(restart secretfs)");
			problems++;
		} else if ((os->has_mode ? os->mode : old->mount.mode) !=
		               (cs->has_mode ? cs->mode : cfg->mount.mode) ||
		           (os->has_uid ? os->uid : old->mount.uid) !=
		               (cs->has_uid ? cs->uid : cfg->mount.uid) ||
		           (os->has_gid ? os->gid : old->mount.gid) !=
		               (cs->has_gid ? cs->gid : cfg->mount.gid)) {
			diag_add_at(d, "secrets", os->name,
			            "mode and owner cannot change live with a directory "
			            "mount (restart secretfs)");
			problems++;
		}
	}
	free(olds.v);
	free(news.v);
	return problems ? SFS_EINVAL : 0;
}

/* The files of every source: those the apply walks. */
static struct sched_file **live_files(struct sched *s, size_t *n)
{
	size_t total = 0, k = 0;
	struct sched_file **v;

	for (size_t i = 0; i < source_set_count(s->sources); i++)
		total += source_set_get(s->sources, i)->nfiles;
	v = calloc(total ? total : 1, sizeof *v);
	if (!v)
		return NULL;
	for (size_t i = 0; i < source_set_count(s->sources); i++) {
		struct source *src = source_set_get(s->sources, i);
		/* A consul-template file is listed under its first source. */
		for (size_t j = 0; j < src->nfiles; j++)
			if (src->files[j]->source == src)
				v[k++] = src->files[j];
	}
	*n = k;
	return v;
}

/* The backends of the new config take the old ones' places: maintenance
 * times follow the backends that stay. */
static int take_backends(struct sched *s, struct backend **backends, size_t n)
{
	uint64_t *due = calloc(n ? n : 1, sizeof *due);

	if (!due)
		return SFS_ENOMEM;
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < s->nbackends; j++)
			if (s->backends[j] == backends[i])
				due[i] = s->maintain_due[j];
	free(s->maintain_due);
	s->maintain_due = due;
	s->backends = backends;
	s->nbackends = n;
	source_set_set_backends(s->sources, backends, n);
	return 0;
}

/* Moves (or attaches) f to the source of its secret; the source's value,
 * when one is kept, renders it at once. */
static int reattach(struct sched *s, struct sched_file *f)
{
	int rc = source_set_attach(s->sources, f);

	/* A consul-template file renders from each of its sources' replies:
	 * one that kept none is read again. */
	for (size_t i = 0; rc == 0 && i < f->ncalls; i++)
		f->calls[i]->rerender = true;
	if (rc == 0)
		f->source->rerender = true;
	return rc;
}

/* The body of sched_apply_config, with the shape lock held. */
static int apply_locked(struct sched *s, const struct config *old,
                        const struct config *cfg, struct backend **backends,
                        size_t nbackends, uint64_t now, struct sched_applied *out)
{
	struct sched_file **files, **moved = NULL;
	size_t nfiles = 0, nmoved = 0, before;
	struct secret_index olds = {0}, news = {0};
	int rc = SFS_ENOMEM;

	files = live_files(s, &nfiles);
	moved = calloc(nfiles + cfg->nsecrets + 1, sizeof *moved);
	if (!files || !moved || index_secrets(old, &olds) < 0 ||
	    index_secrets(cfg, &news) < 0)
		goto out;
	before = source_set_count(s->sources);
	publish_set_config(s->publish, cfg);
	revoke_set_shutdown_timeout(s->revoke, cfg->shutdown_timeout_ms);
	/* The sources of a backend rebuilt or gone end: their files move to
	 * sources of the new backend (read anew). */
	for (size_t i = 0; i < nfiles; i++)
		if (on_backend_gone(files[i], backends, nbackends)) {
			source_set_detach(s->sources, files[i]);
			moved[nmoved++] = files[i];
		}
	rc = take_backends(s, backends, nbackends);
	if (rc < 0)
		goto out;
	for (size_t i = 0; i < nfiles; i++) {
		struct sched_file *f = files[i];
		const struct config_secret *cs = secret_named(&news, f->name);
		bool detached = f->source == NULL;

		if (!cs) {
			source_set_detach(s->sources, f);
			rc = publish_remove_file(s->publish, f);
			if (rc < 0)
				goto out;
			out->removed++;
			log_event(LOG_LVL_INFO,
			          &(struct log_fields){.event = "config.file_removed",
			                               .file = f->name},
			          "file %s: removed by the new configuration", f->name);
			continue;
		}
		if (!detached && !same_sources(f, cs)) {
			source_set_detach(s->sources, f);
			moved[nmoved++] = f;
			detached = true;
		}
		rc = publish_rebind_file(s->publish, old, f, cs);
		if (rc < 0)
			goto out;
		if (rc == 1 && f->source)
			f->source->rerender = true;
		out->changed += rc == 1 || detached;
	}
	for (size_t i = 0; i < cfg->nsecrets; i++) {
		const struct config_secret *cs = &cfg->secrets[i];
		struct sched_file *f;

		if (secret_named(&olds, cs->name))
			continue;
		rc = publish_add_file(s->publish, cs, &f);
		if (rc < 0)
			goto out;
		moved[nmoved++] = f;
		out->added++;
	}
	for (size_t i = 0; i < nmoved; i++) {
		rc = reattach(s, moved[i]);
		if (rc < 0)
			goto out;
	}
	out->sources_ended = source_set_prune(s->sources, now);
	source_set_rebind(s->sources);
	publish_rebind_actions(s->publish);
	out->sources_new = source_set_count(s->sources) + out->sources_ended - before;
	out->sources_kept = source_set_count(s->sources) - out->sources_new;
	rc = pool_fit(&s->pool, source_set_count(s->sources));
	if (rc < 0)
		goto out;
	for (size_t i = 0; i < source_set_count(s->sources); i++) {
		struct source *src = source_set_get(s->sources, i);

		if (!src->rerender)
			continue;
		src->rerender = false;
		/* A source not read yet renders its files when it is. */
		if (!src->ready)
			continue;
		if (publish_source_again(s->publish, src, now) < 0) {
			log_warn(
			    "source %s: cannot render its files from the kept value; "
			    "reading it again",
			    src->label);
			source_read_now(src, now);
		}
	}
	rc = 0;
out:
	free(olds.v);
	free(news.v);
	free(files);
	free(moved);
	return rc;
}

int sched_apply_config(struct sched *s, const struct config *old,
                       const struct config *cfg, struct backend **backends,
                       size_t nbackends, struct sched_applied *out)
{
	sigset_t all, prev;
	int rc;

	memset(out, 0, sizeof *out);
	pool_wait_idle(&s->pool);
	pthread_rwlock_wrlock(&s->shape);
	rc = apply_locked(s, old, cfg, backends, nbackends, timing_now_ms(), out);
	pthread_rwlock_unlock(&s->shape);
	secmem_wipe_stack();
	/* Workers inherit a mask that leaves every signal to the main thread. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &prev);
	start_workers(s);
	pthread_sigmask(SIG_SETMASK, &prev, NULL);
	return rc;
}

void sched_stop(struct sched *s)
{
	struct sched_pool *pool;
	uint64_t one = 1;
	ssize_t r;

	if (!s || !s->started)
		return;
	pool = &s->pool;
	/* Requests in flight end now (the signal handler may have done so
	 * already); the threads then have nothing left to wait for. */
	http_stop();
	pthread_mutex_lock(&pool->lock);
	s->stopping = true;
	pthread_mutex_unlock(&pool->lock);
	source_set_stop_waits(s->sources);
	r = write(s->wake_fd, &one, sizeof one);
	(void)r;
	pthread_join(s->thread, NULL);
	pthread_mutex_lock(&pool->lock);
	pool->stop = true;
	pthread_cond_broadcast(&pool->cond);
	pthread_mutex_unlock(&pool->lock);
	for (size_t i = 0; i < pool->n; i++)
		pthread_join(pool->threads[i], NULL);
	pool->n = 0;
	s->started = false;
	/* The only network work left: revocations, all within the budget
	 * (revoke_run opens the window for each). */
	revoke_begin_shutdown(s->revoke, timing_now_ms());
	/* Leases already replaced are of no use to anyone: revoke them now,
	 * and the current ones where the operator asked for it. */
	source_set_revoke_leases(s->sources);
	revoke_run(s->revoke, UINT64_MAX, true);
}

void sched_free(struct sched *s)
{
	if (!s)
		return;
	sched_stop(s);
	source_set_free(s->sources);
	revoke_free(s->revoke);
	publish_free(s->publish);
	free(s->maintain_due);
	free(s->pool.queue);
	if (s->wake_fd >= 0)
		close(s->wake_fd);
	pthread_rwlock_destroy(&s->shape);
	pthread_cond_destroy(&s->pool.idle);
	pthread_cond_destroy(&s->pool.cond);
	pthread_mutex_destroy(&s->pool.lock);
	free(s);
}
