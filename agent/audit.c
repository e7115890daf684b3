/*
 * The audit trail (see audit.h): the "audit" config block, a ring of
 * fixed-size records filled by the FUSE handlers, and the writer thread
 * that formats, coalesces and appends them.
 *
 * Producers take the ring's mutex only to copy one record in (never while
 * anything is written); a full ring drops the record. Only the record that
 * finds the ring empty, or makes it half full, posts the semaphore: once
 * woken the writer lets records gather for AUDIT_GATHER_MS, so a busy
 * reader costs the writer a wake-up per batch, not per open.
 * The writer takes records out in batches and does all the I/O on a file
 * descriptor set O_NONBLOCK, so that a FIFO nobody drains cannot hold
 * shutdown: waiting for room is a bounded poll(2) that gives up once
 * audit_free's deadline has passed. SIGUSR1's handler only sets a flag and
 * posts the semaphore (sem_post is async-signal-safe); the writer reopens.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sandbox.h"
#include "secretfs/audit.h"
#include "secretfs/error.h"
#include "secretfs/log.h"
#include "secretfs/stats.h"
#include "secretfs/timing.h"

#define AUDIT_DEFAULT_QUEUE 1024
#define AUDIT_MAX_QUEUE 65536
#define AUDIT_MAX_PATH 4096
#define AUDIT_WINDOW_MS 1000 /* repeats within it share a line */
#define AUDIT_WINDOWS 128    /* coalescing windows open at once */
#define AUDIT_BATCH 64       /* records taken out of the ring at a time */
#define AUDIT_GATHER_MS 20   /* the writer lets records gather this long */
#define AUDIT_LINE_MAX 8192  /* an escaped 1024-byte name and the rest */
#define AUDIT_DROP_LOG_S 10  /* at most one "dropped" log line per this */
#define AUDIT_DRAIN_MS 1000  /* audit_free waits this long for a stuck file */
#define AUDIT_COMM_LEN 16    /* TASK_COMM_LEN */

static const char *const audit_keys[] = {"path", "queue_size", NULL};

enum { AUDIT_WRITTEN, AUDIT_DROPPED };
static const struct stats_field audit_fields[] = {
    [AUDIT_WRITTEN] = {STATS_COUNTER, "secretfs_audit_lines_written_total",
                       "Audit lines appended to the audit file."},
    [AUDIT_DROPPED] = {STATS_COUNTER, "secretfs_audit_lines_dropped_total",
                       "Opens not audited: the queue was full or the file "
                       "refused the line."},
};
static const struct stats_family audit_family = {audit_fields, 2, NULL};

struct audit_rec {
	struct timespec ts; /* CLOCK_REALTIME */
	uint64_t version;
	size_t file;
	pid_t pid;
	uid_t uid;
	gid_t gid;
	int err;
	bool has_comm;
	char comm[AUDIT_COMM_LEN + 1];
};

/* Repeats of one key after the line that opened the window. */
struct audit_window {
	bool used;
	uint64_t start_ms;
	uint64_t repeats;
	struct audit_rec first; /* the first repeat, written with the count */
};

struct audit {
	char *path; /* NULL: stderr */
	int fd;
	struct stats_set *stats;

	pthread_mutex_t lock; /* ring and names */
	struct audit_rec *ring;
	size_t cap, head, count;
	char **names;
	size_t nnames;

	sem_t wake;
	pthread_t writer;
	bool started;
	volatile sig_atomic_t reopen;
	atomic_bool stop;
	_Atomic uint64_t give_up_ms; /* monotonic; 0 until audit_free */
	_Atomic int64_t drop_logged_s;
	_Atomic uint64_t drops_unlogged;

	struct audit_window windows[AUDIT_WINDOWS]; /* writer only */
};

/* ---- config ------------------------------------------------------------- */

void audit_config_free(struct audit_config *c)
{
	if (!c)
		return;
	free(c->path);
	free(c);
}

