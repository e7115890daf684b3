/*
 * The telemetry listener (see telemetry.h), over libmicrohttpd.
 *
 * libmicrohttpd is loaded and the socket bound through httpd.c, shared
 * with the AWS agent API (aws_api.c): a daemon without the block maps none
 * of it, and a busy address is reported at start-up with its errno.
 *
 * Bounds: TELEMETRY_MAX_CONNECTIONS at once, each closed after
 * TELEMETRY_CONN_TIMEOUT_S idle seconds, TELEMETRY_CONN_MEMORY bytes for a
 * request's line and headers (larger requests are refused by
 * libmicrohttpd with 431), no request body read, TELEMETRY_MAX_BODY bytes
 * of /metrics at most. Only GET and HEAD (405 otherwise) of /metrics,
 * /healthz and /readyz (404 otherwise). The answers name files, sources
 * and backends, never a value.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#include "httpd.h"
#include "mountpoint.h"
#include "sandbox.h"
#include "scheduler.h"
#include "secretfs/error.h"
#include "secretfs/fs.h"
#include "secretfs/health.h"
#include "secretfs/log.h"
#include "secretfs/stats.h"
#include "telemetry.h"

#define TELEMETRY_MAX_CONNECTIONS 16
#define TELEMETRY_CONN_TIMEOUT_S 10
#define TELEMETRY_CONN_MEMORY (16 * 1024)
#define TELEMETRY_MAX_BODY (16u * 1024 * 1024)
#define TELEMETRY_MAX_READY_TEXT 2048 /* names listed by /readyz */

struct telemetry {
	const struct config *cfg;
	int fd;               /* listening socket; -1 once libmicrohttpd owns it */
	bool unlink_path;     /* we made the unix socket file */
	struct MHD_Daemon *d; /* NULL until started */
	struct stats *stats;
	struct sched *sched;
	_Atomic bool mounted;
	bool mount_checked; /* a FUSE mount at a path: look at mountinfo */
};

static const struct httpd_api *mhd_api; /* set by telemetry_start */
#define mhd (*mhd_api)

/* --- a bounded text buffer ---------------------------------------------- */

struct text {
	char *p;
	size_t len, cap, max;
	bool failed; /* out of memory or past max: the text is not to be sent */
};

static void text_printf(struct text *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void text_printf(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (t->failed)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(t->p ? t->p + t->len : NULL, t->p ? t->cap - t->len : 0,
		              fmt, ap);
		va_end(ap);
		if (n < 0) {
			t->failed = true;
			return;
		}
		if (t->p && t->len + (size_t)n < t->cap) {
			t->len += (size_t)n;
			return;
		}
		size_t want = t->cap ? t->cap * 2 : 16384;
		while (want < t->len + (size_t)n + 1)
			want *= 2;
		if (want > t->max + 1)
			want = t->max + 1;
		char *grown = want > t->len + (size_t)n ? realloc(t->p, want) : NULL;
		if (!grown) {
			t->failed = true;
			return;
		}
		t->p = grown;
		t->cap = want;
	}
}

/* Appends s as a label value: backslash, double quote and line feed
 * escaped, as the text format wants. */
static void text_label_value(struct text *t, const char *s)
{
	for (; *s && !t->failed; s++) {
		if (*s == '\\')
			text_printf(t, "\\\\");
		else if (*s == '"')
			text_printf(t, "\\\"");
		else if (*s == '\n')
			text_printf(t, "\\n");
		else
			text_printf(t, "%c", *s);
	}
}

/* --- /metrics ----------------------------------------------------------- */

struct exposition {
	struct text *t;
	const struct stats_field *last; /* whose # HELP / # TYPE are written */
};

static const char *type_name(enum stats_kind k)
{
	return k == STATS_COUNTER ? "counter" : k == STATS_GAUGE ? "gauge" : "histogram";
}

static void write_header(struct text *t, const char *name, const char *help,
                         const char *type)
{
	text_printf(t, "# HELP %s ", name);
	for (const char *c = help; *c; c++)
		text_printf(t, *c == '\\' ? "\\\\" : *c == '\n' ? "\\n" : "%c", *c);
	text_printf(t, "\n# TYPE %s %s\n", name, type);
}

