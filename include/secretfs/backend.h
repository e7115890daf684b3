/*
 * Backends: where secrets come from. Each backend type is a table of
 * functions in its own file (backend_file.c, backend_dev.c, ...), found by
 * name in one registry (backend.c). The scheduler calls them from its own
 * thread; a backend never sees FUSE.
 *
 * Values travel as jansson values (a string, or an object of fields) built
 * with the wiping allocator (secjson.h); the caller json_decref()s them.
 */
#ifndef SECRETFS_BACKEND_H
#define SECRETFS_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "secretfs/diag.h"
#include "secretfs/error.h"

struct backend;
struct envstash;
struct stats;
struct stats_set;
struct store;

/* What a backend gets from the daemon when it is built. */
struct backend_env {
	const char *config_dir; /* directory of the config file, for relative paths */
	struct store *store;    /* seals tokens and credentials kept between requests */
	struct stats *stats;    /* registry for the backend's counters; may be NULL */
	struct envstash *envstash; /* the environment's secrets (envstash.h), one
	                              per daemon */
};

/* What the scheduler asks a backend for: one source. */
struct source_key {
	const char *path;    /* the config's "path" */
	const json_t *extra; /* backend-specific per-secret keys (object, may be empty) */
	/* The path is written as the backend's API names it, as consul-template
	 * templates write Vault paths (Vault: on a KV v2 mount, a path that
	 * already has "data/" after the mount is read as it is). */
	bool api_path;
};

/* Room for a version id and a lease id with their NUL, here and wherever
 * the scheduler keeps them: a backend refuses (with an error) a longer one
 * from its server or config, never cuts it. */
#define BACKEND_VERSION_MAX 128
#define BACKEND_LEASE_ID_MAX 256

/* A successful read. */
struct fetch_result {
	json_t *value; /* owned: string or object */
	/* owned, NULL when the backend has none: the whole reply the value
	 * came from, for consul-template files (Vault: {"data", "lease_id",
	 * "lease_duration", "renewable", ...}; KV v2: data.data and
	 * data.metadata) */
	json_t *reply;
	char version[BACKEND_VERSION_MAX]; /* backend's version id, "" when it has none */
	char lease_id[BACKEND_LEASE_ID_MAX]; /* "" when the value is not leased */
	uint64_t lease_ms;                   /* lease duration; 0 when not leased */
	bool renewable;
	uint64_t auth_generation; /* which login the lease was made under (see
	                             lease_deadline); 0 when not applicable */
	/* Each read issues a new value without a lease (a write such as a PKI
	 * certificate): the scheduler reads it again only before valid_ms runs
	 * out, or every refresh when the user set one, else never. */
	bool issued;
	uint64_t valid_ms; /* issued values: validity left when read; 0 unknown */
	/* Issued values whose secret asks for it (Vault: revoke_on_replace):
	 * the id revoke_issued takes to revoke this one once a newer one
	 * replaced it (Vault: "<mount>/cert/<serial>"; no secret); "" none. */
	char revoke_id[BACKEND_LEASE_ID_MAX];
};

struct backend_ops {
	const char *type;
	/* Per-secret keys this backend accepts besides the common ones. */
	const char *const *secret_keys;
	/* Refresh interval when a secret gives none. */
	uint64_t default_refresh_ms;
	/* fetch, probe, renew and revoke may run on several threads at once
	 * (network backends); otherwise they run on the scheduler thread only. */
	bool concurrent;

	/* Validates the backend's config object; adds one diag per problem.
	 * Returns 0 when valid. Must not touch the network or the filesystem
	 * beyond what validation needs. */
	int (*check)(const json_t *conf, const char *keypath, struct diag *d);
	/* Validates a secret's backend-specific keys (extra); optional. */
	int (*check_secret)(const json_t *extra, const char *keypath, struct diag *d);
	/* When each read of a checked secret issues a new value (a write), the
	 * name of that operation ("POST") for messages, else NULL; optional. */
	const char *(*issues_on_read)(const json_t *extra);

	/* Builds a backend from a checked config. Returns 0 or SFS_ code. */
	int (*create)(const struct backend_env *env, const char *name, const json_t *conf,
	              struct backend **out);
	void (*free)(struct backend *be);

