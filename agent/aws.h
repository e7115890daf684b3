/*
 * AWS internals shared by the Secrets Manager backend (backend_aws.c), the
 * credential chain (aws_creds.c) and its sources (aws_cred_*.c): the
 * settings resolved once at start-up, credentials in guarded memory, and
 * the table each credential source fills in.
 */
#ifndef SECRETFS_AWS_H
#define SECRETFS_AWS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <jansson.h>

#include "envstash.h"
#include "secretfs/backend.h"
#include "secretfs/http.h"
#include "secretfs/store.h"

/* A set of credentials. buf is guarded memory holding the three strings;
 * session_token is NULL for long-term keys. expiration is 0 when the
 * credentials do not expire. */
struct aws_creds {
	char *buf;
	size_t cap;
	const char *access_key_id;
	const char *secret_access_key;
	const char *session_token;
	time_t expiration;
};

/* Copies the strings into c->buf (releasing what c held). token may be
 * NULL or "". Returns 0, SFS_EINVAL (a value is empty or holds a control
 * character) or SFS_ENOMEM. */
int aws_creds_set(struct aws_creds *c, const char *akid, const char *secret,
                  const char *token, time_t expiration);

/* Wipes and frees. */
void aws_creds_release(struct aws_creds *c);

/* One profile of the shared config and credentials files, as far as
 * secretfs uses it. Strings are malloc'd; secrets are read again from the
 * files when the credentials are needed, never kept here. */
struct aws_profile {
	char *name;
	char *region;
	char *role_arn;
	char *web_identity_token_file;
	char *role_session_name;
	bool has_keys;     /* aws_access_key_id in either file */
	char *unsupported; /* a key naming a source secretfs cannot use */
	char *config_file; /* resolved paths */
	char *credentials_file;
};

/* Everything the credential sources need, resolved when the backend is
 * built. */
struct aws_env {
	const char *backend; /* backend name, for messages */
	struct store *store;
	struct envstash *secrets; /* the environment's secrets (borrowed) */
	char *region;
	char *sts_endpoint;    /* NULL: the regional default */
	bool profile_explicit; /* config "profile": environment keys are skipped */
	struct aws_profile profile;
	struct http_options sts_http;  /* for STS */
	struct http_options meta_http; /* for IMDS and container endpoints */
};

struct aws_cred_source {
	const char *name;
	/* True when this source is configured (the SDKs' test for moving on
	 * to the next source). IMDS always is, unless disabled. */
	bool (*configured)(const struct aws_env *env);
	/* Gets credentials. Returns 0 or SFS_ code with err filled (never
	 * holding a key or token). */
	int (*fetch)(const struct aws_env *env, struct http_client *client,
	             struct aws_creds *out, struct backend_error *err);
	/* Which client fetch uses: false STS-style (env->sts_http), true
	 * link-local metadata style (env->meta_http). */
	bool metadata;
};

extern const struct aws_cred_source aws_cred_environment;
extern const struct aws_cred_source aws_cred_web_identity;
extern const struct aws_cred_source aws_cred_shared_files;
extern const struct aws_cred_source aws_cred_container;
extern const struct aws_cred_source aws_cred_imds;

/* Takes AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN and
 * AWS_CONTAINER_AUTHORIZATION_TOKEN into the daemon's stash (sealed, and
 * wiped from the environment, the first time any backend asks); the
 * sources read them with envstash_get(env->secrets, ...). Returns 0 or
 * SFS_ENOMEM. */
int aws_env_stash(struct envstash *es);

/* The first configured source in the SDKs' order, or NULL. */
const struct aws_cred_source *aws_cred_choose(const struct aws_env *env);

/* Reads the profile named name (NULL: AWS_PROFILE, else "default") from
 * AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE or ~/.aws/config and
 * ~/.aws/credentials. Missing files are not an error. Returns 0 or
 * SFS_ENOMEM. */
int aws_profile_load(const char *name, struct aws_profile *out);
void aws_profile_release(struct aws_profile *p);

/* Reads one key of the profile's section from an INI file into guarded
 * memory (free with secmem_free(*out)). config_style: sections are
 * "[profile NAME]" (except "[default]"). Returns 0, SFS_ENOTFOUND, SFS_EIO. */
int aws_ini_get(const char *file, const char *profile, bool config_style, const char *key,
                char **out);

/* The text of the first <tag>...</tag> in an XML document, entities
 * decoded, into guarded memory (free with secmem_free(*out)).
 * Returns 0, SFS_ENOTFOUND or SFS_ENOMEM. */
int aws_xml_text(const char *xml, size_t len, const char *tag, char **out);

/* Parses an ISO 8601 UTC time ("2026-11-22T10:00:00Z", fractions
 * allowed). Returns 0 or SFS_EINVAL. */
int aws_parse_time(const char *s, time_t *out);

/* Fills out from a JSON object with AccessKeyId, SecretAccessKey,
 * Token/SessionToken and Expiration (the container and IMDS answers). */
int aws_creds_from_json(const char *body, size_t len, const char *what,
                        struct aws_creds *out, struct backend_error *err);

/*
 * The value of a GetSecretValue reply (backend_aws.c): SecretString (a
 * JSON object as its fields, else the text) or SecretBinary (the decoded
 * bytes) into *out (the caller's reference), and VersionId ("" when
 * absent) into version. Returns 0, SFS_ENOMEM or SFS_EPARSE (neither
 * value; SecretBinary not base64; a VersionId that is not a string, holds
 * a NUL or does not fit) with err naming what.
 */
int aws_secret_value_from_reply(const json_t *reply, json_t **out, char *version,
                                size_t versionlen, struct backend_error *err,
                                const char *what);

/*
 * The version of a DescribeSecret reply that carries stage (the key of
 * VersionIdsToStages whose list holds it) into version. Returns 0,
 * SFS_ENOTFOUND (no version has that stage), SFS_EBACKEND (DeletedDate
 * set: scheduled for deletion) or SFS_EPARSE (the id does not fit), with
 * err naming what.
 */
int aws_version_from_describe(const json_t *reply, const char *stage, char *version,
                              size_t versionlen, struct backend_error *err,
                              const char *what);
/*
 * For users of the credential chain outside Secrets Manager (Vault's aws
 * auth method, auth_aws.c), which make an "aws" backend of their own with
 * backend_aws_ops.create: its current credentials into out (guarded; release
 * with aws_creds_release), refreshed first when there are none or they are
 * close to expiry, and the region it resolved. Returns 0 or an SFS_ code
 * with err filled (never holding a key or token).
 */
int aws_backend_creds(struct backend *be, struct aws_creds *out,
                      struct backend_error *err);
const char *aws_backend_region(const struct backend *be);

/*
 * GetSecretValue of secret id (version_id and version_stage may be NULL)
 * through be, an "aws" backend, for the agent API (aws_api.c): on success
 * *reply is the whole reply object (ARN, Name, VersionId, SecretString or
 * SecretBinary, VersionStages, CreatedDate), built with the wiping
 * allocator; json_decref it. Errors as the backend's fetch (err names the
 * AWS error type); SFS_EINVAL when be is not an aws backend. When the
 * service answered an error, svc (may be NULL; status 0 otherwise) holds
 * it as answered: HTTP status, __type (no namespace) and message.
 */
struct aws_service_error {
	long status;
	char type[128];
	char message[1024];
};
int aws_get_secret_value(struct backend *be, const char *id, const char *version_id,
                         const char *version_stage, json_t **reply,
                         struct aws_service_error *svc, struct backend_error *err);

#endif