/* name{labels[,extra]} with the sample's labels. */
static void write_series(struct text *t, const char *name, const char *suffix,
                         const struct stats_sample *s, const char *le)
{
	bool any = false;

	text_printf(t, "%s%s", name, suffix);
	if (s->label) {
		text_printf(t, "{%s=\"", s->label);
		text_label_value(t, s->value);
		text_printf(t, "\"");
		any = true;
	}
	for (size_t d = 0; d < s->ndims; d++) {
		text_printf(t, "%s%s=\"", any ? "," : "{", s->dim_key[d]);
		text_label_value(t, s->dim_value[d]);
		text_printf(t, "\"");
		any = true;
	}
	if (le) {
		text_printf(t, "%sle=\"%s\"", any ? "," : "{", le);
		any = true;
	}
	text_printf(t, "%s ", any ? "}" : "");
}

static void write_sample(void *arg, const struct stats_sample *s)
{
	struct exposition *e = arg;
	const struct stats_field *f = s->field;
	double unit = f->unit > 0 ? f->unit : 1;
	char le[64];

	if (e->last != f && (!e->last || strcmp(e->last->name, f->name) != 0))
		write_header(e->t, f->name, f->help, type_name(f->kind));
	e->last = f;
	if (f->kind != STATS_HISTOGRAM) {
		write_series(e->t, f->name, "", s, NULL);
		text_printf(e->t, "%lld\n", (long long)s->v);
		return;
	}
	for (size_t b = 0; b < f->nbounds; b++) {
		snprintf(le, sizeof le, "%g", (double)f->bounds[b] * unit);
		write_series(e->t, f->name, "_bucket", s, le);
		text_printf(e->t, "%lld\n", (long long)s->buckets[b]);
	}
	write_series(e->t, f->name, "_bucket", s, "+Inf");
	text_printf(e->t, "%lld\n", (long long)s->v);
	write_series(e->t, f->name, "_sum", s, NULL);
	text_printf(e->t, "%.9g\n", (double)s->sum * unit);
	write_series(e->t, f->name, "_count", s, NULL);
	text_printf(e->t, "%lld\n", (long long)s->v);
}

/* The process metrics every Prometheus client library exports, from
 * /proc/self (names and meaning as in client_golang's process collector). */
static void write_process(struct text *t)
{
	char buf[1024], *p;
	unsigned long long utime = 0, stime = 0, start = 0, vsize = 0, btime = 0;
	long long rss = 0;
	long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
	struct rlimit rl;
	size_t fds = 0, n;
	FILE *f;
	DIR *dir;

	if ((f = fopen("/proc/self/stat", "re"))) {
		n = fread(buf, 1, sizeof buf - 1, f);
		buf[n] = '\0';
		fclose(f);
		/* After the command's closing parenthesis: field 3 on. */
		if ((p = strrchr(buf, ')')) &&
		    sscanf(
		        p + 2,
		        "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d "
		        "%*d %*d %*d %*d %llu %llu %lld",
		        &utime, &stime, &start, &vsize, &rss) != 5)
			utime = stime = start = vsize = 0, rss = 0;
	}
	if ((f = fopen("/proc/stat", "re"))) {
		while (fgets(buf, sizeof buf, f))
			if (sscanf(buf, "btime %llu", &btime) == 1)
				break;
		fclose(f);
	}
	if ((dir = opendir("/proc/self/fd"))) {
		struct dirent *de;
		while ((de = readdir(dir)))
			fds += de->d_name[0] != '.';
		closedir(dir);
		fds--; /* the directory's own descriptor */
	}
	if (tick <= 0)
		tick = 100;
	write_header(t, "process_cpu_seconds_total",
	             "Total user and system CPU time spent in seconds.", "counter");
	text_printf(t, "process_cpu_seconds_total %.2f\n",
	            (double)(utime + stime) / (double)tick);
	write_header(t, "process_open_fds", "Number of open file descriptors.", "gauge");
	text_printf(t, "process_open_fds %zu\n", fds);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		write_header(t, "process_max_fds",
		             "Maximum number of open file descriptors.", "gauge");
		text_printf(t, "process_max_fds %llu\n", (unsigned long long)rl.rlim_cur);
	}
	write_header(t, "process_virtual_memory_bytes", "Virtual memory size in bytes.",
	             "gauge");
	text_printf(t, "process_virtual_memory_bytes %llu\n", vsize);
	write_header(t, "process_resident_memory_bytes", "Resident memory size in bytes.",
	             "gauge");
	text_printf(t, "process_resident_memory_bytes %lld\n", rss * page);
	write_header(t, "process_start_time_seconds",
	             "Start time of the process since unix epoch in seconds.", "gauge");
	text_printf(t, "process_start_time_seconds %.2f\n",
	            (double)btime + (double)start / (double)tick);
}