	/* Full read. Returns 0 and fills out, or a negative SFS_ code
	 * (SFS_ETRANSIENT for retryable failures) with err filled. */
	int (*fetch)(struct backend *be, const struct source_key *key,
	             struct fetch_result *out, struct backend_error *err);

	/* Cheap version probe; optional. Writes the current version id. */
	int (*probe)(struct backend *be, const struct source_key *key, char *version,
	             size_t versionlen, struct backend_error *err);

	/* Lease renewal; optional. increment_ms is a hint. On success writes
	 * the lease's new remaining duration. */
	int (*renew)(struct backend *be, const char *lease_id, uint64_t increment_ms,
	             uint64_t *lease_ms, struct backend_error *err);

	/* Lease revocation; optional. */
	int (*revoke)(struct backend *be, const char *lease_id,
	              struct backend_error *err);
	/* Revocation of an issued value by its fetch_result.revoke_id;
	 * optional (needed by backends that set revoke_id). */
	int (*revoke_issued)(struct backend *be, const char *revoke_id,
	                     struct backend_error *err);

	/* Change notification; optional. watch_fd returns a descriptor to poll
	 * for reading, or -1. on_watch is called when it is readable and
	 * returns 1 when every source of this backend should be read again. */
	int (*watch_fd)(struct backend *be);
	int (*on_watch)(struct backend *be);

	/* The time (monotonic ms) after which leases made under the given
	 * auth generation die with the login that made them (a Vault token
	 * past its max TTL revokes its leases), or UINT64_MAX; optional. The
	 * scheduler replaces such leases before that. */
	uint64_t (*lease_deadline)(struct backend *be, uint64_t auth_generation);

	/* Housekeeping on the backend's own clock (e.g. renewing its auth
	 * token); optional. Called from the scheduler thread; returns the next
	 * time (monotonic ms) it wants to run, UINT64_MAX for never. */
	uint64_t (*maintain)(struct backend *be, uint64_t now);

	/* Brackets a round of fetches; optional. A backend may cache a parsed
	 * document between them and must wipe it in batch_end. */
	void (*batch_begin)(struct backend *be);
	void (*batch_end)(struct backend *be);
};

/* Every backend implementation embeds this as its first member. */
struct backend {
	const struct backend_ops *ops;
	char *name;               /* owned */
	uint64_t revoke_grace_ms; /* delay before a replaced lease is revoked */
	bool revoke_on_shutdown;  /* revoke current leases when secretfs stops */
	struct stats_set *calls;  /* backend_call_family (backend_call.c); NULL-safe,
	                             set by backend_calls_register */
};

/* Registry: the ops for a type name, or NULL. */
const struct backend_ops *backend_find(const char *type);

/* Builds the backend of type called name from its checked config (the
 * registry's create); a failure is logged. Returns 0 or an SFS_ code. */
int backend_start(const struct backend_env *env, const char *type, const char *name,
                  const json_t *conf, struct backend **out);

/* The i-th registered backend (from 0), or NULL past the last. */
const struct backend_ops *backend_nth(size_t i);

/* Comma-separated list of the registered type names (static). */
const char *backend_type_names(void);

/*
 * Calls into a backend (backend_call.c), timed and counted per backend as
 * secretfs_backend_requests_total{backend,operation,outcome} and
 * secretfs_backend_request_duration_seconds{backend}: the scheduler calls
 * these instead of be->ops->fetch/probe/renew/revoke. Same contracts as
 * the ops they wrap (probe, renew and revoke must exist).
 */
int backend_fetch(struct backend *be, const struct source_key *key,
                  struct fetch_result *out, struct backend_error *err);
int backend_probe(struct backend *be, const struct source_key *key, char *version,
                  size_t versionlen, struct backend_error *err);
int backend_renew(struct backend *be, const char *lease_id, uint64_t increment_ms,
                  uint64_t *lease_ms, struct backend_error *err);
int backend_revoke(struct backend *be, const char *lease_id, struct backend_error *err);
int backend_revoke_issued(struct backend *be, const char *revoke_id,
                          struct backend_error *err);