int audit_config_parse(const json_t *v, const char *kp, bool directory_mount,
                       struct diag *d, struct audit_config **out)
{
	struct audit_config *c;
	char ckp[2048];
	size_t before = diag_problems(d);
	const char *key;
	json_t *e;

	if (directory_mount) {
		diag_add(d, kp,
		         "is not available with a directory mount (\"mount\": {\"type\": "
		         "\"directory\"}): only a FUSE mount sees each open");
		return SFS_EINVAL;
	}
	if (!json_is_object(v)) {
		diag_add(d, kp,
		         "must be an object like {\"path\": \"/var/log/secretfs/"
		         "audit.jsonl\"}");
		return SFS_EINVAL;
	}
	c = calloc(1, sizeof *c);
	if (!c) {
		diag_add(d, kp, "out of memory");
		return SFS_ENOMEM;
	}
	c->queue_size = AUDIT_DEFAULT_QUEUE;
	json_object_foreach((json_t *)v, key, e)
	{
		bool known = false;

		for (const char *const *k = audit_keys; *k; k++)
			known = known || strcmp(*k, key) == 0;
		if (!known)
			diag_add(d, diag_keypath(ckp, sizeof ckp, kp, key),
			         "unknown key (%s takes: path, queue_size)", kp);
	}
	diag_keypath(ckp, sizeof ckp, kp, "path");
	e = json_object_get(v, "path");
	if (!e)
		diag_add(d, kp, "missing required key \"path\"");
	else if (!json_is_string(e) || json_string_length(e) == 0)
		diag_add(d, ckp, "must be a non-empty string");
	else if (json_string_length(e) > AUDIT_MAX_PATH)
		diag_add(d, ckp, "must be at most %d bytes", AUDIT_MAX_PATH);
	else if (strcmp(json_string_value(e), "-") != 0 && json_string_value(e)[0] != '/')
		diag_add(d, ckp, "must be an absolute path, or \"-\" for stderr");
	else if (!(c->path = strdup(json_string_value(e))))
		diag_add(d, kp, "out of memory");
	if ((e = json_object_get(v, "queue_size"))) {
		json_int_t n = json_is_integer(e) ? json_integer_value(e) : 0;

		if (n < 1 || n > AUDIT_MAX_QUEUE)
			diag_add(d, diag_keypath(ckp, sizeof ckp, kp, "queue_size"),
			         "must be an integer from 1 to %d", AUDIT_MAX_QUEUE);
		else
			c->queue_size = (size_t)n;
	}
	if (diag_problems(d) != before) {
		audit_config_free(c);
		return SFS_EINVAL;
	}
	*out = c;
	return 0;
}

/* ---- the file ----------------------------------------------------------- */

static int open_file(const char *path)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);

	/* The writer waits in poll(2), boundedly, rather than in write(2). */
	if (fd >= 0)
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	return fd;
}

static void reopen_file(struct audit *a)
{
	int fd;

	a->reopen = 0;
	if (!a->path)
		return;
	fd = open_file(a->path);
	if (fd < 0) {
		log_warn("audit: cannot reopen %s: %s (still writing to the old file)",
		         a->path, strerror(errno));
		return;
	}
	close(a->fd);
	a->fd = fd;
	log_info("audit: reopened %s", a->path);
}

/* Whether audit_free's deadline has passed. */
static bool giving_up(struct audit *a)
{
	uint64_t until = atomic_load(&a->give_up_ms);

	return until && timing_now_ms() >= until;
}

/* Appends one line whole; returns 0, or -1 when the file refused it (or
 * had no room before the shutdown deadline). */
static int write_line(struct audit *a, const char *buf, size_t len)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = write(a->fd, buf + off, len - off);

		if (n > 0) {
			off += (size_t)n;
		} else if (n < 0 && errno == EAGAIN) {
			struct pollfd p = {.fd = a->fd, .events = POLLOUT};

			if (giving_up(a))
				return -1;
			poll(&p, 1, 100);
		} else if (n < 0 && errno != EINTR) {
			return -1;
		}
	}
	return 0;
}

