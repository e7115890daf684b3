/*
 * The AWS Secrets Manager Agent's local HTTP API (issue 14 part 1):
 * GET /secretsmanager/get?secretId=ID[&versionId=V|&versionStage=S],
 * GET <path_prefix>ID (default /v1/) and GET /ping, answered like the
 * agent (same status codes, bodies and SSRF token rules) from an AWS
 * backend of the config, so an application written for the agent runs
 * unchanged. Served: the secret ids that AWS sources of the config name
 * (an allow-list), plus any id when "on_demand" is true. Answers are kept
 * sealed (aws_api_cache.h) and refreshed in the background once older
 * than "ttl" with a DescribeSecret probe, read again only when it moved.
 */
#ifndef SECRETFS_AWS_API_H
#define SECRETFS_AWS_API_H

#include <stdbool.h>
#include <jansson.h>

#include "secretfs/config.h"
#include "secretfs/diag.h"

struct backend;
struct envstash;
struct store;
struct stats;
struct aws_api;

/* The checked "aws_api" block. */
struct aws_api_config {
	struct config_telemetry addr; /* "listen" (default 127.0.0.1:2773) */
	bool allow_non_loopback;      /* "allow_non_loopback": listen beyond loopback */
	bool on_demand;           /* "on_demand": any secret id, not just the config's */
	unsigned max_connections; /* "max_connections", default 800 */
	char *backend;       /* "backend": the aws backend to call; NULL: the only one */
	char *path_prefix;   /* "path_prefix", default "/v1/" */
	char **ssrf_headers; /* "ssrf_headers", NULL-terminated */
	char **ssrf_env_variables; /* "ssrf_env_variables", NULL-terminated */
	uint64_t ttl_ms;           /* "ttl" (the agent's ttlSeconds), default 300 s;
	                              0: no cache */
	unsigned cache_size;       /* "cache_size" (cacheSize), default 1000 */
};

/* Checks the "aws_api" object at kp against cfg's backends (which must be
 * parsed) and builds *out. Returns 0, SFS_EINVAL (one diag per problem)
 * or SFS_ENOMEM. */
int aws_api_config_parse(const json_t *obj, const char *kp, const struct config *cfg,
                         struct diag *d, struct aws_api_config **out);

/* NULL-safe. */
void aws_api_config_free(struct aws_api_config *c);

/*
 * Binds the listener of cfg->aws_api and starts serving it with the
 * config's AWS backend among backends (borrowed, like cfg, es, st and stats:
 * they must outlive aws_api_free). The SSRF token is taken into es from
 * the first set variable of ssrf_env_variables (a file:// value names a
 * file, read at each request). Returns 0, or SFS_EIO (logged: address
 * busy, no token, libmicrohttpd missing) or SFS_ENOMEM.
 */
int aws_api_new(const struct config *cfg, struct backend **backends, struct envstash *es,
                struct store *st, struct stats *stats, struct aws_api **out);

/* Stops serving, closes the socket, frees. NULL-safe. */
void aws_api_free(struct aws_api *api);

#endif
