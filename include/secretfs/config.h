/*
 * The configuration: a JSON document (DESIGN.md section 1) parsed and
 * validated in full. Unknown keys and wrong types are errors; every problem
 * found is reported with the file, the key path and the reason.
 */
#ifndef SECRETFS_CONFIG_H
#define SECRETFS_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <jansson.h>

#include "secretfs/diag.h"

struct audit_config;
struct ctmpl;
#include "secretfs/render.h"

enum mount_type { MOUNT_FUSE = 0, MOUNT_DIRECTORY };

struct config_mount {
	enum mount_type type; /* "fuse" (default) or "directory" */
	char *path;           /* required; "/dev/fd/N" allowed for fuse */
	uid_t uid;            /* default: the process's effective uid */
	gid_t gid;            /* default: the process's effective gid */
	mode_t mode;          /* default 0400: files */
	mode_t dir_mode;      /* default 0555: directories */
	bool allow_other;     /* default false; fuse only */
	bool keep_on_exit; /* directory only: leave the files at exit (default false) */
	bool fast_open; /* fuse only: the kernel opens without asking (default false) */
};

/* "limits": bounds a deployment may lower or raise (README "Limits"). */
struct config_limits {
	size_t max_files;        /* "max_files", default CONFIG_DEFAULT_MAX_FILES */
	size_t max_open_handles; /* "max_open_handles" (FUSE), default
	                            CONFIG_DEFAULT_MAX_OPEN_HANDLES */
};
/* 100 000 files take about 160 MiB (README "Measured"); a config that names
 * them is about 5 MiB long (CONFIG_MAX_FILE: 16 MiB). */
#define CONFIG_DEFAULT_MAX_FILES 100000
#define CONFIG_MAX_MAX_FILES 1000000
/* A handle's snapshot past the guarded arenas is its own sodium_malloc,
 * four mappings (a header page, a guard, the data, a guard): 12288 and the
 * process's own few hundred stay within vm.max_map_count's default 65530
 * (tests/integration/test_limits.py measures it). */
#define CONFIG_DEFAULT_MAX_OPEN_HANDLES 12288
#define CONFIG_MAX_MAX_OPEN_HANDLES 1000000

struct config_backend {
	char *name;
	char *type;   /* "file", "dev", "vault", "aws" ... */
	json_t *json; /* the backend's object, validated by the backend itself */
};

struct config_onchange {
	int signal;           /* signal number, or 0 when argv is set */
	char *pid_file;       /* with signal */
	char **argv;          /* NULL-terminated; argv[0] absolute or found in PATH */
	uint64_t debounce_ms; /* default 1000: a burst of changes runs one action */
};

struct config_secret {
	/* name, backend, path and field are in one block (config.c's
	 * pack_strings), the name first, when packed. */
	char *name;    /* file path inside the mount, validated */
	char *backend; /* name of an entry in backends */
	char *path;    /* backend-specific secret path */
	char *field;   /* NULL = whole value */
	enum render_format format;
	mode_t mode;
	uid_t uid;
	gid_t gid;
	bool decode_base64;
	bool has_mode, has_uid, has_gid;
	bool packed;
	char *template_text;
	char *template_file; /* consul-template: the file it was read from, or NULL */
	uint64_t refresh_ms; /* 0: the backend's default */
	struct config_onchange *on_change; /* NULL when absent */
	json_t *extra; /* object of backend-specific keys (version, method, ...) */

	/* format consul-template: the parsed template (path and field are
	 * NULL; template_text is the template's text, also when read from
	 * template_file) and one source key per distinct secret call, in the
	 * template's order (ctmpl_secret_at): the call's path, and as extra
	 * {} for a read or {"method": "POST", "params": {k: v}} for a write
	 * (with the file's revoke_on_replace). */
	struct ctmpl *ctmpl;
	struct config_call *calls;
	size_t ncalls;
};

struct config_call {
	char *path;
	json_t *extra;
};

/* "telemetry": the metrics and health listener (telemetry.c). */
struct config_telemetry {
	char *listen;   /* as written: "127.0.0.1:9464", "[::1]:9464", "unix:/path" */
	int family;     /* AF_INET, AF_INET6 or AF_UNIX */
	char host[64];  /* numeric address (inet, inet6) */
	uint16_t port;  /* inet, inet6 */
	char path[108]; /* AF_UNIX socket path */
	uint64_t liveness_timeout_ms; /* default 60 s: /healthz fails after the
	                                 scheduler loop is stuck this long */
};

/* "hardening": the sandbox of a running daemon (sandbox.h). */
struct config_hardening {
	bool seccomp;  /* default true: the syscall allowlist */
	bool landlock; /* default true: file access limited to what the config names */
};

struct config_log {
	int level; /* enum log_level */
	bool json;
};

struct config {
	char *file; /* path the config was read from */
	struct config_mount mount;
	struct config_backend *backends;
	size_t nbackends;
	struct config_secret *secrets;
	size_t nsecrets;
	struct config_log log;
	struct config_hardening hardening;
	struct config_limits limits;
	uint64_t
	    startup_timeout_ms; /* default 30s: wait for first fetches before mounting */
	uint64_t shutdown_timeout_ms;       /* default 5s: revocations after SIGTERM */
	struct audit_config *audit;         /* "audit" (audit.h); NULL when absent */
	struct config_telemetry *telemetry; /* NULL when not configured */
	struct aws_api_config *aws_api;     /* "aws_api" (aws_api.h); NULL when absent */
};

/*
 * Reads and validates the file at path. On success returns 0 and a new
 * config in *out. On failure returns SFS_EINVAL (or SFS_EIO if unreadable)
 * and adds one message per problem to d; *out is untouched. Backend objects
 * are validated by the backend named in their "type" (see backend.h).
 */
int config_load(const char *path, struct diag *d, struct config **out);

/* The reading half of config_load: the file's bytes (at most the size
 * config_load accepts) in a new heap block *text of *len bytes, for
 * config_parse_text. Returns 0, or SFS_EINVAL / SFS_EIO / SFS_ENOMEM with
 * a diag (not for SFS_ENOMEM). */
int config_read(const char *path, struct diag *d, unsigned char **text, size_t *len);

/* config_parse of len bytes of text (not NUL-terminated). */
int config_parse_text(const char *text, size_t len, const char *name, struct diag *d,
                      struct config **out);

/* Same, from a NUL-terminated JSON text; name is used in messages. */
int config_parse(const char *text, const char *name, struct diag *d, struct config **out);

/* Frees a config. NULL-safe. */
void config_free(struct config *cfg);

/* Looks up a backend by name; NULL when absent. */
const struct config_backend *config_backend_find(const struct config *cfg,
                                                 const char *name);

/*
 * Checks a file name inside the mount: relative, segments separated by one
 * '/', no empty, "." or ".." segment, each segment at most 255 bytes, no NUL
 * or control characters, total at most 1024 bytes. Returns NULL when valid
 * or a static reason.
 */
const char *config_name_problem(const char *name);

#endif