/* ---- lines -------------------------------------------------------------- */

static void put_str(char *buf, size_t *len, const char *s)
{
	size_t n = strlen(s);

	if (n < AUDIT_LINE_MAX - *len) {
		memcpy(buf + *len, s, n);
		*len += n;
	}
}

static void put_quoted(char *buf, size_t *len, const char *s)
{
	put_str(buf, len, "\"");
	log_json_escape(buf, AUDIT_LINE_MAX - 2, len, s);
	put_str(buf, len, "\"");
}

static void put_num(char *buf, size_t *len, const char *key, uint64_t v)
{
	char num[64];

	snprintf(num, sizeof num, ",\"%s\":%" PRIu64, key, v);
	put_str(buf, len, num);
}

/* Formats and appends the line of r standing for count opens. */
static void emit(struct audit *a, const struct audit_rec *r, uint64_t count)
{
	char buf[AUDIT_LINE_MAX], ts[64];
	const char *result = r->err ? strerrorname_np(r->err) : "ok";
	size_t len = 0;
	struct tm tm;

	gmtime_r(&r->ts.tv_sec, &tm);
	snprintf(ts, sizeof ts, "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\"",
	         tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
	         tm.tm_sec, r->ts.tv_nsec / 1000000);
	put_str(buf, &len, ts);
	put_str(buf, &len, ",\"file\":");
	/* Names were declared before any open; the lock orders that. */
	pthread_mutex_lock(&a->lock);
	put_quoted(buf, &len, r->file < a->nnames ? a->names[r->file] : "");
	pthread_mutex_unlock(&a->lock);
	put_num(buf, &len, "version", r->version);
	put_num(buf, &len, "pid", (uint64_t)r->pid);
	put_num(buf, &len, "uid", (uint64_t)r->uid);
	put_num(buf, &len, "gid", (uint64_t)r->gid);
	put_str(buf, &len, ",\"comm\":");
	if (r->has_comm)
		put_quoted(buf, &len, r->comm);
	else
		put_str(buf, &len, "null");
	put_str(buf, &len, ",\"result\":");
	put_quoted(buf, &len, result ? result : "EUNKNOWN");
	put_num(buf, &len, "count", count);
	put_str(buf, &len, "}\n");
	if (write_line(a, buf, len) == 0)
		stats_inc(a->stats, AUDIT_WRITTEN);
	else
		stats_add(a->stats, AUDIT_DROPPED, count);
}

static uint64_t ms_of(const struct timespec *ts)
{
	return (uint64_t)ts->tv_sec * 1000 + (uint64_t)ts->tv_nsec / 1000000;
}

static uint64_t realtime_ms(void)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	return ms_of(&now);
}

static bool same_key(const struct audit_rec *x, const struct audit_rec *y)
{
	return x->pid == y->pid && x->file == y->file && x->version == y->version &&
	       x->err == y->err;
}

/* Writes the repeats a window holds and closes it. */
static void window_close(struct audit *a, struct audit_window *w)
{
	if (w->repeats)
		emit(a, &w->first, w->repeats);
	w->used = false;
	w->repeats = 0;
}

/* Closes the windows that are over (all of them when all is set). */
static void windows_flush(struct audit *a, bool all)
{
	uint64_t now = realtime_ms();

	for (size_t i = 0; i < AUDIT_WINDOWS; i++) {
		struct audit_window *w = &a->windows[i];

		if (w->used &&
		    (all || now - w->start_ms >= AUDIT_WINDOW_MS || now < w->start_ms))
			window_close(a, w);
	}
}

