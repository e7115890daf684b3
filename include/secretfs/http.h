/*
 * The HTTP client shared by the Vault and AWS backends: libcurl with TLS
 * verification always on, optional CA file/dir, client certificate (mTLS)
 * and TLS server-name override, connect and total timeouts, connection
 * reuse with a bounded connection lifetime, a response size cap, a proxy
 * only when the backend gives one (it never reads the environment itself:
 * see backend_proxy_init), and a few quick retries with capped exponential
 * backoff and full jitter that honour Retry-After.
 *
 * Response bodies live in guarded memory and request bodies and secret
 * headers are wiped after use. One client per thread (a libcurl easy
 * handle is not shared between threads).
 */
#ifndef SECRETFS_HTTP_H
#define SECRETFS_HTTP_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "secretfs/error.h"
#include "secretfs/secmem.h"

struct http_client;

struct http_options {
	const char *ca_file;     /* PEM bundle; NULL: the system's */
	const char *ca_dir;      /* hashed CA directory; NULL: none */
	const char *client_cert; /* PEM; with client_key for mTLS */
	const char *client_key;
	const char *server_name; /* TLS name to verify (and SNI), when the URL's
	                            host is an address or another name */
	const char *proxy;       /* NULL: never a proxy, whatever the environment */
	const char *noproxy;     /* hosts that bypass proxy (CURLOPT_NOPROXY), or NULL */
	uint64_t connect_timeout_ms;   /* 0: 5 s */
	uint64_t timeout_ms;           /* whole request, retries and pauses included;
	                                  0: 30 s */
	uint64_t max_conn_lifetime_ms; /* 0: 5 min */
	size_t max_response;           /* 0: 4 MiB */
	unsigned max_retries;          /* extra attempts on transport errors, 429, 5xx */
	uint64_t retry_base_ms;        /* 0: 250 ms */
	uint64_t retry_cap_ms; /* 0: 2 s; a longer Retry-After is returned instead */
};

struct http_header {
	const char *name;
	const char *value;
	bool secret; /* wiped from memory after the request */
};

struct http_request {
	const char *method; /* "GET", "POST", "PUT", "DELETE", "LIST" */
	const char *url;
	const struct http_header *headers;
	size_t nheaders;
	const void *body; /* may be NULL */
	size_t body_len;
	bool idempotent; /* may be retried after a transport error */
};

struct http_response {
	long status;             /* 0 when no response arrived */
	struct secbuf body;      /* guarded memory */
	uint64_t retry_after_ms; /* from Retry-After on 429/503, else 0 */
};

/* Creates a client. Files named in opt are checked for readability now.
 * Returns 0, SFS_EINVAL (err says which file) or SFS_ENOMEM. */
int http_client_new(const struct http_options *opt, struct http_client **out,
                    struct backend_error *err);

/* Frees the client and its connections. NULL-safe. */
void http_client_free(struct http_client *c);

/*
 * Performs a request, retrying per the options. resp must be zeroed (or
 * released) before the first call. On return *resp holds the
 * last response (release it with http_response_release even on failure).
 * Returns 0 when a response arrived (any status), SFS_ETRANSIENT for
 * transport failures (connect, TLS, timeout; err says which, without
 * secrets), SFS_ETOOBIG when the body passed the cap, SFS_ECANCELED when
 * the stop (http_stop) cut it or came before it. The whole call, retries
 * included, ends within the client's timeout_ms: a body that trickles
 * counts like a silent one.
 */
int http_do(struct http_client *c, const struct http_request *req,
            struct http_response *resp, struct backend_error *err);

/*
 * For the calling thread: with on, http_do makes a single attempt, no
 * retries. Set around the step of a source that is already backing off:
 * its retries are spaced by the scheduler, and in-call retries would bunch
 * the whole fleet's attempts in flight at a backend's recovery into its
 * first second (bench/fleet).
 */
void http_thread_single_try(bool on);

/* Wipes and frees the body. */
void http_response_release(struct http_response *resp);

/*
 * A pool of clients for a backend used from several threads: acquire takes
 * an idle client, makes one while fewer than max exist, else waits for
 * one, which bounds the concurrent requests to that backend.
 */
#define HTTP_POOL_MAX 16

struct http_pool {
	pthread_mutex_t lock;
	pthread_cond_t freed;
	struct http_options opt; /* strings borrowed: must outlive the pool */
	struct http_client *idle[HTTP_POOL_MAX];
	size_t nidle, nclients, max;
};

/* Initialises the pool and makes one client now, so bad TLS files are
 * reported at start-up. Returns 0, SFS_EINVAL (err says why), SFS_ENOMEM. */
int http_pool_init(struct http_pool *p, const struct http_options *opt, size_t max,
                   struct backend_error *err);

/* A client for one request; NULL with err set when none can be made. */
struct http_client *http_pool_acquire(struct http_pool *p, struct backend_error *err);

/* Gives a client back. */
void http_pool_release(struct http_pool *p, struct http_client *c);

/* Frees the clients. Safe on a zeroed pool that was never initialised. */
void http_pool_destroy(struct http_pool *p);

/* Percent-encodes s for a URL path segment (keeps '/' when keep_slash).
 * Returns a malloc'd string or NULL. */
char *http_escape_path(const char *s, bool keep_slash);

/* The same into out, which has room for strlen(s) * 3 + 1 bytes (e.g.
 * guarded memory for a secret); returns the length written. */
size_t http_escape_to(char *out, const char *s, bool keep_slash);

/*
 * The stop. http_stop() (async-signal-safe: call it from the SIGTERM
 * handler) cuts every transfer in flight within about a second, ends
 * every retry pause, and makes every later http_do return SFS_ECANCELED.
 * http_allow_until(deadline) then opens a window for the shutdown's own
 * requests (lease revocations): they run, each ending by deadline
 * (monotonic ms), and none starts after it. http_stopping() tells whether
 * http_stop() was called.
 */
void http_stop(void);
void http_allow_until(uint64_t deadline_ms);
bool http_stopping(void);

/* Global libcurl set-up; call once before threads start. */
int http_global_init(void);

#endif
