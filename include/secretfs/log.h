/*
 * Logging: one line per event on stderr, as text or as JSON lines.
 * The only process-wide state besides signal flags. Callers log names,
 * versions, lease ids and statuses - never secret values or tokens.
 */
#ifndef SECRETFS_LOG_H
#define SECRETFS_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_LVL_DEBUG = 0, LOG_LVL_INFO, LOG_LVL_WARN, LOG_LVL_ERROR };

/* Sets the threshold and the output format (JSON lines when json is true). */
void log_setup(enum log_level level, bool json);

/* The accepted spellings, for messages that refuse a value. */
#define LOG_LEVEL_CHOICES "debug, info, warn, error"
#define LOG_FORMAT_CHOICES "\"text\" or \"json\""

/* Parses "debug", "info", "warn" or "error"; returns 0 or SFS_EINVAL. */
int log_level_parse(const char *s, enum log_level *out);

/* Parses "text" (*json = false) or "json" (true); returns 0 or SFS_EINVAL. */
int log_format_parse(const char *s, bool *json);

/* Writes one event line when level passes the threshold. Thread-safe. */
void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * The fields of a named event (README.md, "Logging", lists the names).
 * NULL strings and zero numbers are left out. All are borrowed for the
 * call; none may hold a secret value.
 */
struct log_fields {
	const char *event;   /* "file.updated", "lease.revoked", ... */
	const char *file;    /* a file name in the mount */
	const char *files;   /* several file names, space-separated (on_change) */
	const char *source;  /* "backend:path" */
	const char *backend; /* a backend's name */
	const char *lease;   /* a lease id */
	const char *mount;   /* the mount path */
	uint64_t version;    /* a file's version */
	long pid;            /* a process id */
};

/*
 * Like log_msg, for a named event. The text line is exactly log_msg's; a
 * JSON line carries each field as a member of its own beside "msg":
 *   {"ts":...,"level":"info","event":"file.updated","file":"db.env",
 *    "source":"vault:database/creds/app","backend":"vault","version":3,
 *    "msg":"..."}
 * f may be NULL (then it is log_msg).
 */
void log_event(enum log_level level, const struct log_fields *f, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Appends s to dst at *len as the inside of a JSON string: quotes,
 * backslashes and control characters escaped, bytes that are not UTF-8
 * as U+FFFD (so the result is valid JSON). Stops before the first
 * character that would leave less than one byte of cap free (room for a
 * closing quote); returns whether all of s went in. *len is advanced.
 */
bool log_json_escape(char *dst, size_t cap, size_t *len, const char *s);

#define log_debug(...) log_msg(LOG_LVL_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)

#endif