/* Counts r into its open window, or writes it and opens one. */
static void coalesce(struct audit *a, const struct audit_rec *r)
{
	struct audit_window *slot = NULL, *oldest = NULL;
	uint64_t at = ms_of(&r->ts);

	for (size_t i = 0; i < AUDIT_WINDOWS; i++) {
		struct audit_window *w = &a->windows[i];

		if (w->used && same_key(&w->first, r)) {
			if (at >= w->start_ms && at - w->start_ms < AUDIT_WINDOW_MS) {
				if (w->repeats++ == 0)
					w->first = *r;
				return;
			}
			window_close(a, w);
		}
		if (!w->used && !slot)
			slot = w;
		if (w->used && (!oldest || w->start_ms < oldest->start_ms))
			oldest = w;
	}
	if (!slot) {
		slot = oldest;
		window_close(a, slot);
	}
	emit(a, r, 1);
	slot->used = true;
	slot->start_ms = at;
	slot->repeats = 0;
	slot->first = *r; /* the key, until a repeat replaces it */
}

/* When the earliest window holding repeats ends (realtime ms), or 0. */
static uint64_t next_flush_ms(const struct audit *a)
{
	uint64_t next = 0;

	for (size_t i = 0; i < AUDIT_WINDOWS; i++) {
		const struct audit_window *w = &a->windows[i];
		uint64_t end = w->start_ms + AUDIT_WINDOW_MS;

		if (w->used && w->repeats && (!next || end < next))
			next = end;
	}
	return next;
}

/* Takes up to AUDIT_BATCH records out of the ring; returns how many. */
static size_t ring_take(struct audit *a, struct audit_rec *out)
{
	size_t n = 0;

	pthread_mutex_lock(&a->lock);
	while (n < AUDIT_BATCH && a->count) {
		out[n++] = a->ring[a->head];
		a->head = (a->head + 1) % a->cap;
		a->count--;
	}
	pthread_mutex_unlock(&a->lock);
	return n;
}

/* sem_timedwait until ms from now (CLOCK_REALTIME) or a post. */
static void wait_ms(struct audit *a, uint64_t ms)
{
	uint64_t until = realtime_ms() + ms;
	struct timespec ts = {.tv_sec = (time_t)(until / 1000),
	                      .tv_nsec = (long)(until % 1000) * 1000000};

	sem_timedwait(&a->wake, &ts);
}