/* For the calling thread's next calls: with on, each request is tried
 * once, without the HTTP client's own retries (http_thread_single_try),
 * for a caller that spaces its retries itself. */
void backend_single_try(bool on);

/* Registers be's call metrics in st (labelled with be->name). NULL-safe. */
void backend_calls_register(struct backend *be, struct stats *st);

/* Why a call failed, as a metric label: the index in
 * backend_failure_reasons of rc's class (rc < 0). The list, NULL-terminated:
 * "unavailable", "denied", "not_found", "expired", "invalid",
 * "backend_error", "cancelled", "other". */
extern const char *const backend_failure_reasons[];
size_t backend_failure_reason(int rc);

/* Helpers for implementations (backend_error_set is in error.h). */
void fetch_result_release(struct fetch_result *r);

/*
 * Typed backend config (backend_conf.c): a backend describes its config
 * object once, as a table of keys, each with its kind and the field of the
 * backend's own struct it fills. One parse function validates the object
 * against the table and fills the struct; check() calls it with a diag,
 * create() with none, so the keys are named once and the "takes:" list of
 * messages is derived from the table.
 */
enum backend_conf_kind {
	BACKEND_CONF_CHECKED, /* accepted, not stored: the caller checks it ("type") */
	BACKEND_CONF_STRING,  /* a non-empty string: const char * */
	BACKEND_CONF_TEXT, /* a string of at most .max bytes, may be empty: const char *
	                    */
	BACKEND_CONF_DURATION, /* a duration (duration_parse) of at least .min ms:
	                          uint64_t */
	BACKEND_CONF_BOOL,     /* true or false: bool */
	BACKEND_CONF_OBJECT,   /* an object the backend checks itself: const json_t * */
};

struct backend_conf_key {
	const char *name;
	enum backend_conf_kind kind;
	size_t offset; /* of the field in the typed struct */
	bool required;
	uint64_t min; /* BACKEND_CONF_DURATION: least ms */
	size_t max;   /* BACKEND_CONF_TEXT: most bytes */
};

struct backend_conf_spec {
	/* Says what takes the keys, for "unknown key "x" (file backends take:
	 * type, path)". */
	const char *takes;
	const struct backend_conf_key *keys;
	size_t nkeys;
};

#define BACKEND_CONF_SPEC(takes_, keys_)                                                 \
	{                                                                                \
		takes_, keys_, sizeof keys_ / sizeof keys_[0]                            \
	}

/* The offset of field f of struct type st, which must have type ctype
 * (a compile-time check that a key's kind matches its field). */
#define BACKEND_CONF_FIELD(st, f, ctype)                                                 \
	(offsetof(st, f) + 0 * sizeof(_Generic(((st *)0)->f, ctype : 1)))

/* Table entries; optional members (.required, .min, .max) follow the key. */
#define BACKEND_CONF_TYPE_KEY                                                            \
	{                                                                                \
		.name = "type", .kind = BACKEND_CONF_CHECKED                             \
	}
#define BACKEND_CONF_STRING_KEY(st, f, key, ...)                                         \
	{                                                                                \
		.name = key, .kind = BACKEND_CONF_STRING,                                \
		.offset = BACKEND_CONF_FIELD(st, f, const char *), __VA_ARGS__           \
	}
#define BACKEND_CONF_TEXT_KEY(st, f, key, ...)                                           \
	{                                                                                \
		.name = key, .kind = BACKEND_CONF_TEXT,                                  \
		.offset = BACKEND_CONF_FIELD(st, f, const char *), __VA_ARGS__           \
	}
#define BACKEND_CONF_DURATION_KEY(st, f, key, ...)                                       \
	{                                                                                \
		.name = key, .kind = BACKEND_CONF_DURATION,                              \
		.offset = BACKEND_CONF_FIELD(st, f, uint64_t), __VA_ARGS__               \
	}
#define BACKEND_CONF_BOOL_KEY(st, f, key, ...)                                           \
	{                                                                                \
		.name = key, .kind = BACKEND_CONF_BOOL,                                  \
		.offset = BACKEND_CONF_FIELD(st, f, bool), __VA_ARGS__                   \
	}