static void write_metrics(struct telemetry *tm, struct text *t)
{
	struct exposition e = {.t = t};

	write_header(t, "secretfs_build_info",
	             "The running secretfs's version (always 1)", "gauge");
	text_printf(t, "secretfs_build_info{version=\"");
	text_label_value(t, SECRETFS_VERSION);
	text_printf(t, "\"} 1\n");
	write_header(t, "secretfs_files", "Files configured", "gauge");
	text_printf(t, "secretfs_files %zu\n", sched_file_count(tm->sched));
	write_header(t, "secretfs_files_served", "Configured files served now", "gauge");
	text_printf(t, "secretfs_files_served %zu\n", sched_published_count(tm->sched));
	write_header(t, "secretfs_scheduler_heartbeat_age_seconds",
	             "Seconds since the scheduler loop last went round", "gauge");
	uint64_t age = health_sched_age_ms();
	if (age == UINT64_MAX)
		text_printf(t, "secretfs_scheduler_heartbeat_age_seconds NaN\n");
	else
		text_printf(t, "secretfs_scheduler_heartbeat_age_seconds %.3f\n",
		            (double)age / 1000);
	stats_each(tm->stats, write_sample, &e);
	write_process(t);
}

/* --- /healthz and /readyz ----------------------------------------------- */

/* Why the daemon is not alive, or NULL when it is. */
static const char *liveness_problem(struct telemetry *tm, char *buf, size_t len)
{
	uint64_t age = health_sched_age_ms();

	if (fs_stop_requested())
		return "stopping";
	if (age == UINT64_MAX)
		return "the scheduler has not started";
	if (age > tm->cfg->telemetry->liveness_timeout_ms) {
		snprintf(buf, len, "the scheduler loop has not gone round for %llu ms",
		         (unsigned long long)age);
		return buf;
	}
	if (!atomic_load(&tm->mounted))
		return "not mounted yet";
	if (tm->mount_checked && !mountpoint_is_secretfs(tm->cfg->mount.path))
		return "the mount is gone";
	return NULL;
}

struct missing {
	struct text *t;
	size_t n;
};

static void note_missing(void *arg, const char *file, const char *source, const char *why)
{
	struct missing *m = arg;

	/* Names only: the reasons may quote a backend's error text. */
	if (m->t->len < TELEMETRY_MAX_READY_TEXT)
		text_printf(m->t, "%s%s", m->n ? ", " : "", file);
	else if (m->n && m->t->p[m->t->len - 1] != '.')
		text_printf(m->t, ", ...");
	m->n++;
}