static void *writer_main(void *arg)
{
	struct audit *a = arg;
	struct audit_rec batch[AUDIT_BATCH];
	sigset_t all;

	/* Signals are for the main thread and the FUSE loop. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	for (;;) {
		size_t n;
		uint64_t next;

		sandbox_thread_enter();
		if (a->reopen)
			reopen_file(a);
		while ((n = ring_take(a, batch)) > 0)
			for (size_t i = 0; i < n; i++)
				coalesce(a, &batch[i]);
		if (atomic_load(&a->stop)) {
			windows_flush(a, true);
			break;
		}
		windows_flush(a, false);
		next = next_flush_ms(a);
		if (next) {
			uint64_t now = realtime_ms();
			wait_ms(a, next > now ? next - now : 0);
		} else {
			sem_wait(&a->wake);
		}
		if (!atomic_load(&a->stop) && !a->reopen)
			wait_ms(a, AUDIT_GATHER_MS);
	}
	return NULL;
}

/* ---- lifecycle ---------------------------------------------------------- */

int audit_new(const struct audit_config *c, struct stats *stats, struct audit **out)
{
	struct audit *a = calloc(1, sizeof *a);

	if (!a)
		return SFS_ENOMEM;
	a->fd = -1;
	pthread_mutex_init(&a->lock, NULL);
	sem_init(&a->wake, 0, 0);
	a->cap = c->queue_size ? c->queue_size : AUDIT_DEFAULT_QUEUE;
	a->ring = calloc(a->cap, sizeof *a->ring);
	if (!a->ring || (strcmp(c->path, "-") != 0 && !(a->path = strdup(c->path)))) {
		audit_free(a);
		return SFS_ENOMEM;
	}
	a->fd = a->path ? open_file(a->path) : STDERR_FILENO;
	if (a->fd < 0) {
		log_error("audit: cannot open %s: %s", a->path, strerror(errno));
		audit_free(a);
		return SFS_EIO;
	}
	a->stats = stats_register(stats, &audit_family, NULL);
	if (pthread_create(&a->writer, NULL, writer_main, a) != 0) {
		audit_free(a);
		return SFS_ENOMEM;
	}
	a->started = true;
	*out = a;
	return 0;
}

int audit_add_file(struct audit *a, const char *name, size_t *id)
{
	char **grown, *copy = strdup(name);
	int rc = 0;

	if (!copy)
		return SFS_ENOMEM;
	pthread_mutex_lock(&a->lock);
	grown = realloc(a->names, (a->nnames + 1) * sizeof *grown);
	if (!grown) {
		free(copy);
		rc = SFS_ENOMEM;
	} else {
		a->names = grown;
		*id = a->nnames;
		a->names[a->nnames++] = copy;
	}
	pthread_mutex_unlock(&a->lock);
	return rc;
}

/* The caller's command name: one bounded read; false when it is gone. */
static bool read_comm(pid_t pid, char *out)
{
	char path[32];
	ssize_t n;
	int fd;

	if (pid <= 0)
		return false;
	snprintf(path, sizeof path, "/proc/%d/comm", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return false;
	n = read(fd, out, AUDIT_COMM_LEN);
	close(fd);
	if (n <= 0)
		return false;
	out[n] = '\0';
	out[strcspn(out, "\n")] = '\0';
	return true;
}

/* Counts a dropped record; logs at most once every AUDIT_DROP_LOG_S. */
static void count_drop(struct audit *a)
{
	int64_t now = (int64_t)time(NULL), last = atomic_load(&a->drop_logged_s);

	stats_inc(a->stats, AUDIT_DROPPED);
	atomic_fetch_add(&a->drops_unlogged, 1);
	if (now - last >= AUDIT_DROP_LOG_S &&
	    atomic_compare_exchange_strong(&a->drop_logged_s, &last, now))
		log_warn("audit: queue full: %" PRIu64 " open(s) not audited since the "
		         "last report (secretfs_audit_lines_dropped_total)",
		         atomic_exchange(&a->drops_unlogged, 0));
}

void audit_open(struct audit *a, size_t file, uint64_t version, pid_t pid, uid_t uid,
                gid_t gid, int err)
{
	struct audit_rec r = {.version = version,
	                      .file = file,
	                      .pid = pid,
	                      .uid = uid,
	                      .gid = gid,
	                      .err = err};
	bool queued = false, wake = false;

	if (!a)
		return;
	clock_gettime(CLOCK_REALTIME, &r.ts);
	r.has_comm = read_comm(pid, r.comm);
	pthread_mutex_lock(&a->lock);
	if (a->count < a->cap) {
		a->ring[(a->head + a->count) % a->cap] = r;
		a->count++;
		queued = true;
		wake = a->count == 1 || a->count == a->cap / 2 + 1;
	}
	pthread_mutex_unlock(&a->lock);
	if (wake)
		sem_post(&a->wake);
	else if (!queued)
		count_drop(a);
}

void audit_request_reopen(struct audit *a)
{
	if (!a)
		return;
	a->reopen = 1;
	sem_post(&a->wake);
}

void audit_free(struct audit *a)
{
	if (!a)
		return;
	if (a->started) {
		atomic_store(&a->give_up_ms, timing_now_ms() + AUDIT_DRAIN_MS);
		atomic_store(&a->stop, true);
		sem_post(&a->wake);
		pthread_join(a->writer, NULL);
	}
	if (a->fd >= 0 && a->path)
		close(a->fd);
	for (size_t i = 0; i < a->nnames; i++)
		free(a->names[i]);
	free(a->names);
	free(a->ring);
	free(a->path);
	sem_destroy(&a->wake);
	pthread_mutex_destroy(&a->lock);
	free(a);
}
