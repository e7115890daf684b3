/*
 * The HTTP client (see http.h), over libcurl. libcurl's own allocations go
 * through a wiping allocator (installed by http_global_init), so request
 * headers carrying tokens and the buffers that held response bodies are
 * zeroed when libcurl frees them.
 */
#include <curl/curl.h>
#include <dlfcn.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "secretfs/error.h"
#include "secretfs/http.h"
#include "secretfs/log.h"
#include "secretfs/timing.h"
#include "secretfs/wipealloc.h"

struct http_client {
	CURL *curl;
	struct http_options opt;
};

/*
 * The stop (http.h): RUNNING, then STOPPED the moment SIGTERM/SIGINT
 * arrives (every transfer is cut by its progress callback, every retry
 * pause ends, no new request starts), then possibly a WINDOW for the
 * shutdown's revocations, each bounded by its end. Lock-free: set from a
 * signal handler.
 */
enum { HTTP_RUNNING, HTTP_STOPPED, HTTP_WINDOW };
static _Atomic int stop_phase = HTTP_RUNNING;
static _Atomic uint64_t window_end; /* monotonic ms */

void http_stop(void)
{
	atomic_store(&stop_phase, HTTP_STOPPED);
}

void http_allow_until(uint64_t deadline_ms)
{
	atomic_store(&window_end, deadline_ms);
	atomic_store(&stop_phase, HTTP_WINDOW);
}

bool http_stopping(void)
{
	return atomic_load(&stop_phase) != HTTP_RUNNING;
}

/* Whether a request may go on now, and until when at the latest (the end
 * of the shutdown window; UINT64_MAX while running). */
static bool may_run(uint64_t *until)
{
	switch (atomic_load(&stop_phase)) {
	case HTTP_RUNNING:
		*until = UINT64_MAX;
		return true;
	case HTTP_WINDOW:
		*until = atomic_load(&window_end);
		return timing_now_ms() < *until;
	default:
		return false;
	}
}

/*
 * libcurl and OpenSSL are loaded only when a network backend needs them:
 * with their dozens of dependencies they would double the memory of a
 * daemon that serves only development backends. Debian bookworm's sonames.
 */
static struct {
	int (*crypto_set_mem_functions)(CRYPTO_malloc_fn, CRYPTO_realloc_fn,
	                                CRYPTO_free_fn);
	long (*ssl_ctx_ctrl)(SSL_CTX *, int, long, void *);
	CURLcode (*global_init_mem)(long, curl_malloc_callback, curl_free_callback,
	                            curl_realloc_callback, curl_strdup_callback,
	                            curl_calloc_callback);
	CURL *(*easy_init)(void);
	void (*easy_cleanup)(CURL *);
	void (*easy_reset)(CURL *);
	CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
	CURLcode (*easy_perform)(CURL *);
	CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
	const char *(*easy_strerror)(CURLcode);
	struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
	void (*slist_free_all)(struct curl_slist *);
	time_t (*getdate)(const char *, const time_t *);
	CURLU *(*url)(void);
	CURLUcode (*url_set)(CURLU *, CURLUPart, const char *, unsigned int);
	CURLUcode (*url_get)(const CURLU *, CURLUPart, char **, unsigned int);
	void (*url_cleanup)(CURLU *);
	void (*free)(void *);
} api;

#define LOAD(lib, field, name)                                                           \
	do {                                                                             \
		*(void **)&api.field = dlsym(lib, name);                                 \
		if (!api.field)                                                          \
			return SFS_EIO;                                                  \
	} while (0)

static int load_libraries(void)
{
	/* OpenSSL first: its allocator must be set before libcurl uses it. */
	void *crypto = dlopen("libcrypto.so.3", RTLD_NOW | RTLD_LOCAL);
	void *ssl = dlopen("libssl.so.3", RTLD_NOW | RTLD_LOCAL);
	void *curl;

	if (!crypto || !ssl)
		return SFS_EIO;
	LOAD(crypto, crypto_set_mem_functions, "CRYPTO_set_mem_functions");
	LOAD(ssl, ssl_ctx_ctrl, "SSL_CTX_ctrl");
	curl = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
	if (!curl)
		return SFS_EIO;
	LOAD(curl, global_init_mem, "curl_global_init_mem");
	LOAD(curl, easy_init, "curl_easy_init");
	LOAD(curl, easy_cleanup, "curl_easy_cleanup");
	LOAD(curl, easy_reset, "curl_easy_reset");
	LOAD(curl, easy_setopt, "curl_easy_setopt");
	LOAD(curl, easy_perform, "curl_easy_perform");
	LOAD(curl, easy_getinfo, "curl_easy_getinfo");
	LOAD(curl, easy_strerror, "curl_easy_strerror");
	LOAD(curl, slist_append, "curl_slist_append");
	LOAD(curl, slist_free_all, "curl_slist_free_all");
	LOAD(curl, getdate, "curl_getdate");
	LOAD(curl, url, "curl_url");
	LOAD(curl, url_set, "curl_url_set");
	LOAD(curl, url_get, "curl_url_get");
	LOAD(curl, url_cleanup, "curl_url_cleanup");
	LOAD(curl, free, "curl_free");
	return 0;
}