/* --- the request handler ------------------------------------------------- */

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, struct text *t,
                             const char *type)
{
	struct MHD_Response *r;
	enum MHD_Result ok;

	if (t->failed) {
		free(t->p);
		t->p = NULL;
		t->len = 0;
		status = MHD_HTTP_INTERNAL_SERVER_ERROR;
		type = "text/plain; charset=utf-8";
	}
	r = mhd.create_response_from_buffer(t->len, t->p ? t->p : (void *)"",
	                                    t->p ? MHD_RESPMEM_MUST_FREE
	                                         : MHD_RESPMEM_PERSISTENT);
	if (!r) {
		free(t->p);
		return MHD_NO;
	}
	mhd.add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	mhd.add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		mhd.add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	ok = mhd.queue_response(c, status, r);
	mhd.destroy_response(r);
	return ok;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **req_cls)
{
	struct telemetry *tm = cls;

	sandbox_thread_enter();
	struct text t = {.max = TELEMETRY_MAX_BODY};
	const char *plain = "text/plain; charset=utf-8";
	const char *why;
	char buf[128];

	/* Answered at once, body unread: nothing here takes a body. */
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
	    strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
		text_printf(&t, "only GET and HEAD\n");
		return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, &t, plain);
	}
	if (strcmp(url, "/metrics") == 0) {
		write_metrics(tm, &t);
		return reply(c, MHD_HTTP_OK, &t,
		             "text/plain; version=0.0.4; charset=utf-8");
	}
	if (strcmp(url, "/healthz") == 0) {
		why = liveness_problem(tm, buf, sizeof buf);
		text_printf(&t, "%s%s\n", why ? "not alive: " : "ok", why ? why : "");
		return reply(c, why ? MHD_HTTP_SERVICE_UNAVAILABLE : MHD_HTTP_OK, &t,
		             plain);
	}
	if (strcmp(url, "/readyz") == 0) {
		struct text names = {.max = TELEMETRY_MAX_READY_TEXT + 64};
		struct missing m = {.t = &names};

		sched_report_missing(tm->sched, false, note_missing, &m);
		if (!atomic_load(&tm->mounted) && m.n == 0)
			text_printf(&t, "not ready: not mounted yet\n");
		else if (m.n)
			text_printf(&t, "not ready: %zu of %zu files missing: %s\n", m.n,
			            sched_file_count(tm->sched), names.p ? names.p : "");
		else
			text_printf(&t, "ready: %zu files\n",
			            sched_file_count(tm->sched));
		free(names.p);
		return reply(c,
		             m.n || !atomic_load(&tm->mounted)
		                 ? MHD_HTTP_SERVICE_UNAVAILABLE
		                 : MHD_HTTP_OK,
		             &t, plain);
	}
	text_printf(&t, "not found: /metrics, /healthz and /readyz only\n");
	return reply(c, MHD_HTTP_NOT_FOUND, &t, plain);
}

/* --- the socket ---------------------------------------------------------- */

int telemetry_new(const struct config *cfg, struct telemetry **out)
{
	const struct config_telemetry *tc = cfg->telemetry;
	struct telemetry *tm = calloc(1, sizeof *tm);

	if (!tm)
		return SFS_ENOMEM;
	tm->cfg = cfg;
	tm->fd = httpd_bind(tc, &tm->unlink_path);
	if (tm->fd < 0 || listen(tm->fd, TELEMETRY_MAX_CONNECTIONS) < 0) {
		log_event(LOG_LVL_ERROR,
		          &(struct log_fields){.event = "telemetry.listen_failed"},
		          "telemetry: cannot listen on %s: %s", tc->listen,
		          errno == EADDRINUSE ? "address already in use"
		                              : strerror(errno));
		telemetry_free(tm);
		return SFS_EIO;
	}
	tm->mount_checked =
	    cfg->mount.type == MOUNT_FUSE && !mountpoint_is_fd(cfg->mount.path);
	*out = tm;
	return 0;
}

int telemetry_start(struct telemetry *tm, struct stats *stats, struct sched *sched)
{
	tm->stats = stats;
	tm->sched = sched;
	if (!(mhd_api = httpd_load("telemetry")))
		return SFS_EIO;
	tm->d = httpd_start(
	    tm->fd,
	    &(struct httpd_bounds){.max_connections = TELEMETRY_MAX_CONNECTIONS,
	                           .idle_timeout_s = TELEMETRY_CONN_TIMEOUT_S,
	                           .request_memory = TELEMETRY_CONN_MEMORY},
	    on_request, tm);
	if (!tm->d) {
		log_error("telemetry: cannot start the listener on %s",
		          tm->cfg->telemetry->listen);
		return SFS_EIO;
	}
	tm->fd = -1; /* libmicrohttpd closes it */
	health_watch(true);
	log_event(LOG_LVL_INFO, &(struct log_fields){.event = "telemetry.listening"},
	          "telemetry: serving /metrics, /healthz and /readyz on %s",
	          tm->cfg->telemetry->listen);
	return 0;
}

void telemetry_set_mounted(struct telemetry *tm, bool mounted)
{
	if (tm)
		atomic_store(&tm->mounted, mounted);
}

void telemetry_free(struct telemetry *tm)
{
	if (!tm)
		return;
	if (tm->d)
		mhd.stop_daemon(tm->d);
	health_watch(false);
	if (tm->fd >= 0)
		close(tm->fd);
	if (tm->unlink_path)
		unlink(tm->cfg->telemetry->path);
	free(tm);
}
