/*
 * The scheduler (see scheduler.h). One thread runs a loop:
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
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "publish.h"
#include "revoke.h"
#include "scheduler.h"
#include "source.h"
#include "secretfs/error.h"
#include "secretfs/health.h"
#include "secretfs/http.h"
#include "secretfs/log.h"
#include "secretfs/secmem.h"
#include "secretfs/timing.h"

#define SCHED_WORKERS 8 /* concurrent requests to network backends */

/* The workers for concurrent backends: a queue of sources to run. */
struct sched_pool {
	pthread_mutex_t lock; /* guards the fields below, each source's in_flight
	                       * and the scheduler's stopping */
	pthread_cond_t cond;
	pthread_t threads[SCHED_WORKERS];
	size_t n;
	struct source **queue; /* ring of one entry per source */
	size_t head, len;
	bool stop;
};

struct sched {
	struct backend **backends; /* borrowed */
	size_t nbackends;
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
	s->wake_fd = -1;
	pthread_mutex_init(&s->pool.lock, NULL);
	pthread_cond_init(&s->pool.cond, NULL);
	s->maintain_due =
	    calloc(cfg->nbackends ? cfg->nbackends : 1, sizeof *s->maintain_due);
	s->pool.queue = calloc(cfg->nsecrets ? cfg->nsecrets : 1, sizeof *s->pool.queue);
	if (!s->maintain_due || !s->pool.queue)
		goto out;
	rc = publish_new(cfg, fs, st, stats, mon, &s->publish);
	if (rc < 0)
		goto out;
	rc = revoke_new(cfg->shutdown_timeout_ms, &s->revoke);
	if (rc < 0)
		goto out;
	rc = source_set_new(cfg->nsecrets, backends, cfg->nbackends, s->publish,
	                    s->revoke, stats, &s->sources);
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
	*out = s;
	s = NULL;
	rc = 0;
out:
	sched_free(s);
	return rc;
}

size_t sched_source_count(const struct sched *s)
{
	return source_set_count(s->sources);
}

size_t sched_published_count(const struct sched *s)
{
	return publish_count(s->publish);
}

/* Hands a due source of a concurrent backend to the workers. */
static void dispatch(struct sched *s, struct source *src)
{
	struct sched_pool *pool = &s->pool;
	size_t n = source_set_count(s->sources);

	pthread_mutex_lock(&pool->lock);
	if (!src->in_flight && pool->len < n) {
		src->in_flight = true;
		pool->queue[(pool->head + pool->len++) % n] = src;
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
	size_t n = source_set_count(s->sources);
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
		pool->head = (pool->head + 1) % n;
		pool->len--;
		pthread_mutex_unlock(&pool->lock);

		source_run(s->sources, src, timing_now_ms());
		secmem_wipe_stack();

		pthread_mutex_lock(&pool->lock);
		src->in_flight = false;
		/* Wake the scheduler: this source has a new due time. */
		r = write(s->wake_fd, &one, sizeof one);
		(void)r;
	}
	pthread_mutex_unlock(&pool->lock);
	return NULL;
}

/* Runs every due source: network backends' on the workers, the others
 * here, bracketing each backend's round of reads. */
static void run_due_sources(struct sched *s, uint64_t now)
{
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
		}
		if (begun && be->ops->batch_end)
			be->ops->batch_end(be);
	}
}

static bool sched_stopping(struct sched *s)
{
	bool v;

	pthread_mutex_lock(&s->pool.lock);
	v = s->stopping;
	pthread_mutex_unlock(&s->pool.lock);
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
			for (size_t j = 0; j < source_set_count(s->sources); j++) {
				struct source *src = source_set_get(s->sources, j);
				if (src->be == be && !source_busy(s, src))
					source_read_now(src, now);
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
	struct sched_pool *pool = &s->pool;
	sigset_t all, old;
	int rc;

	for (size_t i = 0; i < source_set_count(s->sources); i++)
		source_set_get(s->sources, i)->due = 0;
	/* Signals go to the main thread (the FUSE loop), never here. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	rc = pthread_create(&s->thread, NULL, sched_main, s);
	for (size_t b = 0; rc == 0 && b < s->nbackends; b++) {
		if (!s->backends[b]->ops->concurrent || pool->n)
			continue;
		for (; pool->n < SCHED_WORKERS; pool->n++)
			if (pthread_create(&pool->threads[pool->n], NULL, worker_main,
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
	return source_set_report_missing(s->sources, with_reasons, report, arg);
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
	pthread_cond_destroy(&s->pool.cond);
	pthread_mutex_destroy(&s->pool.lock);
	free(s);
}