/* OpenSSL's allocations go through the wiping allocator too: its TLS
 * record buffers hold decrypted replies (secrets, tokens). */
static void *ossl_malloc(size_t n, const char *file, int line)
{
	return wipe_malloc(n);
}

static void *ossl_realloc(void *p, size_t n, const char *file, int line)
{
	if (n == 0) {
		wipe_free(p);
		return NULL;
	}
	return wipe_realloc(p, n);
}

static void ossl_free(void *p, const char *file, int line)
{
	wipe_free(p);
}

int http_global_init(void)
{
	static int done;

	if (done)
		return 0;
	/* Must come before anything makes OpenSSL allocate (libcurl's init). */
	if (load_libraries() < 0) {
		log_error(
		    "cannot load libcurl (libcurl.so.4) or OpenSSL (libssl.so.3): %s",
		    dlerror());
		return SFS_EIO;
	}
	if (!api.crypto_set_mem_functions(ossl_malloc, ossl_realloc, ossl_free))
		log_warn(
		    "OpenSSL allocated memory before secretfs could install its wiping "
		    "allocator; TLS buffers will not be wiped");
	if (api.global_init_mem(CURL_GLOBAL_DEFAULT, wipe_malloc, wipe_free, wipe_realloc,
	                        wipe_strdup, wipe_calloc) != CURLE_OK)
		return SFS_EIO;
	done = 1;
	return 0;
}

/* Idle connections give their TLS buffers back (wiped) instead of keeping
 * the last decrypted reply in them. */
static CURLcode on_ssl_ctx(CURL *curl, void *ssl_ctx, void *arg)
{
	api.ssl_ctx_ctrl((SSL_CTX *)ssl_ctx, SSL_CTRL_MODE, SSL_MODE_RELEASE_BUFFERS,
	                 NULL);
	return CURLE_OK;
}

/* ---- client ------------------------------------------------------------- */

static int check_readable(const char *what, const char *path, struct backend_error *err)
{
	if (path && access(path, R_OK) != 0) {
		backend_error_set(err, "%s %s: %s", what, path, strerror(errno));
		return SFS_EINVAL;
	}
	return 0;
}

int http_client_new(const struct http_options *opt, struct http_client **out,
                    struct backend_error *err)
{
	struct http_client *c;

	if (check_readable("CA file", opt->ca_file, err) < 0 ||
	    check_readable("CA directory", opt->ca_dir, err) < 0 ||
	    check_readable("client certificate", opt->client_cert, err) < 0 ||
	    check_readable("client key", opt->client_key, err) < 0)
		return SFS_EINVAL;
	if (http_global_init() < 0) {
		backend_error_set(err, "cannot initialise libcurl");
		return SFS_EIO;
	}
	c = calloc(1, sizeof *c);
	if (!c || !(c->curl = api.easy_init())) {
		free(c);
		backend_error_set(err, "out of memory");
		return SFS_ENOMEM;
	}
	c->opt = *opt;
	if (!c->opt.connect_timeout_ms)
		c->opt.connect_timeout_ms = 5000;
	if (!c->opt.timeout_ms)
		c->opt.timeout_ms = 30000;
	if (!c->opt.max_conn_lifetime_ms)
		c->opt.max_conn_lifetime_ms = 5 * 60 * 1000;
	if (!c->opt.max_response)
		c->opt.max_response = 4 * 1024 * 1024;
	if (!c->opt.retry_base_ms)
		c->opt.retry_base_ms = 250;
	if (!c->opt.retry_cap_ms)
		c->opt.retry_cap_ms = 2000;
	*out = c;
	return 0;
}