#define BACKEND_CONF_OBJECT_KEY(st, f, key, ...)                                         \
	{                                                                                \
		.name = key, .kind = BACKEND_CONF_OBJECT,                                \
		.offset = BACKEND_CONF_FIELD(st, f, const json_t *), __VA_ARGS__         \
	}

/*
 * Validates obj against spec and fills out, the struct the table describes:
 * each key present is checked against its kind and stored in its field
 * (strings and objects borrowed from obj); fields of absent keys keep what
 * they held, so set the defaults first. Adds one diag per problem, at
 * keypath.key, in the order of obj's keys, then one per missing required
 * key at keypath; d may be NULL (create() re-parsing a checked config).
 * Returns 0, or SFS_EINVAL when any problem was found.
 */
int backend_conf_parse(const struct backend_conf_spec *spec, const json_t *obj,
                       const char *keypath, struct diag *d, void *out);

/* Config checks (backend_util.c), for objects not described by a table
 * (auth methods, per-secret keys): key, when present, is a non-empty
 * string; required: it must be present. Adds one diag per problem and
 * returns 0 or SFS_EINVAL. */
int backend_check_string(const json_t *obj, const char *key, bool required,
                         const char *keypath, struct diag *d);

/* A backend's "tls" object, parsed (strings borrowed from it; NULL when
 * absent). */
struct backend_tls {
	const char *ca_file;
	const char *ca_dir;
	const char *client_cert;
	const char *client_key;
	const char *server_name;
};

/*
 * Validates a "tls" object (at keypath): ca_file, ca_dir, client_cert +
 * client_key, server_name, each a non-empty string; fills out (zeroed
 * first). d may be NULL. Returns 0 or SFS_EINVAL.
 */
int backend_tls_parse(const json_t *tls, const char *keypath, struct diag *d,
                      struct backend_tls *out);

/* s when non-NULL, else the environment variable env when non-empty (env
 * may be NULL), else NULL. */
const char *backend_conf_or_env(const char *s, const char *env);

/*
 * The proxy of a backend whose requests go to url, the way the Vault CLI
 * and the AWS SDKs take it from the environment: a config "proxy" (proxy,
 * may be NULL) wins; "proxy_from_environment": false (from_environment)
 * means none; else the first non-empty of
 * the override variables (NULL-terminated list, may be NULL: e.g.
 * VAULT_HTTP_PROXY, which applies to every request), else HTTPS_PROXY /
 * https_proxy for an https:// url and HTTP_PROXY / http_proxy for http://,
 * skipping the hosts NO_PROXY / no_proxy lists and loopback addresses (as
 * Go's ProxyFromEnvironment does). Proxy URLs may hold credentials: never
 * log them but through backend_proxy_redacted.
 */
struct backend_proxy {
	/* owned; NULL: no proxy */
	char *url;
	/* owned; set whenever url is: the hosts that bypass it (CURLOPT_NOPROXY
	 * syntax), "" for none */
	char *noproxy;
	/* where url came from ("config", a variable name), for logs */
	const char *from;
};
/* Fills p (zeroed first). Returns 0 or SFS_ENOMEM. */
int backend_proxy_init(struct backend_proxy *p, const char *proxy, bool from_environment,
                       const char *url, const char *const *override_env);
/* Frees p's strings (wiping them: they may hold credentials). NULL-safe. */
void backend_proxy_release(struct backend_proxy *p);
/* Logs (info) which proxy a backend uses, credentials redacted; nothing
 * when none. */
void backend_proxy_log(const struct backend_proxy *p, const char *backend);
/* url with any user:password@ replaced by "***@", into buf. Returns buf. */
const char *backend_proxy_redacted(const char *url, char *buf, size_t len);

/* Reads a whole small file holding a token, a JWT or an ID into guarded
 * memory, trailing whitespace removed. Returns 0, SFS_ENOTFOUND, SFS_EIO,
 * SFS_ETOOBIG, or SFS_EINVAL when empty. Free with secmem_free(*out). */
int backend_read_secret_file(const char *path, char **out);

#endif