int http_pool_init(struct http_pool *p, const struct http_options *opt, size_t max,
                   struct backend_error *err)
{
	int rc;

	memset(p, 0, sizeof *p);
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->freed, NULL);
	p->opt = *opt;
	p->max = max < 1 ? 1 : max > HTTP_POOL_MAX ? HTTP_POOL_MAX : max;
	rc = http_client_new(opt, &p->idle[0], err);
	if (rc == 0)
		p->nidle = p->nclients = 1;
	return rc;
}

struct http_client *http_pool_acquire(struct http_pool *p, struct backend_error *err)
{
	struct http_client *c = NULL;

	pthread_mutex_lock(&p->lock);
	while (!p->nidle && p->nclients >= p->max)
		pthread_cond_wait(&p->freed, &p->lock);
	if (p->nidle)
		c = p->idle[--p->nidle];
	else if (http_client_new(&p->opt, &c, err) == 0)
		p->nclients++;
	else
		c = NULL;
	pthread_mutex_unlock(&p->lock);
	return c;
}

void http_pool_release(struct http_pool *p, struct http_client *c)
{
	pthread_mutex_lock(&p->lock);
	p->idle[p->nidle++] = c;
	pthread_cond_signal(&p->freed);
	pthread_mutex_unlock(&p->lock);
}

void http_pool_destroy(struct http_pool *p)
{
	if (!p->max)
		return;
	for (size_t i = 0; i < p->nidle; i++)
		http_client_free(p->idle[i]);
	p->nidle = p->nclients = 0;
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->freed);
	p->max = 0;
}

void http_client_free(struct http_client *c)
{
	if (!c)
		return;
	api.easy_cleanup(c->curl);
	free(c);
}

struct transfer {
	struct http_response *resp;
	size_t max;
	bool too_big;
};

/* libcurl's progress callback: called often while data moves and about
 * once a second while nothing does (connecting, a TLS handshake, a silent
 * server), so a stop cuts any transfer within a second. */
static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow,
                       curl_off_t ultotal, curl_off_t ulnow)
{
	uint64_t until;

	return may_run(&until) ? 0 : 1;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct transfer *t = arg;
	size_t n = size * nmemb;

	if (t->resp->body.len + n > t->max ||
	    secbuf_append(&t->resp->body, data, n) < 0) {
		t->too_big = true;
		return 0;
	}
	return n;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *arg)
{
	struct transfer *t = arg;
	size_t n = size * nmemb;
	char line[128];

	if (n > 12 && n < sizeof line && strncasecmp(data, "Retry-After:", 12) == 0) {
		char *end;
		unsigned long secs;
		memcpy(line, data + 12, n - 12);
		line[n - 12] = '\0';
		secs = strtoul(line, &end, 10);
		if (end != line && secs < 24 * 3600) {
			t->resp->retry_after_ms = secs * 1000;
		} else {
			time_t when = api.getdate(line, NULL);
			time_t now = time(NULL);
			if (when > now && when - now < 24 * 3600)
				t->resp->retry_after_ms = (uint64_t)(when - now) * 1000;
		}
	}
	return n;
}

/* Frees a header list after zeroing every line: they may carry tokens. */
static void headers_free(struct curl_slist *h)
{
	for (struct curl_slist *p = h; p; p = p->next)
		sodium_memzero(p->data, strlen(p->data));
	api.slist_free_all(h);
}

/*
 * Verifies the TLS certificate against server_name (and sends it as SNI)
 * while connecting to the URL's own host: the URL is rewritten to the name
 * and CONNECT_TO maps the name back to the real host and port.
 */
static int override_server_name(struct http_client *c, const char *url, CURL *h,
                                struct curl_slist **connect_to)
{
	CURLU *u = api.url();
	char *host = NULL, *port = NULL, *rewritten = NULL, *map = NULL;
	int rc = SFS_EINVAL;

	if (!u || api.url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    api.url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
	    api.url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK ||
	    api.url_set(u, CURLUPART_HOST, c->opt.server_name, 0) != CURLUE_OK ||
	    api.url_get(u, CURLUPART_URL, &rewritten, 0) != CURLUE_OK)
		goto out;
	if (asprintf(&map, "%s:%s:%s:%s", c->opt.server_name, port, host, port) < 0) {
		map = NULL;
		rc = SFS_ENOMEM;
		goto out;
	}
	*connect_to = api.slist_append(NULL, map);
	if (!*connect_to) {
		rc = SFS_ENOMEM;
		goto out;
	}
	api.easy_setopt(h, CURLOPT_URL, rewritten);
	api.easy_setopt(h, CURLOPT_CONNECT_TO, *connect_to);
	rc = 0;
out:
	api.free(host);
	api.free(port);
	api.free(rewritten);
	free(map);
	api.url_cleanup(u);
	return rc;
}

static int attempt(struct http_client *c, const struct http_request *req,
                   uint64_t deadline, struct http_response *resp,
                   struct backend_error *err)
{
	uint64_t now = timing_now_ms(), left = deadline > now ? deadline - now : 1;
	struct transfer t = {.resp = resp, .max = c->opt.max_response};
	struct curl_slist *headers = NULL, *grown, *connect_to = NULL;
	CURL *h = c->curl;
	CURLcode cc;
	int rc = 0;

	http_response_release(resp);
	secbuf_init(&resp->body, c->opt.max_response);
	resp->status = 0;
	resp->retry_after_ms = 0;

	api.easy_reset(h);
	if (c->opt.server_name) {
		rc = override_server_name(c, req->url, h, &connect_to);
		if (rc < 0) {
			backend_error_set(err, "invalid URL");
			goto out;
		}
	} else {
		api.easy_setopt(h, CURLOPT_URL, req->url);
	}
	api.easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	api.easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	api.easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	api.easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	api.easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	api.easy_setopt(h, CURLOPT_SSL_CTX_FUNCTION, on_ssl_ctx);
	if (c->opt.ca_file)
		api.easy_setopt(h, CURLOPT_CAINFO, c->opt.ca_file);
	if (c->opt.ca_dir)
		api.easy_setopt(h, CURLOPT_CAPATH, c->opt.ca_dir);
	if (c->opt.client_cert)
		api.easy_setopt(h, CURLOPT_SSLCERT, c->opt.client_cert);
	if (c->opt.client_key)
		api.easy_setopt(h, CURLOPT_SSLKEY, c->opt.client_key);
	/* An empty proxy disables the *_proxy environment variables. */
	api.easy_setopt(h, CURLOPT_PROXY, c->opt.proxy ? c->opt.proxy : "");
	if (c->opt.proxy && c->opt.noproxy)
		api.easy_setopt(h, CURLOPT_NOPROXY, c->opt.noproxy);
	api.easy_setopt(
	    h, CURLOPT_CONNECTTIMEOUT_MS,
	    (long)(c->opt.connect_timeout_ms < left ? c->opt.connect_timeout_ms : left));
	/* What is left of the whole request's time: a body that trickles
	 * counts against it like a silent one. */
	api.easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)left);
	api.easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	api.easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
	api.easy_setopt(h, CURLOPT_MAXLIFETIME_CONN,
	                (long)(c->opt.max_conn_lifetime_ms / 1000));
	api.easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->opt.max_response);
	api.easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	api.easy_setopt(h, CURLOPT_WRITEDATA, &t);
	api.easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	api.easy_setopt(h, CURLOPT_HEADERDATA, &t);
	api.easy_setopt(h, CURLOPT_USERAGENT, "secretfs/" SECRETFS_VERSION);

	for (size_t i = 0; i < req->nheaders; i++) {
		size_t n =
		    strlen(req->headers[i].name) + strlen(req->headers[i].value) + 3;
		char *line = secmem_alloc(n);
		if (!line) {
			rc = SFS_ENOMEM;
			goto out;
		}
		snprintf(line, n, "%s: %s", req->headers[i].name, req->headers[i].value);
		grown = api.slist_append(headers, line);
		secmem_free(line);
		if (!grown) {
			rc = SFS_ENOMEM;
			goto out;
		}
		headers = grown;
	}
	if ((grown = api.slist_append(headers, "Expect:")))
		headers = grown;
	api.easy_setopt(h, CURLOPT_HTTPHEADER, headers);

	if (strcmp(req->method, "GET") == 0 && !req->body) {
		api.easy_setopt(h, CURLOPT_HTTPGET, 1L);
	} else {
		api.easy_setopt(h, CURLOPT_POSTFIELDS, req->body ? req->body : "");
		api.easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
		                (curl_off_t)req->body_len);
		api.easy_setopt(h, CURLOPT_CUSTOMREQUEST, req->method);
	}

	cc = api.easy_perform(h);
	api.easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status);
	if (t.too_big || cc == CURLE_FILESIZE_EXCEEDED) {
		backend_error_set(err, "response larger than %zu bytes",
		                  c->opt.max_response);
		rc = SFS_ETOOBIG;
	} else if (cc == CURLE_ABORTED_BY_CALLBACK) {
		backend_error_set(err, "cancelled: secretfs is stopping");
		rc = SFS_ECANCELED;
	} else if (cc == CURLE_OPERATION_TIMEDOUT && timing_now_ms() >= deadline) {
		backend_error_set(err, "%s (no complete answer within %llu ms)",
		                  api.easy_strerror(cc),
		                  (unsigned long long)c->opt.timeout_ms);
		rc = SFS_ETRANSIENT;
	} else if (cc != CURLE_OK) {
		backend_error_set(err, "%s", api.easy_strerror(cc));
		rc = SFS_ETRANSIENT;
	}
out:
	/* Drop our references to secret-bearing options before returning. */
	api.easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
	api.easy_setopt(h, CURLOPT_POSTFIELDS, NULL);
	headers_free(headers);
	api.slist_free_all(connect_to);
	return rc;
}

static bool retryable_status(long status)
{
	return status == 429 || status == 500 || status == 502 || status == 503 ||
	       status == 504;
}

/* Sleeps ms, or less when the stop comes or deadline passes. Returns
 * false when the request must not go on. */
static bool pause_for(uint64_t ms, uint64_t deadline)
{
	uint64_t end = timing_now_ms() + ms, until, now;

	while ((now = timing_now_ms()) < end) {
		uint64_t slice = end - now < 50 ? end - now : 50;
		struct timespec ts = {0, (long)slice * 1000000};

		if (!may_run(&until) || now >= deadline)
			return false;
		nanosleep(&ts, NULL);
	}
	return may_run(&until) && timing_now_ms() < deadline;
}

static __thread bool single_try;

void http_thread_single_try(bool on)
{
	single_try = on;
}

int http_do(struct http_client *c, const struct http_request *req,
            struct http_response *resp, struct backend_error *err)
{
	uint64_t deadline = timing_now_ms() + c->opt.timeout_ms, until;
	int rc = 0;

	err->msg[0] = '\0';
	if (!may_run(&until)) {
		http_response_release(resp);
		backend_error_set(err, "cancelled: secretfs is stopping");
		return SFS_ECANCELED;
	}
	if (until < deadline)
		deadline = until;
	for (unsigned i = 0;; i++) {
		uint64_t delay;

		rc = attempt(c, req, deadline, resp, err);
		if (single_try || i >= c->opt.max_retries || rc == SFS_ETOOBIG ||
		    rc == SFS_ENOMEM || rc == SFS_ECANCELED)
			break;
		if (rc == SFS_ETRANSIENT && !req->idempotent)
			break;
		if (rc == 0 && !retryable_status(resp->status))
			break;
		/* A write answered 5xx may have happened: only 429 and 503 say
		 * it did not. */
		if (rc == 0 && !req->idempotent && resp->status != 429 &&
		    resp->status != 503)
			break;
		delay = timing_backoff(i, c->opt.retry_base_ms, c->opt.retry_cap_ms,
		                       resp->retry_after_ms, timing_random());
		/* A server asking for a long pause gets it from the scheduler,
		 * not from a blocked thread; and no retry outlives the request's
		 * time. */
		if (delay > c->opt.retry_cap_ms || timing_now_ms() + delay >= deadline)
			break;
		if (!pause_for(delay, deadline))
			break;
	}
	return rc;
}

void http_response_release(struct http_response *resp)
{
	secbuf_release(&resp->body);
}

size_t http_escape_to(char *out, const char *s, bool keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";
	char *p = out;

	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
		    (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.' ||
		    ch == '~' || (keep_slash && ch == '/')) {
			*p++ = (char)ch;
		} else {
			*p++ = '%';
			*p++ = hex[ch >> 4];
			*p++ = hex[ch & 15];
		}
	}
	*p = '\0';
	return (size_t)(p - out);
}

char *http_escape_path(const char *s, bool keep_slash)
{
	char *out = malloc(strlen(s) * 3 + 1);

	if (out)
		http_escape_to(out, s, keep_slash);
	return out;
}
